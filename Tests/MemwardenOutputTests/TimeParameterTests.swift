@_spi(Fuzz) @testable import MemwardenAgent
import Testing

@Suite struct TimeParameterTests {
    static let base: UInt64 = 1_795_000_000 * 1_000_000_000  // 2026-11-18T11:06:40Z

    @Test(
        "since= forms", arguments: [
            ("2026-11-18T11:06:40Z", base), ("2026-11-18T11:06:40.5Z", base + 500_000_000),
            ("2026-11-18T11:06:40.123456789Z", base + 123_456_789), ("2026-11-18T11:06:40.1234567891Z", base + 123_456_789),
            ("2026-11-18T13:06:40+02:00", base), ("2026-11-18T10:06:40.250-01:00", base + 250_000_000),
            ("2026-11-18t11:06:40z", base), ("1795000000", base), ("1795000000.25", base + 250_000_000),
        ])
    func parses(text: String, expected: UInt64) throws {
        #expect(try TimeParameter.parse(text) == expected)
    }

    @Test(
        "bad since=", arguments: [
            "", "yesterday", "2026-11-18", "2026-11-18T11:06:40", "2026-13-18T08:26:40Z", "2026-11-18T11:06:40.Z",
            "2026-11-18T11:06:40+0200", "-5", "1e9", "12.", ".5", "1795000000.2x", "99999999999", "2026-11-18T11:06:40Zjunk",
        ])
    func rejects(text: String) {
        #expect(throws: TimeParameterError.self) { try TimeParameter.parse(text) }
    }
}
