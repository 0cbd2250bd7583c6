#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Reads a trace line by line, strictly: every line must be one flat JSON
/// object with the trace fields (unknown fields are skipped, nested or not),
/// sizes non-negative integers, `t` never smaller than before. Hand-written
/// over raw bytes because replay must read a million lines a second: no
/// Foundation, no Codable, no String per field (comm and cgroup are interned).
///
/// Its state is only ever touched by the one caller of `next()`, so the
/// per-access exclusivity checks on class properties (a fifth of the time per
/// line) are turned off.
///
/// With `skipInvalid` a bad line is counted (`skipped`, `firstError`) and
/// reading goes on; otherwise `next()` throws a `TraceError` naming the file,
/// the line and the field.
public final class TraceReader {
    /// The name used in messages: the path, or "<stdin>".
    public let name: String
    public let strings = TraceStrings()
    public var skipInvalid = false
    @exclusivity(unchecked) public private(set) var skipped = 0
    @exclusivity(unchecked) public private(set) var firstError: TraceError?
    @exclusivity(unchecked) public private(set) var lineNumber = 0

    private let fd: Int32
    private let ownsDescriptor: Bool
    @exclusivity(unchecked) private var buffer: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    @exclusivity(unchecked) private var atEOF = false
    @exclusivity(unchecked) private var lastTime = Int64.min
    @exclusivity(unchecked) private var scratch: [UInt8] = []

    /// Opens `path`; "-" reads standard input.
    public convenience init(path: String) throws(TraceError) {
        if path == "-" {
            self.init(fd: STDIN_FILENO, name: "<stdin>", ownsDescriptor: false)
            return
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw TraceError(.unreadable, file: path, line: 0, field: nil, detail: "cannot open: \(reason)")
        }
        self.init(fd: fd, name: path, ownsDescriptor: true)
    }

    /// Reads from a descriptor the caller keeps open.
    public init(fd: Int32, name: String, ownsDescriptor: Bool = false) {
        self.fd = fd
        self.name = name
        self.ownsDescriptor = ownsDescriptor
        capacity = 1 << 20
        buffer = .allocate(capacity: capacity)
    }

