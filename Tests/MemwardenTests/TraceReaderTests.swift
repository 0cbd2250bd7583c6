import MemwardenDetection
import MemwardenTestSupport
import Testing

struct TraceReaderTests {
    static let good =
        #"{"t":1.5,"pid":42,"comm":"app","cgroup":"/a.slice","anon":1048576,"file":2048,"shmem":0,"swap":0,"vsz":4096}"#

    private func read(_ text: String, skipInvalid: Bool = false) throws(TraceError) -> (TraceReader, [TraceSample]) {
        let reader = TraceReader(bytes: Array(text.utf8), name: "trace.jsonl")
        reader.skipInvalid = skipInvalid
        var samples: [TraceSample] = []
        while let sample = try reader.next() { samples.append(sample) }
        return (reader, samples)
    }

    private func failure(_ text: String) -> TraceError? {
        do {
            _ = try read(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsEveryField() throws {
        let text = #"{"t":12.000250,"pid":7,"comm":"java","cgroup":"/kubepods.slice/x.scope","anon":100,"file":200,"#
            + #""shmem":300,"swap":400,"vsz":500,"limit":1000,"event":"exec"}"#
        let (reader, samples) = try read(text)
        let sample = try #require(samples.first)
        #expect(samples.count == 1)
        #expect(sample.timeNanoseconds == 12_000_250_000)
        #expect(sample.pid == 7)
        #expect(reader.strings[sample.comm] == "java")
        #expect(reader.strings[sample.cgroup] == "/kubepods.slice/x.scope")
        #expect(sample.anon == 100 && sample.file == 200 && sample.shmem == 300 && sample.swap == 400)
        #expect(sample.vsz == 500 && sample.limit == 1000 && sample.event == .exec)
        #expect(sample.line == 1 && sample.rss == 600)
    }

    @Test func ignoresUnknownFieldsBlankLinesAndCarriageReturns() throws {
        let text = "\n" + #"{"x":{"a":[1,{"b":"}"}],"c":null},"t":0,"pid":1,"comm":"a","cgroup":"/","anon":0,"#
            + #""file":0,"shmem":0,"swap":0,"vsz":0,"note":"tab\t\"quoted\"","ok":true,"n":-1.5e3}"# + "\r\n\n"
            + Self.good + "\r\n"
        let (_, samples) = try read(text)
        #expect(samples.map(\.line) == [2, 4])
        #expect(samples.map(\.timeNanoseconds) == [0, 1_500_000_000])
    }

    @Test func decodesEscapedStrings() throws {
        let text = #"{"t":0,"pid":1,"comm":"w\u00e9b \"1\"\\","cgroup":"/p\/q","anon":0,"file":0,"shmem":0,"#
            + #""swap":0,"vsz":0,"event":"exit"}"#
        let (reader, samples) = try read(text)
        let sample = try #require(samples.first)
        #expect(reader.strings[sample.comm] == "wéb \"1\"\\")
        #expect(reader.strings[sample.cgroup] == "/p/q")
        #expect(sample.event == .exit)
    }

    @Test func internsRepeatedStrings() throws {
        let (reader, samples) = try read(Self.good + "\n" + Self.good.replacing("1.5", with: "2"))
        #expect(samples.count == 2)
        #expect(samples[0].comm == samples[1].comm && samples[0].cgroup == samples[1].cgroup)
        #expect(reader.strings.count == 2)
    }

    @Test func equalTimeIsFine() throws {
        let (_, samples) = try read(Self.good + "\n" + Self.good)
        #expect(samples.count == 2)
    }

    @Test func exponentTimes() throws {
        let (_, samples) = try read(Self.good.replacing("1.5", with: "2.5e1"))
        #expect(samples.first?.timeNanoseconds == 25_000_000_000)
    }

    struct BadLine: CustomTestStringConvertible, Sendable {
        var name: String
        var line: String
        var message: String
        var code: TraceError.Code
        var testDescription: String { name }
    }

    static let badLines: [BadLine] = [
        BadLine(
            name: "not an object", line: "hello",
            message: "trace.jsonl:2: malformed line: expected '{' at column 1", code: .malformed),
        BadLine(
            name: "truncated", line: #"{"t":3,"pid":1"#,
            message: "trace.jsonl:2: malformed line: the object is not closed", code: .malformed),
        BadLine(
            name: "missing colon", line: #"{"t" 3}"#,
            message: "trace.jsonl:2: field \"t\": malformed line: expected ':' after the field name", code: .malformed),
        BadLine(
            name: "trailing text", line: good + " x",
            message: "trace.jsonl:2: malformed line: unexpected text after the object", code: .malformed),
        BadLine(
            name: "missing field", line: good.replacing(#","swap":0"#, with: ""),
            message: "trace.jsonl:2: field \"swap\": missing field: required", code: .missingField),
        BadLine(
            name: "string for a size", line: good.replacing("\"anon\":1048576", with: "\"anon\":\"1M\""),
            message: "trace.jsonl:2: field \"anon\": wrong type: expected a byte count (an integer), found a string",
            code: .wrongType),
        BadLine(
            name: "fraction for a size", line: good.replacing("\"file\":2048", with: "\"file\":20.5"),
            message: "trace.jsonl:2: field \"file\": wrong type: expected a byte count (an integer), found '20.5'",
            code: .wrongType),
        BadLine(
            name: "number for comm", line: good.replacing("\"comm\":\"app\"", with: "\"comm\":5"),
            message: "trace.jsonl:2: field \"comm\": wrong type: expected a string, found '5'", code: .wrongType),
        BadLine(
            name: "string for t", line: good.replacing("\"t\":1.5", with: "\"t\":\"soon\""),
            message: "trace.jsonl:2: field \"t\": wrong type: expected a number of seconds, found a string",
            code: .wrongType),
        BadLine(
            name: "negative size", line: good.replacing("\"shmem\":0", with: "\"shmem\":-4096"),
            message: "trace.jsonl:2: field \"shmem\": negative size: -4096", code: .negativeSize),
        BadLine(
            name: "negative pid", line: good.replacing("\"pid\":42", with: "\"pid\":-1"),
            message: "trace.jsonl:2: field \"pid\": out of range: -1 is not a process id", code: .outOfRange),
        BadLine(
            name: "size beyond 64 bits", line: good.replacing("\"vsz\":4096", with: "\"vsz\":99999999999999999999"),
            message: "trace.jsonl:2: field \"vsz\": out of range: '99999999999999999999' does not fit in 64 bits",
            code: .outOfRange),
        BadLine(
            name: "time going backwards", line: good.replacing("\"t\":1.5", with: "\"t\":1.25"),
            message: "trace.jsonl:2: field \"t\": time goes backwards: 1.25 after 1.5 on an earlier line",
            code: .timeBackwards),
    ]

    @Test(arguments: badLines)
    func badLineNamesFileLineAndField(_ bad: BadLine) throws {
        let error = try #require(failure(Self.good + "\n" + bad.line + "\n" + Self.good))
        #expect(error.description == bad.message)
        #expect(error.code == bad.code)
        #expect(error.line == 2 && error.file == "trace.jsonl")
    }

    @Test func skipInvalidCountsBadLinesAndGoesOn() throws {
        let text = [Self.good, "garbage", Self.good.replacing("\"t\":1.5", with: "\"t\":0.5"), Self.good]
            .joined(separator: "\n")
        let (reader, samples) = try read(text, skipInvalid: true)
        #expect(samples.map(\.line) == [1, 4])
        #expect(reader.skipped == 2)
        #expect(reader.firstError?.line == 2 && reader.firstError?.code == .malformed)
    }

    @Test func missingFileIsUnreadable() {
        #expect(throws: TraceError.self) { try TraceReader(path: "/nonexistent/trace.jsonl") }
        do {
            _ = try TraceReader(path: "/nonexistent/trace.jsonl")
        } catch {
            #expect(error.code == .unreadable)
            #expect(error.description.hasPrefix("/nonexistent/trace.jsonl: unreadable: cannot open: "))
        }
    }

    @Test func readsFromADescriptorInChunks() throws {
        // more than the 1 MiB buffer, so lines straddle reads
        var text = ""
        for i in 0..<12_000 {
            text += Self.good.replacing("\"t\":1.5", with: "\"t\":\(i)") + "\n"
        }
        let fds = try #require(closeOnExecPipe())
        let bytes = Array(text.utf8)
        let writer = Thread {
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = write(fds[1], buffer.baseAddress! + offset, buffer.count - offset)
                    if n <= 0 { break }
                    offset += n
                }
            }
            close(fds[1])
        }
        writer.start()
        let reader = TraceReader(fd: fds[0], name: "<pipe>", ownsDescriptor: true)
        var count = 0
        var last: Int64 = -1
        while let sample = try reader.next() {
            #expect(sample.timeNanoseconds > last)
            last = sample.timeNanoseconds
            count += 1
        }
        writer.join()
        #expect(count == 12_000)
    }

    // sizes and strings are read eight bytes at a time where they can be: every
    // length and every place of a stray byte must read as it did byte by byte

    @Test func sizesOfEveryLength() throws {
        var digits = ""
        for length in 1...19 {
            digits += String((length * 7) % 10)
            let (_, samples) = try read(Self.good.replacing("\"vsz\":4096", with: "\"vsz\":\(digits)"))
            #expect(samples.first?.vsz == UInt64(digits))
        }
        let (_, samples) = try read(Self.good.replacing("\"vsz\":4096", with: "\"vsz\":18446744073709551615"))
        #expect(samples.first?.vsz == UInt64.max)
        #expect(failure(Self.good.replacing("\"vsz\":4096", with: "\"vsz\":18446744073709551616"))?.code == .outOfRange)
        #expect(failure(Self.good.replacing("\"vsz\":4096", with: "\"vsz\":0000000000000000000000001")) == nil)
    }

    @Test func aStrayByteInALongSizeIsAWrongType() {
        for place in 0..<12 {
            var digits = Array("123456789012".utf8)
            digits[place] = UInt8(ascii: place % 2 == 0 ? "x" : ".")
            let value = String(decoding: digits, as: UTF8.self)
            let error = failure(Self.good.replacing("\"anon\":1048576", with: "\"anon\":\(value)"))
            #expect(error?.code == .wrongType && error?.field == "anon", "\(value)")
        }
    }

    @Test func longStringsWithAnEscapeOrAControlByteAnywhere() throws {
        let path = "/kubepods.slice/kubepods-burstable.slice/pod-7.slice/cri-containerd-7.scope"
        let (reader, samples) = try read(Self.good.replacing("\"/a.slice\"", with: "\"\(path)\""))
        let sample = try #require(samples.first)
        #expect(reader.strings[sample.cgroup] == path)
        for place in 0..<path.utf8.count {
            var bytes = Array(path.utf8)
            bytes.insert(contentsOf: Array(#"\""#.utf8), at: place)
            let escaped = String(decoding: bytes, as: UTF8.self)
            let (reader, samples) = try read(Self.good.replacing("\"/a.slice\"", with: "\"\(escaped)\""))
            var expected = Array(path.utf8)
            expected.insert(UInt8(ascii: "\""), at: place)
            let sample = try #require(samples.first)
            #expect(reader.strings[sample.cgroup] == String(decoding: expected, as: UTF8.self))
            bytes = Array(path.utf8)
            bytes.insert(0x09, at: place)
            let error = failure(Self.good.replacing("\"/a.slice\"", with: "\"\(String(decoding: bytes, as: UTF8.self))\""))
            #expect(error?.code == .malformed && error?.field == "cgroup")
        }
    }
}

/// A plain thread, so the pipe test's writer never waits for the reader's task.
final class Thread: @unchecked Sendable {
    private let body: () -> Void
    private var handle = pthread_t()

    init(_ body: @escaping () -> Void) { self.body = body }

    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&handle, nil, { raw in
            let thread = Unmanaged<Thread>.fromOpaque(raw!).takeRetainedValue()
            thread.body()
            return nil
        }, context)
    }

    func join() { pthread_join(handle, nil) }
}

#if canImport(Glibc)
import Glibc
#endif
