import MemwardenModel

/// Turns the kernel's records, their cgroups resolved (the Identity stage's
/// RecordResolver), into leak events for the live agent: every process and
/// cgroup sample goes to the confirmation stage with its target's cgroup,
/// limit and usage, verdict changes go there as the fast path, and
/// exit, exec and an emptied cgroup end a target. The same sequence
/// `Replayer` follows over a trace.
public struct LiveDetection: Sendable {
    public private(set) var confirmation: ConfirmationStage
    /// The clock of the events' "t", the trace's: replay and run agree to the digit.
    public let traceClock: TraceClock
    /// Monotonic nanoseconds of t = 0.
    public var origin: UInt64 { traceClock.origin }
    /// The newest resident memory of each cgroup: what a process's forecast
    /// compares with its cgroup's limit.
    /// Each cgroup's usage and held memory from its last record (one moment).
    private var cgroupUsage: [UInt64: (usage: UInt64, held: UInt64)] = [:]
    /// The limit of a target whose cgroups set none: the node's memory, which
    /// an unbounded leak meets instead (nil: no forecast without a limit).
    public let nodeMemory: UInt64?

    public init(origin: UInt64, settings: ConfirmationSettings = ConfirmationSettings(), nodeMemory: UInt64? = nil) {
        traceClock = TraceClock(origin: origin)
        self.nodeMemory = nodeMemory
        confirmation = ConfirmationStage(settings: settings)
    }

    /// `resolve`: a target's confirmation settings (its policy rule's
    /// `detectors`); nil, the node's.
    public mutating func events(
        for resolved: ResolvedRecord, resolve: ConfirmationStage.SettingsResolver? = nil
    ) -> [LeakEvent] {
        var events: [LeakEvent] = []
        let path = resolved.cgroup.path
        let limit = resolved.cgroup.limit
        switch resolved.record {
        case .verdict(let verdict):
            let context = AssessmentContext(
                timeNanoseconds: traceClock.nanoseconds(verdict.monotonicNanoseconds),
                scope: verdict.pid == nil ? .cgroup : .process,
                pid: verdict.pid, comm: verdict.pid == nil ? nil : verdict.comm, cgroup: path, limit: limit ?? nodeMemory,
                usage: verdict.cgroupRSS)
            let key: ConfirmationKey = verdict.pid.map { .process($0) } ?? .cgroup(verdict.cgroupID)
            if let event = confirmation.kernelVerdict(
                key, verdict: DetectorVerdict(raw: verdict.raw), context: context, resolve: resolve,
                cgroup: verdict.pid == nil ? nil : .cgroup(verdict.cgroupID)) {
                events.append(event)
            }
        case .process(let process):
            let t = traceClock.nanoseconds(process.monotonicNanoseconds)
            let cgroupNow = cgroupUsage[process.cgroupID]
            let usage = cgroupNow?.usage ?? process.memory.rss
            func context() -> AssessmentContext {
                AssessmentContext(
                    timeNanoseconds: t, scope: .process, pid: process.pid, comm: process.comm, cgroup: path,
                    limit: limit ?? nodeMemory, usage: usage, cgroupHeld: cgroupNow?.held)
            }
            switch process.kind {
            case .exit, .exec:
                let reason: ClearReason = process.kind == .exit ? .processExited : .exec
                if let event = confirmation.end(.process(process.pid), reason: reason, context: context()) {
                    events.append(event)
                }
                if process.kind == .exit { break }
                fallthrough
            case .sample:
                let m = process.memory
                confirmation.sample(
                    .process(process.pid), time: t, held: m.anon &+ m.shmem &+ m.swap, context: context, into: &events,
                    resolve: resolve, cgroup: .cgroup(process.cgroupID))
            }
        case .cgroup(let cgroup):
            let t = traceClock.nanoseconds(cgroup.monotonicNanoseconds)
            func context() -> AssessmentContext {
                AssessmentContext(
                    timeNanoseconds: t, scope: .cgroup, pid: nil, comm: nil, cgroup: path, limit: limit ?? nodeMemory,
                    usage: cgroup.usage ?? cgroup.memory.rss,
                    cgroupHeld: cgroup.memory.anon &+ cgroup.memory.shmem &+ cgroup.memory.swap)
            }
            if cgroup.processCount == 0 {
                cgroupUsage[cgroup.cgroupID] = nil
                if let event = confirmation.end(.cgroup(cgroup.cgroupID), reason: .cgroupEmpty, context: context()) {
                    events.append(event)
                }
            } else {
                let m = cgroup.memory
                cgroupUsage[cgroup.cgroupID] = (cgroup.usage ?? m.rss, m.anon &+ m.shmem &+ m.swap)
                confirmation.sample(
                    .cgroup(cgroup.cgroupID), time: t, held: m.anon &+ m.shmem &+ m.swap, context: context,
                    into: &events, resolve: resolve)
            }
        }
        return events
    }
}

extension LiveDetection {
    /// Lets targets gone quiet be judged (`ConfirmationStage.idle`): the
    /// pipeline calls it every `ConfirmationStage.idleIntervalNanoseconds`, as replay
    /// does on its trace's clock.
    public mutating func idle(monotonicNanoseconds: UInt64) -> [LeakEvent] {
        var events: [LeakEvent] = []
        confirmation.idle(now: traceClock.nanoseconds(monotonicNanoseconds), into: &events)
        return events
    }
}
