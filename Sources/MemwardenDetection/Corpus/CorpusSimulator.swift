/// A process's memory at one simulation step, bytes.
struct SimulatedProcess {
    var pid: Int32
    var comm: String
    var anon: Double
    var file: Double
    var shmem: Double = 0
    /// Address space beyond what is resident (reservations, mapped libraries, thread stacks).
    var virtualExtra: Double = 512 * corpusMiB
}

let corpusMiB = 1024.0 * 1024.0
let corpusGiB = 1024.0 * corpusMiB

/// Turns a simulation of one memory cgroup, step by step, into the lines the
/// kernel program would send: a line when a process's RSS moved a coalescing
/// step since its last line or a heartbeat passed, a first line when it
/// appears, an exit line when it goes. With a limit, the step at which the
/// cgroup's RSS reaches it is the last: the kernel's OOM killer ends the
/// largest process there (then the container goes with it).
final class CgroupSimulator {
    let stepBytes: UInt64 = 1 << 20
    let heartbeat = 10.0
    let limit: UInt64?
    private(set) var samples: [CorpusSample] = []
    private(set) var limitTime: Double?
    private(set) var peak: UInt64 = 0
    private(set) var end = 0.0
    private(set) var finished = false

    private struct Known {
        var lastTime: Double
        var lastRSS: UInt64
        var current: CorpusSample
    }

    private var known: [Int32: Known] = [:]
    /// Live pids in the order they appeared: exit lines come out in a fixed order.
    private var order: [Int32] = []

    init(limit: UInt64? = nil) {
        self.limit = limit
    }

    /// Whole pages, as the kernel counts them.
    private static func bytes(_ value: Double) -> UInt64 {
        guard value > 0 else { return 0 }
        return UInt64(value / 4096) * 4096
    }

    /// One step: every process alive at `t`. A process missing from the list
    /// exited. Returns false once the limit was reached (the trace is over).
    @discardableResult
    func observe(_ t: Double, _ processes: [SimulatedProcess]) -> Bool {
        precondition(!finished, "the simulation ended at \(end)")
        end = t
        var now = processes.map { process in
            let anon = Self.bytes(process.anon)
            let file = Self.bytes(process.file)
            let shmem = Self.bytes(process.shmem)
            return CorpusSample(
                t: t, pid: process.pid, comm: process.comm, anon: anon, file: file, shmem: shmem,
                vsz: anon + file + shmem + Self.bytes(process.virtualExtra))
        }
        let alive = Set(now.map(\.pid))
        for pid in order where !alive.contains(pid) {
            if let gone = known.removeValue(forKey: pid) { emitExit(gone.current, at: t) }
        }
        order.removeAll { !alive.contains($0) }

        // which processes get a line now, and the cgroup's usage as the lines tell it
        var emit = now.map { sample -> Bool in
            guard let entry = known[sample.pid] else { return true }
            let moved = sample.rss > entry.lastRSS ? sample.rss - entry.lastRSS : entry.lastRSS - sample.rss
            return moved >= stepBytes || t - entry.lastTime >= heartbeat - 1e-9
        }
        func lineTotal() -> UInt64 {
            now.indices.reduce(UInt64(0)) { $0 + (emit[$1] ? now[$1].rss : known[now[$1].pid]!.lastRSS) }
        }
        let total = now.reduce(UInt64(0)) { $0 + $1.rss }
        var victimPid: Int32?
        if let limit, total >= limit || lineTotal() >= limit,
            let victim = now.indices.max(by: { now[$0].anon < now[$1].anon })
        {
            // memory.max is never exceeded: the charge that would cross it fails and the OOM
            // killer runs. The victim's last line puts the cgroup exactly at the limit as its
            // lines tell it, which is what a reader (and the detectors' cgroup aggregate) sums.
            emit[victim] = true
            let others = lineTotal() - now[victim].rss
            let anon = Int64(limit) - Int64(others) - Int64(now[victim].file + now[victim].shmem)
            let adjusted = UInt64(max(0, anon))
            now[victim].vsz = now[victim].vsz - now[victim].anon + adjusted
            now[victim].anon = adjusted
            victimPid = now[victim].pid
            limitTime = t
        }
        peak = max(peak, lineTotal(), now.reduce(UInt64(0)) { $0 + $1.rss })

        for (index, sample) in now.enumerated() {
            if var entry = known[sample.pid] {
                entry.current = sample
                if emit[index] {
                    samples.append(sample)
                    entry.lastTime = t
                    entry.lastRSS = sample.rss
                }
                known[sample.pid] = entry
            } else {
                samples.append(sample)
                known[sample.pid] = Known(lastTime: t, lastRSS: sample.rss, current: sample)
                order.append(sample.pid)
            }
        }

        if let victim = victimPid {
            // the victim first, then the rest of the container as it is torn down
            var exitTime = t + 0.05
            for pid in [victim] + order.filter({ $0 != victim }) {
                if let gone = known.removeValue(forKey: pid) { emitExit(gone.current, at: exitTime) }
                exitTime += 0.05
            }
            order.removeAll()
            end = exitTime - 0.05
            finished = true
            return false
        }
        return true
    }

    private func emitExit(_ last: CorpusSample, at t: Double) {
        var line = last
        line.t = t
        line.event = .exit
        samples.append(line)
    }

    /// Runs `body` at t = 0, dt, 2·dt, … up to `until` or until the limit is reached.
    func run(dt: Double, until: Double, _ body: (Double) -> [SimulatedProcess]) {
        var step = 0
        while !finished {
            let t = Double(step) * dt
            if t > until + 1e-9 { break }
            observe(t, body(t))
            step += 1
        }
    }
}
