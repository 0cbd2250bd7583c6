/// The memory cgroup a kernel record is charged to, as the Identity stage
/// resolved it: once per record, before detection, so detection, the
/// budgets, the target table and the lines all see the same facts.
public struct ResolvedCgroup: Sendable, Equatable {
    /// The cgroup's path ("" when neither the cgroup index nor /proc could
    /// tell: the process is gone, or the node has no memory cgroups).
    public var path: String
    /// Who owns it: container, pod, systemd unit (an identity with only the
    /// path when nothing more is known).
    public var identity: TargetIdentity
    /// The limit that applies: the lowest of the cgroup's own and its
    /// ancestors' (nil: none, or unknown).
    public var limit: UInt64?

    public init(path: String, identity: TargetIdentity, limit: UInt64?) {
        self.path = path
        self.identity = identity
        self.limit = limit
    }
}

/// A kernel record with its resolved cgroup.
public struct ResolvedRecord: Sendable {
    public var record: KernelRecord
    public var cgroup: ResolvedCgroup

    public init(_ record: KernelRecord, cgroup: ResolvedCgroup) {
        self.record = record
        self.cgroup = cgroup
    }
}

extension VerdictRecord {
    /// The process, for a process verdict.
    public var pid: Int32? {
        if case .process(let pid) = scope { return pid }
        return nil
    }
}

extension KernelRecord {
    /// The memory cgroup the record is charged to (0: unknown to the kernel).
    public var cgroupID: UInt64 {
        switch self {
        case .process(let r): r.cgroupID
        case .cgroup(let r): r.cgroupID
        case .verdict(let r): r.cgroupID
        }
    }

    /// The process, for a process record or a process's verdict.
    public var processID: Int32? {
        switch self {
        case .process(let r): r.pid
        case .cgroup: nil
        case .verdict(let r): r.pid
        }
    }

    /// The cgroup's own limit as the kernel read it with the record.
    public var ownLimit: MemoryLimit {
        switch self {
        case .process(let r): r.limit
        case .cgroup(let r): r.limit
        case .verdict(let r): r.limit
        }
    }
}