    /// Reads a trace held in memory (tests, benchmarks).
    public init(bytes: [UInt8], name: String) {
        fd = -1
        self.name = name
        ownsDescriptor = false
        capacity = max(bytes.count, 1)
        buffer = .allocate(capacity: capacity)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { buffer.update(from: base, count: source.count) }
        }
        end = bytes.count
        atEOF = true
    }

    deinit {
        buffer.deallocate()
        if ownsDescriptor { _ = close(fd) }
    }

    /// The next sample, or nil at the end of the trace. Blank lines are skipped.
    public func next() throws(TraceError) -> TraceSample? {
        while true {
            guard let (offset, count) = try nextLine() else { return nil }
            lineNumber += 1
            do throws(TraceError) {
                guard var sample = try parse(buffer + offset, count) else { continue }
                sample.line = lineNumber
                if sample.timeNanoseconds < lastTime {
                    throw error(
                        .timeBackwards, "t",
                        "\(Self.seconds(sample.timeNanoseconds)) after \(Self.seconds(lastTime)) on an earlier line")
                }
                lastTime = sample.timeNanoseconds
                return sample
            } catch {
                guard skipInvalid else { throw error }
                skipped += 1
                if firstError == nil { firstError = error }
            }
        }
    }

    // MARK: lines

    private func nextLine() throws(TraceError) -> (Int, Int)? {
        while true {
            if start < end, let newline = memchr(buffer + start, 0x0A, end - start) {
                let lineStart = start
                var lineEnd = buffer.distance(to: newline.assumingMemoryBound(to: UInt8.self))
                start = lineEnd + 1
                if lineEnd > lineStart && buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                return (lineStart, lineEnd - lineStart)
            }
            if atEOF {
                guard start < end else { return nil }
                let lineStart = start
                start = end
                return (lineStart, end - lineStart)
            }
            try fill()
        }
    }

    private func fill() throws(TraceError) {
        if start > 0 {
            let remaining = end - start
            if remaining > 0 { memmove(buffer, buffer + start, remaining) }
            start = 0
            end = remaining
        }
        if end == capacity {
            // one line longer than the buffer: make room for it
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
            bigger.update(from: buffer, count: end)
            buffer.deallocate()
            buffer = bigger
            capacity *= 2
        }
        while true {
            let n = read(fd, buffer + end, capacity - end)
            if n > 0 {
                end += n
                return
            }
            if n == 0 {
                atEOF = true
                return
            }
            if errno == EINTR { continue }
            let reason = String(cString: strerror(errno))
            throw TraceError(.unreadable, file: name, line: lineNumber, field: nil, detail: "read failed: \(reason)")
        }
    }

    // MARK: one line

    private enum Field: Int {
        case t = 0, pid, comm, cgroup, anon, file, shmem, swap, vsz, limit, event

        var name: String {
            switch self {
            case .t: "t"
            case .pid: "pid"
            case .comm: "comm"
            case .cgroup: "cgroup"
            case .anon: "anon"
            case .file: "file"
            case .shmem: "shmem"
            case .swap: "swap"
            case .vsz: "vsz"
            case .limit: "limit"
            case .event: "event"
            }
        }

        static let required: [Field] = [.t, .pid, .comm, .cgroup, .anon, .file, .shmem, .swap, .vsz]
        static var requiredMask: UInt32 { 0b1_1111_1111 }  // t through vsz
    }

    private func error(_ code: TraceError.Code, _ field: String?, _ detail: String) -> TraceError {
        TraceError(code, file: name, line: lineNumber, field: field, detail: detail)
    }

    private static func seconds(_ nanoseconds: Int64) -> String {
        JSONLine.format(Double(nanoseconds) / 1e9, decimals: 9)
    }

    /// Parses one line; nil when it is blank.
    private func parse(_ line: UnsafeMutablePointer<UInt8>, _ count: Int) throws(TraceError) -> TraceSample? {
        var p = UnsafePointer(line)
        let end = p + count
        skipSpace(&p, end)
        if p == end { return nil }
        guard p.pointee == UInt8(ascii: "{") else {
            throw error(.malformed, nil, "expected '{' at column \(p - UnsafePointer(line) + 1)")
        }
        p += 1
        var sample = TraceSample(
            line: 0, timeNanoseconds: 0, pid: 0, comm: 0, cgroup: 0, anon: 0, file: 0, shmem: 0, swap: 0, vsz: 0,
            limit: nil, event: .sample)
        var seen: UInt32 = 0
        skipSpace(&p, end)
        if p < end && p.pointee == UInt8(ascii: "}") {
            p += 1
        } else {
            while true {
                skipSpace(&p, end)
                guard p < end && p.pointee == UInt8(ascii: "\"") else {
                    throw error(.malformed, nil, "expected a field name at column \(p - UnsafePointer(line) + 1)")
                }
                let key = try parseKey(&p, end)
                skipSpace(&p, end)
                guard p < end && p.pointee == UInt8(ascii: ":") else {
                    throw error(.malformed, key.map { $0.name }, "expected ':' after the field name")
                }
                p += 1
                skipSpace(&p, end)
                guard p < end else { throw error(.malformed, key.map { $0.name }, "the value is missing") }
                if let key {
                    try parseValue(key, &p, end, into: &sample)
                    seen |= 1 << UInt32(key.rawValue)
                } else {
                    try skipValue(&p, end, depth: 0)
                }
                skipSpace(&p, end)
                guard p < end else { throw error(.malformed, nil, "the object is not closed") }
                if p.pointee == UInt8(ascii: ",") {
                    p += 1
                    continue
                }
                guard p.pointee == UInt8(ascii: "}") else {
                    throw error(.malformed, key.map { $0.name }, "expected ',' or '}' after the value")
                }
                p += 1
                break
            }
        }
        skipSpace(&p, end)
        guard p == end else { throw error(.malformed, nil, "unexpected text after the object") }
        // one test per line; which field is missing only when one is
        if seen & Field.requiredMask != Field.requiredMask {
            for field in Field.required where seen & (1 << UInt32(field.rawValue)) == 0 {
                throw error(.missingField, field.name, "required")
            }
        }
        return sample
    }

    @inline(__always)
    private func skipSpace(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) {
        while p < end && (p.pointee == 0x20 || p.pointee == 0x09) { p += 1 }
    }

    /// A field name: one of ours, or nil for one to skip.
    private func parseKey(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) throws(TraceError) -> Field? {
        p += 1
        let keyStart = p
        while p < end && p.pointee != UInt8(ascii: "\"") {
            if p.pointee == UInt8(ascii: "\\") {
                // escaped names are none of ours (ours are plain ASCII), but must be valid
                p = keyStart - 1
                try skipString(&p, end)
                return nil
            }
            p += 1
        }
        guard p < end else { throw error(.malformed, nil, "a field name is not closed") }
        let length = p - keyStart
        p += 1
        @inline(__always) func at(_ i: Int) -> UInt8 { keyStart[i] }
        switch length {
        case 1:
            return at(0) == UInt8(ascii: "t") ? .t : nil
        case 3:
            if at(0) == UInt8(ascii: "p") && at(1) == UInt8(ascii: "i") && at(2) == UInt8(ascii: "d") { return .pid }
            if at(0) == UInt8(ascii: "v") && at(1) == UInt8(ascii: "s") && at(2) == UInt8(ascii: "z") { return .vsz }
            return nil
        case 4:
            let word = UInt32(at(0)) | UInt32(at(1)) << 8 | UInt32(at(2)) << 16 | UInt32(at(3)) << 24
            switch word {
            case Self.word("comm"): return .comm
            case Self.word("anon"): return .anon
            case Self.word("file"): return .file
            case Self.word("swap"): return .swap
            default: return nil
            }
        case 5:
            if memcmp(keyStart, "shmem", 5) == 0 { return .shmem }
            if memcmp(keyStart, "limit", 5) == 0 { return .limit }
            if memcmp(keyStart, "event", 5) == 0 { return .event }
            return nil
        case 6:
            return memcmp(keyStart, "cgroup", 6) == 0 ? .cgroup : nil
        default:
            return nil
        }
    }

    private static func word(_ text: StaticString) -> UInt32 {
        let p = text.utf8Start
        return UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
    }

    private func parseValue(
        _ field: Field, _ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, into sample: inout TraceSample
    ) throws(TraceError) {
        switch field {
        case .t:
            sample.timeNanoseconds = try parseTime(&p, end)
        case .pid:
            let value = try parseInteger(field, &p, end)
            guard value >= 0, value <= Int64(Int32.max) else {
                throw error(.outOfRange, field.name, "\(value) is not a process id")
            }
            sample.pid = Int32(value)
        case .comm:
            sample.comm = try parseString(field, &p, end)
        case .cgroup:
            sample.cgroup = try parseString(field, &p, end)
        case .anon: sample.anon = try parseSize(field, &p, end)
        case .file: sample.file = try parseSize(field, &p, end)
        case .shmem: sample.shmem = try parseSize(field, &p, end)
        case .swap: sample.swap = try parseSize(field, &p, end)
        case .vsz: sample.vsz = try parseSize(field, &p, end)
        case .limit:
            if try skipNull(&p, end) {
                sample.limit = nil
            } else {
                sample.limit = try parseSize(field, &p, end)
            }
        case .event:
            let id = try parseString(field, &p, end)
            switch strings[id] {
            case "exec": sample.event = .exec
            case "exit": sample.event = .exit
            default: sample.event = .sample  // events this reader does not know are plain samples
            }
        }
    }

    private func skipNull(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) throws(TraceError) -> Bool {
        guard end - p >= 4, memcmp(p, "null", 4) == 0 else { return false }
        p += 4
        return true
    }

    /// A short description of the JSON value at p, for "wrong type" messages.
    private func describe(_ p: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> String {
        switch p.pointee {
        case UInt8(ascii: "\""): return "a string"
        case UInt8(ascii: "{"): return "an object"
        case UInt8(ascii: "["): return "an array"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return "a boolean"
        case UInt8(ascii: "n"): return "null"
        default:
            var q = p
            while q < end && q.pointee != UInt8(ascii: ",") && q.pointee != UInt8(ascii: "}") && q - p < 24 { q += 1 }
            return "'" + String(decoding: UnsafeBufferPointer(start: p, count: q - p), as: UTF8.self) + "'"
        }
    }

    private func parseInteger(_ field: Field, _ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>)
        throws(TraceError) -> Int64
    {
        let begin = p
        var negative = false
        if p < end && p.pointee == UInt8(ascii: "-") {
            negative = true
            p += 1
        }
        let digits = p
        let (value, overflow) = scanDigits(&p, end)
        guard p > digits, isValueEnd(p, end) else {
            throw error(.wrongType, field.name, "expected an integer, found \(describe(begin, end))")
        }
        guard !overflow, value <= UInt64(Int64.max) else {
            throw error(.outOfRange, field.name, "\(describe(begin, end)) does not fit")
        }
        return negative ? -Int64(value) : Int64(value)
    }

    /// Decimal digits from p on, as an unsigned value, and whether it overflowed 64 bits.
    @inline(__always)
    private func scanDigits(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> (UInt64, Bool) {
        var value: UInt64 = 0
        var overflow = false
        // byte counts run to 9 or 10 digits: eight at a time while 16 digits
        // (which cannot overflow) are not reached, the rest one by one
        var chunks = 0
        while chunks < 2, end - p >= 8, let eight = SWAR.eightDigits(p) {
            value = value &* 100_000_000 &+ eight
            p += 8
            chunks += 1
        }
        while p < end, case let d = p.pointee &- 0x30, d < 10 {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            value = sum
            p += 1
        }
        return (value, overflow)
    }

    @inline(__always)
    private func isValueEnd(_ p: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> Bool {
        guard p < end else { return true }
        let c = p.pointee
        return c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == 0x20 || c == 0x09
    }

    private func parseSize(_ field: Field, _ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>)
        throws(TraceError) -> UInt64
    {
        let begin = p
        if p.pointee == UInt8(ascii: "-") {
            let value = try parseInteger(field, &p, end)
            throw error(.negativeSize, field.name, "\(value)")
        }
        let (value, overflow) = scanDigits(&p, end)
        guard p > begin, isValueEnd(p, end) else {
            throw error(.wrongType, field.name, "expected a byte count (an integer), found \(describe(begin, end))")
        }
        guard !overflow else { throw error(.outOfRange, field.name, "\(describe(begin, end)) does not fit in 64 bits") }
        return value
    }

    /// `t`: a JSON number of seconds, kept as nanoseconds. Plain decimals are
    /// converted exactly; an exponent goes through Double.
    private func parseTime(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) throws(TraceError) -> Int64 {
        let begin = p
        var negative = false
        if p < end && p.pointee == UInt8(ascii: "-") {
            negative = true
            p += 1
        }
        var whole: Int64 = 0
        var fraction: Int64 = 0
        var scale: Int64 = 1_000_000_000
        var digits = 0
        var exponent = false
        while p < end, case let d = p.pointee &- 0x30, d < 10 {
            if whole < 1_000_000_000_000 { whole = whole * 10 + Int64(d) }
            digits += 1
            p += 1
        }
        if p < end && p.pointee == UInt8(ascii: ".") {
            p += 1
            var fractionDigits = 0
            while p < end, case let d = p.pointee &- 0x30, d < 10 {
                if scale > 1 {
                    scale /= 10
                    fraction += Int64(d) * scale
                }
                fractionDigits += 1
                p += 1
            }
            if fractionDigits == 0 { digits = 0 }
        }
        if p < end && (p.pointee == UInt8(ascii: "e") || p.pointee == UInt8(ascii: "E")) {
            exponent = true
            p += 1
            if p < end && (p.pointee == UInt8(ascii: "+") || p.pointee == UInt8(ascii: "-")) { p += 1 }
            let exponentDigits = p
            while p < end && p.pointee &- 0x30 < 10 { p += 1 }
            if p == exponentDigits { digits = 0 }
        }
        guard digits > 0, isValueEnd(p, end) else {
            throw error(.wrongType, "t", "expected a number of seconds, found \(describe(begin, end))")
        }
        var nanoseconds: Int64
        if exponent {
            let text = String(decoding: UnsafeBufferPointer(start: begin, count: p - begin), as: UTF8.self)
            guard let seconds = Double(text), seconds.isFinite, abs(seconds) < 9e9 else {
                throw error(.outOfRange, "t", "\(text) is not a usable time")
            }
            nanoseconds = Int64((abs(seconds) * 1e9).rounded())
        } else {
            guard whole < 9_000_000_000 else { throw error(.outOfRange, "t", "\(describe(begin, end)) is too large") }
            nanoseconds = whole * 1_000_000_000 + fraction
        }
        if negative && nanoseconds != 0 {
            throw error(.outOfRange, "t", "\(describe(begin, end)): time since the trace's start cannot be negative")
        }
        return nanoseconds
    }

    private func parseString(_ field: Field, _ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>)
        throws(TraceError) -> Int32
    {
        guard p.pointee == UInt8(ascii: "\"") else {
            throw error(.wrongType, field.name, "expected a string, found \(describe(p, end))")
        }
        p += 1
        let begin = p
        // cgroup paths are long: eight bytes a step up to the word holding the closing quote
        while end - p >= 8, SWAR.isPlain(p) { p += 8 }
        while p < end {
            let c = p.pointee
            if c == UInt8(ascii: "\"") {
                let id = strings.intern(UnsafeBufferPointer(start: begin, count: p - begin))
                p += 1
                return id
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error(.malformed, field.name, "a control character in a string") }
            p += 1
        }
        guard p < end else { throw error(.malformed, field.name, "the string is not closed") }
        // escapes: decode into scratch
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: begin, count: p - begin))
        while p < end {
            let c = p.pointee
            if c == UInt8(ascii: "\"") {
                p += 1
                return scratch.withUnsafeBufferPointer { strings.intern($0) }
            }
            if c < 0x20 { throw error(.malformed, field.name, "a control character in a string") }
            if c != UInt8(ascii: "\\") {
                scratch.append(c)
                p += 1
                continue
            }
            p += 1
            guard p < end else { break }
            let e = p.pointee
            p += 1
            switch e {
            case UInt8(ascii: "\""): scratch.append(0x22)
            case UInt8(ascii: "\\"): scratch.append(0x5C)
            case UInt8(ascii: "/"): scratch.append(0x2F)
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(field, &p, end)
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard end - p >= 6, p[0] == UInt8(ascii: "\\"), p[1] == UInt8(ascii: "u") else {
                        throw error(.malformed, field.name, "an unpaired surrogate in a string")
                    }
                    p += 2
                    let low = try hex4(field, &p, end)
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw error(.malformed, field.name, "an unpaired surrogate in a string")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw error(.malformed, field.name, "an unpaired surrogate in a string")
                }
                scratch.append(contentsOf: Unicode.Scalar(scalar).map { Array(String($0).utf8) } ?? [])
            default:
                throw error(.malformed, field.name, "an invalid escape '\\\(Character(Unicode.Scalar(e)))' in a string")
            }
        }
        throw error(.malformed, field.name, "the string is not closed")
    }

    private func hex4(_ field: Field, _ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>)
        throws(TraceError) -> UInt32
    {
        guard end - p >= 4 else { throw error(.malformed, field.name, "a short \\u escape in a string") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = p.pointee
            let digit: UInt32
            switch c {
            case 0x30...0x39: digit = UInt32(c - 0x30)
            case 0x41...0x46: digit = UInt32(c - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(c - 0x61 + 10)
            default: throw error(.malformed, field.name, "a bad \\u escape in a string")
            }
            value = value << 4 | digit
            p += 1
        }
        return value
    }

    private func skipString(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) throws(TraceError) {
        p += 1
        while p < end {
            let c = p.pointee
            if c == UInt8(ascii: "\"") {
                p += 1
                return
            }
            if c < 0x20 { throw error(.malformed, nil, "a control character in a string") }
            p += c == UInt8(ascii: "\\") ? 2 : 1
        }
        throw error(.malformed, nil, "a string is not closed")
    }

    /// Skips any JSON value of a field this reader does not use.
    private func skipValue(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, depth: Int) throws(TraceError) {
        guard depth < 64 else { throw error(.malformed, nil, "values nested too deeply") }
        guard p < end else { throw error(.malformed, nil, "a value is missing") }
        switch p.pointee {
        case UInt8(ascii: "\""):
            try skipString(&p, end)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = p.pointee == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            p += 1
            var first = true
            while true {
                while p < end && (p.pointee == 0x20 || p.pointee == 0x09) { p += 1 }
                guard p < end else { throw error(.malformed, nil, "a nested value is not closed") }
                if p.pointee == close {
                    p += 1
                    return
                }
                if !first {
                    guard p.pointee == UInt8(ascii: ",") else { throw error(.malformed, nil, "expected ',' in a nested value") }
                    p += 1
                    while p < end && (p.pointee == 0x20 || p.pointee == 0x09) { p += 1 }
                    guard p < end else { throw error(.malformed, nil, "a nested value is not closed") }
                }
                first = false
                if isObject {
                    guard p.pointee == UInt8(ascii: "\"") else { throw error(.malformed, nil, "expected a name in a nested object") }
                    try skipString(&p, end)
                    while p < end && (p.pointee == 0x20 || p.pointee == 0x09) { p += 1 }
                    guard p < end && p.pointee == UInt8(ascii: ":") else { throw error(.malformed, nil, "expected ':' in a nested object") }
                    p += 1
                    while p < end && (p.pointee == 0x20 || p.pointee == 0x09) { p += 1 }
                }
                try skipValue(&p, end, depth: depth + 1)
            }
        case UInt8(ascii: "t"):
            guard end - p >= 4, memcmp(p, "true", 4) == 0 else { throw error(.malformed, nil, "an invalid value") }
            p += 4
        case UInt8(ascii: "f"):
            guard end - p >= 5, memcmp(p, "false", 5) == 0 else { throw error(.malformed, nil, "an invalid value") }
            p += 5
        case UInt8(ascii: "n"):
            guard end - p >= 4, memcmp(p, "null", 4) == 0 else { throw error(.malformed, nil, "an invalid value") }
            p += 4
        default:
            let begin = p
            if p.pointee == UInt8(ascii: "-") { p += 1 }
            var digits = 0
            while p < end {
                let c = p.pointee
                guard (c &- 0x30) < 10 || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
                    || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
                else { break }
                if (c &- 0x30) < 10 { digits += 1 }
                p += 1
            }
            guard digits > 0 else { throw error(.malformed, nil, "an invalid value \(describe(begin, end))") }
        }
    }
}

