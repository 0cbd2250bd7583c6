import CMemwarden
import MemwardenModel

/// A change of one target's detector verdict, as the kernel would send it.
public struct VerdictChange: Sendable {
    public var timeNanoseconds: Int64
    public var scope: LeakScope
    public var pid: Int32?
    public var cgroup: String
    public var verdict: DetectorVerdict

    package init(timeNanoseconds: Int64, scope: LeakScope, pid: Int32? = nil, cgroup: String, verdict: DetectorVerdict) {
        self.timeNanoseconds = timeNanoseconds
        self.scope = scope
        self.pid = pid
        self.cgroup = cgroup
        self.verdict = verdict
    }

    /// One JSON line: the verdict's fields, for `replay --verdicts` and for
    /// comparing with the kernel's verdict records.
    public func jsonLine() -> String {
        let v = verdict.raw
        var line = JSONLine()
        line.add("type", "verdict")
        line.add("t", Double(timeNanoseconds) / 1e9, decimals: 6)
        line.add("scope", scope.rawValue)
        line.add("pid", pid)
        line.add("cgroup", cgroup)
        line.addRaw("fired", LeakEvent.array(DetectorKind.allCases.filter { verdict.hasFired($0) }.map(\.name)))
        line.add("level", verdict.level)
        line.add("trend", verdict.score(.trend))
        line.add("composition", verdict.score(.composition))
        line.add("multi_factor", verdict.score(.multiFactor))
        line.add("growth", v.growth)
        line.add("floor_slope", v.floor_slope)
        line.add("level_slope", v.level_slope)
        line.add("floor_r2", Int(v.floor_r2))
        line.add("level_r2", Int(v.level_r2))
        line.add("fast_slope", v.fast_slope)
        line.add("span_ms", v.span_ms)
        line.add("rise_ms", v.rise_ms)
        line.add("rise_highs", Int(v.rise_highs))
        line.add("held", v.held)
        line.add("floor", v.floor)
        line.add("anon_rate", v.anon_rate)
        line.add("file_rate", v.file_rate)
        line.add("shmem_rate", v.shmem_rate)
        line.add("swap_rate", v.swap_rate)
        line.add("vsz_growth", v.vsz_growth)
        line.addRaw("reasons", LeakEvent.array(verdict.reasons.names))
        return line.finish()
    }
}

/// Replays a trace through exactly the kernel's detector code (ebpf/detectors_impl.h
/// compiled for userspace): per process, and per memory cgroup with the
/// kernel's aggregation rule (`mw_agg_*`). Several processes may share a
/// cgroup, processes come and go, exec starts a process over. Every sample
/// and every verdict change goes to the confirmation stage in the order the
/// live agent sees them, so replay and `run` agree.
public final class Replayer {
    public let configuration: DetectorConfiguration
    @exclusivity(unchecked) public private(set) var confirmation: ConfirmationStage
    public let strings: TraceStrings
    /// The limit of a target whose samples carry none: the node's memory, as
    /// the live agent uses it (`LiveDetection.nodeMemory`); nil, no forecast
    /// and the fast path's horizon unknown.
    public let nodeMemory: UInt64?
    /// Called with every verdict change (before the assessor sees it).
    public var onVerdict: ((VerdictChange) -> Void)?
    @exclusivity(unchecked) public private(set) var samples = 0
    @exclusivity(unchecked) public private(set) var verdictChanges = 0
    /// When the trace's clock next lets quiet targets speak (`ConfirmationStage.idle`),
    /// as often as the live agent does.
    @exclusivity(unchecked) private var nextIdle: Int64 = 0

    private struct Process {
        var slot: Int32
        var comm: Int32
        var cgroup: Int32 = -1
        var contribution = mw_det_sample()
        var limit: UInt64?
    }

    private struct Cgroup {
        var aggregate = mw_agg()
        var slot: Int32
        var limit: UInt64?
    }

