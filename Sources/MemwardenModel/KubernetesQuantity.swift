import Foundation

/// A Kubernetes resource quantity ("512Mi", "1G", "1.5Gi", "100M", "1e9", "250m"), parsed
/// exactly: the value is a Decimal, so "1Gi" and "1073741824" compare equal and "0.5" equals
/// "500m" (the QoS class depends on request == limit).
public struct KubernetesQuantity: Sendable, Equatable, CustomStringConvertible {
    /// As written in the pod spec.
    public let text: String
    public let value: Decimal

    public struct ParseError: Error, CustomStringConvertible, Sendable, Equatable {
        public var text: String
        public var problem: String
        public var description: String { "bad Kubernetes quantity '\(text)': \(problem)" }
    }

    /// The grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal number, then one
    /// of a binary suffix (Ki … Ei), a decimal suffix (m, k, M … E) or an exponent (e3, E-2).
    public init(parsing text: String) throws(ParseError) {
        self.text = text
        let bytes = Array(text.utf8)
        var index = 0
        func fail(_ problem: String) -> ParseError { ParseError(text: text, problem: problem) }

        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        var digits = ""
        var fractionDigits = 0
        var seenPoint = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                digits.append(Character(UnicodeScalar(byte)))
                if seenPoint { fractionDigits += 1 }
            } else if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else {
                break
            }
            index += 1
        }
        guard !digits.isEmpty else { throw fail("no number") }
        // Kubernetes itself keeps at most 19 significant digits; more is a typo, not a size.
        guard digits.count <= 30 else { throw fail("too many digits") }

        let suffix = String(decoding: bytes[index...], as: UTF8.self)
        var binaryExponent = 0
        var decimalExponent = -fractionDigits
        switch suffix {
        case "": break
        case "Ki": binaryExponent = 10
        case "Mi": binaryExponent = 20
        case "Gi": binaryExponent = 30
        case "Ti": binaryExponent = 40
        case "Pi": binaryExponent = 50
        case "Ei": binaryExponent = 60
        case "m": decimalExponent -= 3
        case "k": decimalExponent += 3
        case "M": decimalExponent += 6
        case "G": decimalExponent += 9
        case "T": decimalExponent += 12
        case "P": decimalExponent += 15
        case "E": decimalExponent += 18
        default:
            guard suffix.first == "e" || suffix.first == "E", let exponent = Int(suffix.dropFirst()),
                suffix.dropFirst().allSatisfy({ $0.isNumber || $0 == "-" || $0 == "+" })
            else { throw fail("unknown suffix '\(suffix)' (binary Ki…Ei, decimal m, k, M…E, or an exponent e3)") }
            guard abs(exponent) <= 30 else { throw fail("exponent out of range") }
            decimalExponent += exponent
        }

        guard var value = Decimal(string: digits) else { throw fail("no number") }
        value = Decimal(sign: .plus, exponent: decimalExponent, significand: value)
        if binaryExponent > 0 { value *= Decimal(sign: .plus, exponent: 0, significand: Decimal(UInt64(1) << binaryExponent)) }
        self.value = negative ? -value : value
    }

    /// Whole bytes, rounded up as Kubernetes does (a memory request of "1.5" is 2 bytes);
    /// nil for a negative value or one beyond UInt64.
    public var bytes: UInt64? {
        guard value >= 0 else { return nil }
        var source = value
        var rounded = Decimal()
        NSDecimalRound(&rounded, &source, 0, .up)
        guard rounded <= Decimal(UInt64.max) else { return nil }
        return UInt64(rounded.description)
    }

    public var isZero: Bool { value.isZero }
    public var description: String { text }

    /// Equal values, whatever the spelling ("1Gi" == "1073741824").
    public static func == (a: Self, b: Self) -> Bool { a.value == b.value }
}

extension KubernetesQuantity {
    /// A computed quantity (a sum of a pod's container resources), with no text of its own.
    package init(text: String, value: Decimal) {
        self.text = text
        self.value = value
    }
}
