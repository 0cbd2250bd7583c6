/// Why a trace line (or the trace) could not be read. `description` names the
/// file, the line and the field: `trace.jsonl:12: field "anon": negative size (-4096)`.
public struct TraceError: Error, CustomStringConvertible, Sendable, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// Not a JSON object on one line (syntax).
        public static let malformed = Code(name: "malformed line")
        /// A required field is absent.
        public static let missingField = Code(name: "missing field")
        /// A field has the wrong JSON type (a string for a size, a fraction for a pid...).
        public static let wrongType = Code(name: "wrong type")
        /// A byte count below zero.
        public static let negativeSize = Code(name: "negative size")
        /// A number that does not fit (a size beyond 2^64, a pid beyond 2^31, a negative time).
        public static let outOfRange = Code(name: "out of range")
        /// `t` smaller than on an earlier line (equal is fine).
        public static let timeBackwards = Code(name: "time goes backwards")
        /// The file could not be opened or read.
        public static let unreadable = Code(name: "unreadable")
        public var description: String { name }
    }

    public var code: Code
    public var file: String
    /// 1-based; 0 when the error is about the whole file.
    public var line: Int
    /// The JSON field at fault, when there is one.
    public var field: String?
    public var detail: String

    public init(_ code: Code, file: String, line: Int, field: String?, detail: String) {
        self.code = code
        self.file = file
        self.line = line
        self.field = field
        self.detail = detail
    }

    public var description: String {
        var text = line > 0 ? "\(file):\(line): " : "\(file): "
        if let field { text += "field \"\(field)\": " }
        return text + "\(code): \(detail)"
    }
}
