#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A time in a query parameter (`since=`): RFC 3339 ("2026-11-22T01:02:03.456Z",
/// "…+02:00") or seconds since the epoch ("1795000000", "1795000000.5").
public struct TimeParameterError: Error, CustomStringConvertible, Sendable {
    public var parameter: String
    public var value: String
    public var description: String {
        "\(parameter)='\(value)' is neither an RFC 3339 time (2026-11-22T01:02:03Z) nor epoch seconds"
    }
}

@_spi(Fuzz) public enum TimeParameter {
    /// Epoch nanoseconds.
    public static func parse(_ text: String, parameter: String = "since") throws(TimeParameterError) -> UInt64 {
        if let value = parseEpochSeconds(text) { return value }
        guard let value = parseRFC3339(text) else { throw TimeParameterError(parameter: parameter, value: text) }
        return value
    }

    /// "1795000000" or "1795000000.25", digit by digit: a Double would be
    /// off by hundreds of nanoseconds at today's epoch.
    static func parseEpochSeconds(_ text: String) -> UInt64? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.count <= 10, whole.allSatisfy(\.isASCII), whole.allSatisfy(\.isNumber),
            let seconds = UInt64(whole)
        else { return nil }
        var nanoseconds: UInt64 = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard !fraction.isEmpty, fraction.allSatisfy(\.isASCII), fraction.allSatisfy(\.isNumber) else { return nil }
            let digits = String(fraction.prefix(9))
            nanoseconds = UInt64(digits + String(repeating: "0", count: 9 - digits.count))!
        }
        return seconds * 1_000_000_000 + nanoseconds
    }

    static func parseRFC3339(_ text: String) -> UInt64? {
        let b = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= b.count else { return nil }
            var value = 0
            for i in start..<(start + count) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        func byte(_ i: Int, _ expected: Character) -> Bool {
            i < b.count && Character(Unicode.Scalar(b[i])).lowercased() == expected.lowercased()
        }
        guard let year = number(0, 4), byte(4, "-"), let month = number(5, 2), byte(7, "-"), let day = number(8, 2),
            byte(10, "T") || byte(10, " "), let hour = number(11, 2), byte(13, ":"), let minute = number(14, 2),
            byte(16, ":"), let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var nanos = 0
        if byte(i, ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48 && b[i] <= 57 {
                if digits < 9 { nanos = nanos * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 9 { for _ in digits..<9 { nanos *= 10 } }
        }
        var offset = 0
        if byte(i, "Z") {
            i += 1
        } else if byte(i, "+") || byte(i, "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            guard let h = number(i + 1, 2), byte(i + 3, ":"), let m = number(i + 4, 2) else { return nil }
            offset = sign * (h * 3600 + m * 60)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = Int(timegm(&parts)) - offset
        // epoch nanoseconds end in 2554; a later year is no time this agent will see
        guard epoch >= 0 else { return nil }
        let (whole, overflow) = UInt64(epoch).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow, whole <= UInt64.max - UInt64(nanos) else { return nil }
        return whole + UInt64(nanos)
    }
}
