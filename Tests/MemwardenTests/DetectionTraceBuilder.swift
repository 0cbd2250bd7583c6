import MemwardenDetection
import MemwardenModel

/// Memory of one process at one moment, bytes.
struct MemoryShape {
    var anon: Double
    var file: Double = 50 * mib
    var shmem: Double = 0
    var swap: Double = 0
    /// nil: RSS plus a fixed reservation, as a typical heap process.
    var vsz: Double? = nil
}

let kib = 1024.0
let mib = 1024.0 * 1024.0
let gib = 1024.0 * mib

/// Deterministic noise (SplitMix64), so every trace is the same on every run.
struct Noise {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x2545_F491_4F6C_DD1D }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-amplitude, amplitude].
    mutating func uniform(_ amplitude: Double) -> Double {
        guard amplitude > 0 else { return 0 }
        return (Double(next() >> 11) / Double(1 << 53) * 2 - 1) * amplitude
    }
}

/// Builds a trace the way the kernel records one: each process has a memory
/// event every `eventInterval` seconds (its true counters plus noise on anon),
/// and a line is written only when RSS moved by 1 MiB since the process's last
/// line, or at an event 10 s or more after it (the coalescing rule). Lines of
/// all processes are merged in time order, as the recorder writes them.
struct TraceBuilder {
    private struct Line {
        var t: Double
        var order: Int
        var text: String
    }

    private var lines: [Line] = []
    private var order = 0
    static let step = 1 * mib
    static let heartbeat = 10.0

    /// Adds one process from `start` to `start + duration` (trace seconds).
    /// Returns the times of its lines (for tests that need them).
    @discardableResult
    mutating func process(
        pid: Int32, comm: String = "app", cgroup: String = "/test.slice/app.service", start: Double = 0,
        duration: Double, eventInterval: Double, noise: Double = 2 * mib, seed: UInt64 = 1, limit: Double? = nil,
        execAtStart: Bool = false, exitAtEnd: Bool = false, quietWhenFlat: Bool = false,
        shape: (Double) -> MemoryShape
    ) -> [Double] {
        var random = Noise(seed: seed ^ UInt64(pid))
        var lastRSS: Double?
        var lastT = 0.0
        var times: [Double] = []
        var pending: [(Double, MemoryShape)] = []
        var age = 0.0
        var previous: Double?
        while age <= duration + 1e-9 {
            var memory = shape(age)
            memory.anon = max(0, memory.anon + random.uniform(noise))
            let rss = memory.anon + memory.file + memory.shmem
            // with quietWhenFlat, memory that does not change makes no event,
            // and so no heartbeat either, as in the kernel
            let event = !quietWhenFlat || previous != rss + memory.swap
            previous = rss + memory.swap
            if event && (lastRSS == nil || abs(rss - lastRSS!) >= Self.step || age - lastT >= Self.heartbeat) {
                pending.append((start + age, memory))
                lastRSS = rss
                lastT = age
            }
            age += eventInterval
        }
        for (i, (t, memory)) in pending.enumerated() {
            var event: String?
            if i == 0 && execAtStart { event = "exec" }
            if i == pending.count - 1 && exitAtEnd { event = "exit" }
            add(t: t, pid: pid, comm: comm, cgroup: cgroup, memory: memory, limit: limit, event: event)
            times.append(t)
        }
        return times
    }

    /// Adds one line as it is.
    mutating func add(
        t: Double, pid: Int32, comm: String, cgroup: String, memory: MemoryShape, limit: Double?, event: String? = nil
    ) {
        let rss = memory.anon + memory.file + memory.shmem
        let comm = comm.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
        var text = "{\"t\":\(format(t)),\"pid\":\(pid),\"comm\":\"\(comm)\",\"cgroup\":\"\(cgroup)\""
        text += ",\"anon\":\(UInt64(memory.anon)),\"file\":\(UInt64(memory.file)),\"shmem\":\(UInt64(memory.shmem))"
        text += ",\"swap\":\(UInt64(memory.swap)),\"vsz\":\(UInt64(memory.vsz ?? (rss + 512 * mib)))"
        if let limit { text += ",\"limit\":\(UInt64(limit))" }
        if let event { text += ",\"event\":\"\(event)\"" }
        text += "}"
        lines.append(Line(t: t, order: order, text: text))
        order += 1
    }

    private func format(_ t: Double) -> String {
        let micros = Int64((t * 1e6).rounded())
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }

    var text: String {
        lines.sorted { ($0.t, $0.order) < ($1.t, $1.order) }.map(\.text).joined(separator: "\n") + "\n"
    }

    var lineCount: Int { lines.count }

    /// Replays the trace through the detectors and the confirmation stage. With
    /// MW_TEST_TRACE_DIR set, the trace is also written there, to look at a
    /// failing shape with `memwarden replay --verdicts FILE`.
    func replay(
        profile: DetectorConfiguration.Profile = .standard, confirmation: ConfirmationSettings? = nil
    ) throws -> [LeakEvent] {
        if let dir = getenv("MW_TEST_TRACE_DIR") {
            let path = String(cString: dir) + "/trace-\(lines.count)-\(lines.last.map { UInt64($0.t * 1e6) } ?? 0).jsonl"
            let file = fopen(path, "w")
            fputs(text, file)
            fclose(file)
        }
        let reader = TraceReader(bytes: Array(text.utf8), name: "generated.jsonl")
        var events: [LeakEvent] = []
        var replay = TraceReplay()
        replay.configuration = DetectorConfiguration(profile: profile)
        replay.confirmation = confirmation ?? ConfirmationSettings(profile: profile)
        _ = try replay.run(reader) { events.append($0) }
        return events
    }
}

extension Array where Element == LeakEvent {
    func suspected(pid: Int32) -> [LeakEvent] { filter { $0.kind == .suspected && $0.scope == .process && $0.pid == pid } }
    func cleared(pid: Int32) -> [LeakEvent] { filter { $0.kind == .cleared && $0.scope == .process && $0.pid == pid } }
    func suspected(cgroup: String) -> [LeakEvent] { filter { $0.kind == .suspected && $0.scope == .cgroup && $0.cgroup == cgroup } }
    var anySuspected: [LeakEvent] { filter { $0.kind == .suspected } }

    /// One line per event, for failure messages.
    var summary: String {
        isEmpty
            ? "no events"
            : map { "\($0.kind.rawValue) t=\($0.t) \($0.scope.rawValue) pid=\($0.pid.map(String.init) ?? "-") \($0.detectors) \($0.reasons)" }
                .joined(separator: "\n")
    }
}

#if canImport(Glibc)
import Glibc
#endif
