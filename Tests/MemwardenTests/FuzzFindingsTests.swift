import Foundation
import Testing
@_spi(Fuzz) @testable import MemwardenAgent
@_spi(Fuzz) @testable import MemwardenModel

/// Every crash scripts/fuzz found, fed back to the parser that crashed (docs/reliability.md,
/// "Fuzzing"). The inputs are also in the seed corpora (Tests/Fixtures/fuzz/<target>/crash-*),
/// so every fuzz run starts from them.
struct FuzzFindingsTests {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz")

    static func fixture(_ target: String, _ name: String) throws -> String {
        try String(contentsOf: fixtures.appendingPathComponent("\(target)/\(name)"), encoding: .utf8)
    }

    @Test("since= in a year past 2554 (epoch nanoseconds overflow UInt64) is a bad request, not a crash")
    func sinceBeyondUInt64() throws {
        let found = try Self.fixture("time-parameter", "crash-year-4052")
        #expect(throws: TimeParameterError.self) { try TimeParameter.parse(found) }
        #expect(throws: TimeParameterError.self) { try TimeParameter.parse("2554-07-21T23:34:34Z") }
        #expect(throws: TimeParameterError.self) { try TimeParameter.parse("2554-07-21T23:34:33.709551616Z") }
        #expect(try TimeParameter.parse("2554-07-21T23:34:33.709551615Z") == UInt64.max)
    }

    @Test("a VmRSS past UInt64 in bytes reads as no value, not a crash; the first number is the reading")
    func statusValueOverflow() throws {
        let found = try Self.fixture("proc-status", "crash-vmrss-overflow")
        let lines = found.split(separator: "\n", maxSplits: 1)
        let usage = try #require(ProcessUsage.parse(stat: String(lines[0]), status: String(lines[1])))
        #expect(usage.residentBytes == 184 * 1024)
        #expect(usage.peakResidentBytes == 20481 * 1024)
        let huge = try #require(ProcessUsage.parse(stat: "1 (x) S", status: "VmRSS:\t18014398509481984 kB\nVmHWM:\t 7 kB\n"))
        #expect(huge.residentBytes == 0)
        #expect(huge.peakResidentBytes == 7 * 1024)
    }
}