    private let pool = DetectorStatePool()
    @exclusivity(unchecked) private var config: mw_det_config
    /// By pid: index into `processes`.
    @exclusivity(unchecked) private var processIndex = KeyTable()
    @exclusivity(unchecked) private var processes: [Process] = []
    @exclusivity(unchecked) private var freeProcesses: [Int32] = []
    /// By cgroup string id: index into `cgroups`, or -1.
    @exclusivity(unchecked) private var cgroupIndex: [Int32] = []
    @exclusivity(unchecked) private var cgroups: [Cgroup] = []
    @exclusivity(unchecked) private var freeCgroups: [Int32] = []

    public init(strings: TraceStrings, configuration: DetectorConfiguration = DetectorConfiguration(),
                confirmation: ConfirmationSettings = ConfirmationSettings(), nodeMemory: UInt64? = nil) {
        self.strings = strings
        self.nodeMemory = nodeMemory
        self.configuration = configuration
        self.confirmation = ConfirmationStage(settings: confirmation)
        config = configuration.raw
    }

    /// Feeds one trace line; appends the events it causes.
    public func feed(_ sample: TraceSample, into events: inout [LeakEvent]) {
        samples += 1
        let t = sample.timeNanoseconds
        if t >= nextIdle {
            confirmation.idle(now: t, into: &events)
            nextIdle = t + ConfirmationStage.idleIntervalNanoseconds
        }
        var counters = mw_det_sample(
            t_ms: UInt64(t / 1_000_000), anon: sample.anon, file: sample.file, shmem: sample.shmem, swap: sample.swap,
            vsz: sample.vsz)

        if sample.event == .exit {
            guard let index = processIndex.remove(Self.key(sample.pid)) else { return }
            var process = processes[Int(index)]
            if let event = confirmation.end(
                .process(sample.pid), reason: .processExited, context: context(process, pid: sample.pid, t: t))
            {
                events.append(event)
            }
            leaveCgroup(&process, t: t, into: &events)
            pool.release(process.slot)
            freeProcesses.append(index)
            return
        }

        let index: Int32
        if let known = processIndex.find(Self.key(sample.pid)) {
            index = known
            if sample.event == .exec {
                let process = processes[Int(index)]
                if let event = confirmation.end(
                    .process(sample.pid), reason: .exec, context: context(process, pid: sample.pid, t: t))
                {
                    events.append(event)
                }
                mw_det_reset(pool.pointer(process.slot))
                processes[Int(index)] = process
            }
        } else {
            index = Self.place(Process(slot: pool.acquire(), comm: sample.comm), in: &processes, free: &freeProcesses)
            processIndex.insert(Self.key(sample.pid), index)
        }

        var process = processes[Int(index)]
        process.comm = sample.comm
        process.limit = sample.limit
        // the cgroup's aggregate first, so the process's forecast sees the cgroup's usage now
        let cgroupID = strings.count > 0 && !isEmpty(sample.cgroup) ? sample.cgroup : -1
        if process.cgroup != cgroupID { leaveCgroup(&process, t: t, into: &events) }
        var cgroupSlot: Int32 = -1
        if cgroupID >= 0 {
            cgroupSlot = joinCgroup(cgroupID)
            let from: UnsafePointer<mw_det_sample>? = nil
            withUnsafePointer(to: counters) { to in
                if process.cgroup == cgroupID {
                    withUnsafePointer(to: process.contribution) { mw_agg_move(&cgroups[Int(cgroupSlot)].aggregate, $0, to) }
                } else {
                    mw_agg_move(&cgroups[Int(cgroupSlot)].aggregate, from, to)
                }
            }
            process.cgroup = cgroupID
            process.contribution = counters
            if let limit = sample.limit { cgroups[Int(cgroupSlot)].limit = limit }
        }

        var verdict = mw_det_verdict()
        if mw_det_update(pool.pointer(process.slot), &config, &counters, &verdict) != 0 {
            verdictChanged(verdict, scope: .process, pid: sample.pid, cgroup: process.cgroup, t: t)
            if let event = confirmation.kernelVerdict(
                .process(sample.pid), verdict: DetectorVerdict(raw: verdict), context: context(process, pid: sample.pid, t: t),
                cgroup: cgroupID >= 0 ? .cgroup(UInt64(cgroupID)) : nil)
            {
                events.append(event)
            }
        }
        confirmation.sample(
            .process(sample.pid), time: t, held: sample.anon &+ sample.shmem &+ sample.swap,
            context: { context(process, pid: sample.pid, t: t) }, into: &events,
            cgroup: cgroupID >= 0 ? .cgroup(UInt64(cgroupID)) : nil)
        processes[Int(index)] = process
        if cgroupSlot >= 0 { runCgroup(cgroupSlot, id: cgroupID, t: t, into: &events) }
    }

