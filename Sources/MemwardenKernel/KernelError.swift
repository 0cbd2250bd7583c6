/// Why the kernel side could not start or run. `description` is one line that
/// names what is missing, suitable for the exit-2 message of `memwarden run`.
public struct KernelError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let missingPrivileges = Code(name: "missing privileges")
        public static let missingBTF = Code(name: "missing kernel BTF")
        public static let missingTracefs = Code(name: "missing tracefs")
        public static let missingTracepoint = Code(name: "missing tracepoint")
        public static let openFailed = Code(name: "BPF object open failed")
        public static let loadFailed = Code(name: "BPF load failed")
        public static let attachFailed = Code(name: "BPF attach failed")
        public static let mapFailed = Code(name: "BPF map access failed")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// Extra detail, e.g. the tail of the verifier log.
    public var detail: String?

    public init(_ code: Code, _ message: String, detail: String? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { "\(code): \(message)" }
}
