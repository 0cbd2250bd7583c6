/// Builds one JSON object on one line, by hand, as UTF-8 bytes: the agent
/// writes thousands a second during a fault storm, and neither a generic
/// encoder nor per-scalar String appends are cheap enough for that.
public struct JSONLine: Sendable {
    private var bytes: [UInt8]
    private var empty = true

    public init() {
        bytes = []
        bytes.reserveCapacity(320)
        bytes.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ key: StaticString) {
        if !empty { bytes.append(UInt8(ascii: ",")) }
        empty = false
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func add(_ key: StaticString, _ value: String) {
        self.key(key)
        Self.appendQuoted(value, to: &bytes)
    }

    public mutating func add(_ key: StaticString, _ value: String?) {
        guard let value else { return addNull(key) }
        add(key, value)
    }

    public mutating func add<T: BinaryInteger>(_ key: StaticString, _ value: T) {
        self.key(key)
        Self.appendInteger(value, to: &bytes)
    }

    public mutating func add<T: BinaryInteger>(_ key: StaticString, _ value: T?) {
        guard let value else { return addNull(key) }
        add(key, value)
    }

    /// A number with up to `decimals` digits after the point (no exponent, no trailing zeros).
    public mutating func add(_ key: StaticString, _ value: Double, decimals: Int = 6) {
        self.key(key)
        bytes.append(contentsOf: Self.format(value, decimals: decimals).utf8)
    }

    public mutating func add(_ key: StaticString, _ value: Bool) {
        self.key(key)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func addNull(_ key: StaticString) {
        self.key(key)
        bytes.append(contentsOf: "null".utf8)
    }

    /// Inserts an already-encoded JSON value.
    public mutating func addRaw(_ key: StaticString, _ json: String) {
        self.key(key)
        bytes.append(contentsOf: json.utf8)
    }

    public func finish() -> String {
        var copy = bytes
        copy.append(UInt8(ascii: "}"))
        return String(decoding: copy, as: UTF8.self)
    }

    static func appendInteger<T: BinaryInteger>(_ value: T, to bytes: inout [UInt8]) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            // magnitude of the most negative value does not fit T: go through UInt64
            appendDigits(UInt64(value.magnitude), to: &bytes)
        } else {
            appendDigits(UInt64(value), to: &bytes)
        }
    }

    static func appendDigits(_ value: UInt64, to bytes: inout [UInt8]) {
        guard value != 0 else { return bytes.append(UInt8(ascii: "0")) }
        // UInt64 has at most 20 digits: write them backwards into a fixed tuple-free scratch
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var count = 0
        var remaining = value
        withUnsafeMutableBytes(of: &scratch) { digits in
            while remaining > 0 {
                digits[23 - count] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
                count += 1
            }
            bytes.append(contentsOf: digits[(24 - count)...])
        }
    }

    package static func format(_ value: Double, decimals: Int) -> String {
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

    /// Quotes and escapes a string. UTF-8 bytes of 0x80 and above pass through:
    /// only `"`, `\` and control characters need escaping in JSON.
    static func appendQuoted(_ value: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case 0..<0x20:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    bytes.append(hex[Int(byte >> 4)])
                    bytes.append(hex[Int(byte & 0xF)])
                default: bytes.append(byte)
                }
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// The quoted form of a string, as text (for tests and callers building raw JSON).
    package static func quoted(_ value: String) -> String {
        var bytes: [UInt8] = []
        appendQuoted(value, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
