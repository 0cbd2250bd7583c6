import MemwardenTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@testable import MemwardenModel
@testable import MemwardenOutput

struct JSONLineTests {
    @Test func buildsOneObjectOnOneLine() {
        var line = JSONLine()
        line.add("type", "sample")
        line.add("pid", Int32(42))
        line.add("limit", UInt64?.none)
        line.add("ok", true)
        #expect(line.finish() == #"{"type":"sample","pid":42,"limit":null,"ok":true}"#)
    }

    @Test(arguments: [
        ("plain", #""plain""#),
        ("quote\"back\\slash", #""quote\"back\\slash""#),
        ("tab\tnew\nline", #""tab\tnew\nline""#),
        ("\u{01}ctl", #""\u0001ctl""#),
        ("ünï/κόσμε", #""ünï/κόσμε""#),
    ])
    func escapesStrings(input: String, expected: String) {
        #expect(JSONLine.quoted(input) == expected)
    }

    @Test(arguments: [(Int64.min, "-9223372036854775808"), (-1, "-1"), (0, "0"), (Int64.max, "9223372036854775807")])
    func writesIntegers(value: Int64, expected: String) {
        var line = JSONLine()
        line.add("n", value)
        #expect(line.finish() == "{\"n\":\(expected)}")
    }

    @Test(arguments: [
        (0.0, 6, "0"),
        (1.5, 6, "1.5"),
        (0.000001, 6, "0.000001"),
        (12.3456789, 3, "12.346"),
        (-2.25, 2, "-2.25"),
        (-0.0000001, 6, "0"),
        (Double.nan, 3, "null"),
    ])
    func formatsNumbersWithoutExponents(value: Double, decimals: Int, expected: String) {
        #expect(JSONLine.format(value, decimals: decimals) == expected)
    }
}

struct WallClockTests {
    @Test func formatsRFC3339WithMilliseconds() {
        // 2026-11-22T01:02:03.456Z
        let epoch: UInt64 = 1_795_309_323_456_000_000
        #expect(WallClock.rfc3339(epochNanoseconds: epoch) == "2026-11-22T01:02:03.456Z")
    }

    @Test func mapsMonotonicToWallTime() {
        let clock = WallClock(offset: 1_000_000_000_000)
        #expect(clock.realtime(fromMonotonic: 5) == 1_000_000_000_005)
        #expect(clock.rfc3339(monotonic: 0) == "1970-01-01T00:16:40.000Z")
    }
}

struct Base64Tests {
    @Test(arguments: [("", [UInt8]()), ("TQ==", [77]), ("TWE=", [77, 97]), ("TWFu", [77, 97, 110]), ("/+8=", [255, 239])])
    func decodes(text: String, bytes: [UInt8]) {
        #expect(Base64.decode(text) == bytes)
    }

    @Test func rejectsOtherCharacters() {
        #expect(Base64.decode("TW*u") == nil)
    }
}

struct LineWriterTests {
    @Test func aPipeNobodyReadsGetsWholeLinesUntilTheDeadline() throws {
        let fds = try #require(closeOnExecPipe())
        defer { close(fds[0]); close(fds[1]) }
        let writer = LineWriter(fd: fds[1])
        let line = String(repeating: "x", count: 299)
        let lines = [String](repeating: line, count: 1000)  // 300 KB: more than a pipe holds
        let start = monotonicNanoseconds()
        let written = writer.write(lines: lines, deadline: start + 200_000_000)
        #expect(written.error == nil)
        #expect(written.lines > 0 && written.lines < lines.count)
        #expect(monotonicNanoseconds() - start < 5_000_000_000, "the write waited far past its deadline")
        // what went in is whole lines
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let n = read(fds[0], &buffer, buffer.count)
        #expect(n == written.lines * 300)
        let text = String(decoding: buffer[0..<max(0, n)], as: UTF8.self)
        #expect(text.hasSuffix("\n"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count == 299 })
    }
}