    private static func key(_ pid: Int32) -> UInt64 { UInt64(UInt32(bitPattern: pid)) }

    /// Puts an element in a slot freed earlier, or at the end; returns its index.
    private static func place<T>(_ element: T, in array: inout [T], free: inout [Int32]) -> Int32 {
        if let reused = free.popLast() {
            array[Int(reused)] = element
            return reused
        }
        array.append(element)
        return Int32(array.count - 1)
    }

    private func isEmpty(_ id: Int32) -> Bool {
        // "" marks a process whose cgroup the recorder could not tell
        strings.isEmpty(id)
    }

    private func verdictChanged(_ verdict: mw_det_verdict, scope: LeakScope, pid: Int32?, cgroup: Int32, t: Int64) {
        verdictChanges += 1
        guard let onVerdict else { return }
        onVerdict(
            VerdictChange(
                timeNanoseconds: t, scope: scope, pid: pid, cgroup: cgroup >= 0 ? strings[cgroup] : "",
                verdict: DetectorVerdict(raw: verdict)))
    }

    private func context(_ process: Process, pid: Int32, t: Int64) -> AssessmentContext {
        var usage = process.contribution.anon &+ process.contribution.file &+ process.contribution.shmem
        var held: UInt64?
        if process.cgroup >= 0, case let slot = cgroupIndex[Int(process.cgroup)], slot >= 0 {
            usage = Self.rss(cgroups[Int(slot)].aggregate)
            held = Self.held(cgroups[Int(slot)].aggregate)
        }
        return AssessmentContext(
            timeNanoseconds: t, scope: .process, pid: pid, comm: strings[process.comm],
            cgroup: process.cgroup >= 0 ? strings[process.cgroup] : "", limit: process.limit ?? nodeMemory, usage: usage,
            cgroupHeld: held)
    }

    private func cgroupContext(_ slot: Int32, id: Int32, t: Int64) -> AssessmentContext {
        AssessmentContext(
            timeNanoseconds: t, scope: .cgroup, pid: nil, comm: nil, cgroup: strings[id], limit: cgroups[Int(slot)].limit ?? nodeMemory,
            usage: Self.rss(cgroups[Int(slot)].aggregate), cgroupHeld: Self.held(cgroups[Int(slot)].aggregate))
    }

    private static func held(_ aggregate: mw_agg) -> UInt64 {
        UInt64(max(0, aggregate.anon)) &+ UInt64(max(0, aggregate.shmem)) &+ UInt64(max(0, aggregate.swap))
    }

    private static func rss(_ aggregate: mw_agg) -> UInt64 {
        UInt64(max(0, aggregate.anon)) &+ UInt64(max(0, aggregate.file)) &+ UInt64(max(0, aggregate.shmem))
    }

    private func joinCgroup(_ id: Int32) -> Int32 {
        while cgroupIndex.count <= Int(id) { cgroupIndex.append(-1) }
        let existing = cgroupIndex[Int(id)]
        if existing >= 0 { return existing }
        let slot = Self.place(Cgroup(slot: pool.acquire()), in: &cgroups, free: &freeCgroups)
        cgroupIndex[Int(id)] = slot
        return slot
    }