/// Eight bytes at a time (SIMD within a register): the trace's long runs of
/// digits and string bytes, checked and converted without a branch per byte.
enum SWAR {
    /// The value of eight ASCII digits at p, or nil when any byte is not a digit.
    @inline(__always)
    static func eightDigits(_ p: UnsafePointer<UInt8>) -> UInt64? {
        let w = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        // a digit's high nibble is 3, and stays 3 when 6 is added
        guard (w & 0xF0F0_F0F0_F0F0_F0F0) | (((w &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
            == 0x3333_3333_3333_3333
        else { return nil }
        // pairs, then fours, then all eight (the first byte is the most significant digit)
        var v = w & 0x0F0F_0F0F_0F0F_0F0F
        v = (v &* 2561) >> 8
        v = ((v & 0x00FF_00FF_00FF_00FF) &* 6_553_601) >> 16
        return ((v & 0x0000_FFFF_0000_FFFF) &* 42_949_672_960_001) >> 32
    }

    /// Whether none of the eight bytes at p ends or escapes a JSON string:
    /// no '"', no '\\', no control character.
    @inline(__always)
    static func isPlain(_ p: UnsafePointer<UInt8>) -> Bool {
        let w = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quote = w ^ 0x2222_2222_2222_2222
        let backslash = w ^ 0x5C5C_5C5C_5C5C_5C5C
        // (x - 0x01…) & ~x has a high bit set iff some byte of x is 0 (a borrow only reaches
        // bytes above a zero one); with 0x20… in place of 0x01…, iff some byte is below 0x20
        let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((w &- 0x2020_2020_2020_2020) & ~w)
        return special & 0x8080_8080_8080_8080 == 0
    }
}
