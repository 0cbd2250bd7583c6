/// Turns the kernel's records into leak events for the live agent: verdict
/// changes go to the assessor with the target's identity, limit and usage;
/// exit, exec and an emptied cgroup end a target's suspicion. The same
/// sequence `Replayer` follows over a trace.
public struct LiveDetection: Sendable {
    public private(set) var assessor = LiveAssessor()
    /// Monotonic nanoseconds of t = 0 (the events' "t").
    public let origin: UInt64

    public init(origin: UInt64) {
        self.origin = origin
    }

    /// What the agent knows of a cgroup: its path and the limit that applies.
    public typealias CgroupLookup = (_ id: UInt64, _ pid: Int32?, _ own: MemoryLimit) -> (path: String, limit: UInt64?)

    public mutating func events(for record: KernelRecord, lookup: CgroupLookup) -> [LeakEvent] {
        switch record {
        case .verdict(let verdict):
            let (path, limit) = lookup(verdict.cgroupID, verdict.pid, verdict.limit)
            let context = AssessmentContext(
                timeNanoseconds: time(verdict.monotonicNanoseconds), scope: verdict.pid == nil ? .cgroup : .process,
                pid: verdict.pid, comm: verdict.pid == nil ? nil : verdict.comm, cgroup: path, limit: limit,
                usage: verdict.cgroupRSS)
            return assessor.verdict(verdict, context: context).map { [$0] } ?? []
        case .process(let process) where process.kind != .sample:
            let (path, limit) = lookup(process.cgroupID, process.pid, process.limit)
            let context = AssessmentContext(
                timeNanoseconds: time(process.monotonicNanoseconds), scope: .process, pid: process.pid,
                comm: process.comm, cgroup: path, limit: limit, usage: process.memory.rss)
            let reason = process.kind == .exit ? "process_exited" : "exec"
            return assessor.processEnded(pid: process.pid, reason: reason, context: context).map { [$0] } ?? []
        case .cgroup(let cgroup) where cgroup.processCount == 0:
            let (path, limit) = lookup(cgroup.cgroupID, nil, cgroup.limit)
            let context = AssessmentContext(
                timeNanoseconds: time(cgroup.monotonicNanoseconds), scope: .cgroup, pid: nil, comm: nil, cgroup: path,
                limit: limit, usage: cgroup.memory.rss)
            return assessor.cgroupEmptied(id: cgroup.cgroupID, context: context).map { [$0] } ?? []
        default:
            return []
        }
    }

    /// Whole microseconds since the origin, as the trace writes t: replay and
    /// run agree to the digit.
    func time(_ monotonic: UInt64) -> Int64 {
        monotonic > origin ? Int64((monotonic - origin) / 1_000) * 1_000 : 0
    }
}

extension VerdictRecord {
    /// The process, for a process verdict.
    public var pid: Int32? {
        if case .process(let pid) = scope { return pid }
        return nil
    }
}