    /// Takes a process's contribution out of its cgroup; the cgroup's detectors
    /// run if the rule says so, and the cgroup goes with its last process.
    private func leaveCgroup(_ process: inout Process, t: Int64, into events: inout [LeakEvent]) {
        guard process.cgroup >= 0 else { return }
        let id = process.cgroup
        process.cgroup = -1
        let slot = cgroupIndex[Int(id)]
        guard slot >= 0 else { return }
        let to: UnsafePointer<mw_det_sample>? = nil
        withUnsafePointer(to: process.contribution) { mw_agg_move(&cgroups[Int(slot)].aggregate, $0, to) }
        process.contribution = mw_det_sample()
        if cgroups[Int(slot)].aggregate.members == 0 {
            let cgroup = cgroups[Int(slot)]
            if let event = confirmation.end(
                .cgroup(UInt64(id)), reason: .cgroupEmpty, context: cgroupContext(slot, id: id, t: t))
            {
                events.append(event)
            }
            pool.release(cgroup.slot)
            cgroupIndex[Int(id)] = -1
            freeCgroups.append(slot)
            return
        }
        runCgroup(slot, id: id, t: t, into: &events)
    }

    private func runCgroup(_ slot: Int32, id: Int32, t: Int64, into events: inout [LeakEvent]) {
        let tMs = UInt64(t / 1_000_000)
        guard mw_agg_due(&cgroups[Int(slot)].aggregate, &config, tMs) != 0 else { return }
        var sample = mw_det_sample()
        mw_agg_sample(&cgroups[Int(slot)].aggregate, tMs, &sample)
        var verdict = mw_det_verdict()
        if mw_det_update(pool.pointer(cgroups[Int(slot)].slot), &config, &sample, &verdict) != 0 {
            verdictChanged(verdict, scope: .cgroup, pid: nil, cgroup: id, t: t)
            if let event = confirmation.kernelVerdict(
                .cgroup(UInt64(id)), verdict: DetectorVerdict(raw: verdict), context: cgroupContext(slot, id: id, t: t))
            {
                events.append(event)
            }
        }
        confirmation.sample(
            .cgroup(UInt64(id)), time: t, held: sample.anon &+ sample.shmem &+ sample.swap,
            context: { cgroupContext(slot, id: id, t: t) }, into: &events)
    }
}

/// Reads a whole trace and replays it: the path `memwarden replay` takes.
public struct TraceReplay {
    public var configuration = DetectorConfiguration()
    public var confirmation = ConfirmationSettings()
    public var skipInvalid = false
    /// See `Replayer.nodeMemory`.
    public var nodeMemory: UInt64?
    public var onVerdict: ((VerdictChange) -> Void)?

    public init() {}

    public struct Summary: Sendable {
        public var samples: Int
        public var skipped: Int
        public var firstError: TraceError?
        public var verdictChanges: Int
    }

    /// Replays `reader`'s trace, handing every event to `emit` as it happens.
    public func run(_ reader: TraceReader, emit: (LeakEvent) throws -> Void) throws -> Summary {
        reader.skipInvalid = skipInvalid
        let replayer = Replayer(
            strings: reader.strings, configuration: configuration, confirmation: confirmation, nodeMemory: nodeMemory)
        replayer.onVerdict = onVerdict
        var events: [LeakEvent] = []
        while let sample = try reader.next() {
            replayer.feed(sample, into: &events)
            if !events.isEmpty {
                for event in events { try emit(event) }
                events.removeAll(keepingCapacity: true)
            }
        }
        return Summary(
            samples: replayer.samples, skipped: reader.skipped, firstError: reader.firstError,
            verdictChanges: replayer.verdictChanges)
    }
}
