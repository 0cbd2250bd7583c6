/// One line of a trace (the foundation issue's format: JSON Lines, one
/// coalesced sample a line), as replay needs it. Strings are interned: `comm`
/// and `cgroup` are ids into the reader's `TraceStrings`.
public struct TraceSample: Sendable, Hashable {
    public enum Event: UInt8, Sendable {
        case sample
        /// The first line after an exec: a new program in the same process.
        case exec
        /// The process's last line: it is gone.
        case exit
    }

    /// 1-based line number in the trace.
    public var line: Int
    /// `t` in nanoseconds since the trace's start (exact for up to 9 decimals).
    public var timeNanoseconds: Int64
    public var pid: Int32
    public var comm: Int32
    public var cgroup: Int32
    public var anon: UInt64
    public var file: UInt64
    public var shmem: UInt64
    public var swap: UInt64
    public var vsz: UInt64
    /// The memory cgroup's limit in bytes, when the line has one.
    public var limit: UInt64?
    public var event: Event

    public init(
        line: Int, timeNanoseconds: Int64, pid: Int32, comm: Int32, cgroup: Int32, anon: UInt64, file: UInt64,
        shmem: UInt64, swap: UInt64, vsz: UInt64, limit: UInt64?, event: Event
    ) {
        self.line = line
        self.timeNanoseconds = timeNanoseconds
        self.pid = pid
        self.comm = comm
        self.cgroup = cgroup
        self.anon = anon
        self.file = file
        self.shmem = shmem
        self.swap = swap
        self.vsz = vsz
        self.limit = limit
        self.event = event
    }

    /// `t` in seconds.
    public var time: Double { Double(timeNanoseconds) / 1e9 }
    /// anon + file + shmem.
    public var rss: UInt64 { anon &+ file &+ shmem }
}

/// The distinct strings of a trace. Lookups hash the raw bytes of the line and
/// compare them with the stored bytes, so a repeated comm or cgroup path costs
/// no String allocation.
public final class TraceStrings {
    @exclusivity(unchecked) private var strings: [String] = []
    /// Every string's bytes end to end, string `id` at `starts[id]..<starts[id + 1]`: the
    /// comparison on every line reads them with no array per string to retain and release.
    @exclusivity(unchecked) private var arena: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var arenaCapacity: Int
    @exclusivity(unchecked) private var starts: [Int] = [0]
    @exclusivity(unchecked) private var table: [Int32]
    @exclusivity(unchecked) private var mask: Int

    public init() {
        table = Array(repeating: -1, count: 1024)
        mask = 1023
        arenaCapacity = 4096
        arena = .allocate(capacity: arenaCapacity)
    }

    deinit { arena.deallocate() }

    public var count: Int { strings.count }

    public subscript(id: Int32) -> String { strings[Int(id)] }

    /// The id of a string given as its JSON-decoded UTF-8 bytes.
    public func intern(_ buffer: UnsafeBufferPointer<UInt8>) -> Int32 {
        var index = Int(truncatingIfNeeded: Self.hash(buffer)) & mask
        while true {
            let id = table[index]
            if id < 0 { break }
            if Self.equal(stored(id), buffer) { return id }
            index = (index + 1) & mask
        }
        let id = Int32(strings.count)
        strings.append(String(decoding: buffer, as: UTF8.self))
        store(buffer)
        table[index] = id
        if strings.count * 2 > table.count { grow() }
        return id
    }

    public func intern(_ string: String) -> Int32 {
        var copy = string
        return copy.withUTF8 { intern($0) }
    }

    /// Eight bytes a step: cgroup paths are long, and this runs twice a line.
    private static func hash(_ buffer: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(buffer.count)
        guard let base = buffer.baseAddress else { return hash }
        let raw = UnsafeRawPointer(base)
        var offset = 0
        while offset + 8 <= buffer.count {
            let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            hash = (hash ^ word) &* 0xFF51_AFD7_ED55_8CCD
            hash ^= hash >> 32
            offset += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < buffer.count {
            tail |= UInt64(base[offset]) << shift
            shift += 8
            offset += 1
        }
        hash = (hash ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        return hash ^ (hash >> 29)
    }

    /// Whether string `id` is "", without touching the String.
    func isEmpty(_ id: Int32) -> Bool { starts[Int(id) + 1] == starts[Int(id)] }

    private func stored(_ id: Int32) -> UnsafeBufferPointer<UInt8> {
        let start = starts[Int(id)]
        return UnsafeBufferPointer(start: arena + start, count: starts[Int(id) + 1] - start)
    }

    private func store(_ buffer: UnsafeBufferPointer<UInt8>) {
        let start = starts[starts.count - 1]
        if start + buffer.count > arenaCapacity {
            let capacity = max(2 * arenaCapacity, start + buffer.count)
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
            bigger.update(from: arena, count: start)
            arena.deallocate()
            arena = bigger
            arenaCapacity = capacity
        }
        if let base = buffer.baseAddress { (arena + start).update(from: base, count: buffer.count) }
        starts.append(start + buffer.count)
    }

    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return true }
        return memcmp(pa, pb, a.count) == 0
    }

    private func grow() {
        table = Array(repeating: -1, count: table.count * 2)
        mask = table.count - 1
        for id in 0..<strings.count {
            var index = Int(truncatingIfNeeded: Self.hash(stored(Int32(id)))) & mask
            while table[index] >= 0 { index = (index + 1) & mask }
            table[index] = Int32(id)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
