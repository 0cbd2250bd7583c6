/// Builds one JSON object on one line, by hand: the agent writes thousands a
/// second during a fault storm, and a generic encoder costs more than the
/// detection it reports on.
public struct JSONLine: Sendable {
    private var text: String
    private var empty = true

    public init() {
        text = "{"
        text.reserveCapacity(256)
    }

    private mutating func key(_ key: String) {
        if !empty { text += "," }
        empty = false
        text += "\""
        text += key
        text += "\":"
    }

    public mutating func add(_ key: String, _ value: String) {
        self.key(key)
        Self.appendQuoted(value, to: &text)
    }

    public mutating func add(_ key: String, _ value: String?) {
        guard let value else { return addNull(key) }
        add(key, value)
    }

    public mutating func add<T: BinaryInteger>(_ key: String, _ value: T) {
        self.key(key)
        text += String(value)
    }

    public mutating func add<T: BinaryInteger>(_ key: String, _ value: T?) {
        guard let value else { return addNull(key) }
        add(key, value)
    }

    /// A number with up to `decimals` digits after the point (no exponent, no trailing zeros).
    public mutating func add(_ key: String, _ value: Double, decimals: Int = 6) {
        self.key(key)
        text += Self.format(value, decimals: decimals)
    }

    public mutating func add(_ key: String, _ value: Bool) {
        self.key(key)
        text += value ? "true" : "false"
    }

    public mutating func addNull(_ key: String) {
        self.key(key)
        text += "null"
    }

    /// Inserts an already-encoded JSON value.
    public mutating func addRaw(_ key: String, _ json: String) {
        self.key(key)
        text += json
    }

    public func finish() -> String { text + "}" }

    static func format(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "null" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return String(value) }
        let integer = UInt64(scaled)
        let whole = integer / UInt64(scale)
        var fraction = String(integer % UInt64(scale))
        var result = (value < 0 && integer != 0 ? "-" : "") + String(whole)
        if decimals > 0 && integer % UInt64(scale) != 0 {
            fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            result += "." + fraction
        }
        return result
    }

    static func appendQuoted(_ value: String, to text: inout String) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
