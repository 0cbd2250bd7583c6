public import CMemwarden

/// What the kernel program reports about one process.
public struct ProcessRecord: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// RSS moved by a coalescing step, or a heartbeat passed.
        case sample
        /// The process exec'd a new program: new name, new baseline.
        case exec
        /// The whole thread group exited; these are its last counters.
        case exit
    }

    public var kind: Kind
    public var pid: Int32
    /// CLOCK_MONOTONIC nanoseconds at which the kernel wrote the record.
    public var monotonicNanoseconds: UInt64
    /// The memory controller's cgroup id (the cgroup directory's inode number).
    public var cgroupID: UInt64
    public var memory: MemoryCounters
    public var virtualSize: UInt64
    public var limit: MemoryLimit
    public var comm: String

    public init(
        kind: Kind, pid: Int32, monotonicNanoseconds: UInt64, cgroupID: UInt64, memory: MemoryCounters,
        virtualSize: UInt64, limit: MemoryLimit, comm: String
    ) {
        self.kind = kind
        self.pid = pid
        self.monotonicNanoseconds = monotonicNanoseconds
        self.cgroupID = cgroupID
        self.memory = memory
        self.virtualSize = virtualSize
        self.limit = limit
        self.comm = comm
    }
}

/// What the kernel program reports about one memory cgroup: the sum of the
/// last sampled counters of the processes it tracks there, and the cgroup's own
/// page counter (which also holds page cache and kernel memory charged to it).
public struct CgroupRecord: Sendable, Hashable {
    public var cgroupID: UInt64
    public var monotonicNanoseconds: UInt64
    public var processCount: Int
    public var memory: MemoryCounters
    /// memory.current (v2) / memory.usage_in_bytes (v1), when the kernel could read it.
    public var usage: UInt64?
    public var limit: MemoryLimit

    public init(
        cgroupID: UInt64, monotonicNanoseconds: UInt64, processCount: Int, memory: MemoryCounters,
        usage: UInt64?, limit: MemoryLimit
    ) {
        self.cgroupID = cgroupID
        self.monotonicNanoseconds = monotonicNanoseconds
        self.processCount = processCount
        self.memory = memory
        self.usage = usage
        self.limit = limit
    }
}

public enum KernelRecord: Sendable {
    case process(ProcessRecord)
    case cgroup(CgroupRecord)
    case verdict(VerdictRecord)
}

/// A change of a process's or a cgroup's detector verdict, as the kernel
/// computed it on the sample it follows.
public struct VerdictRecord: Sendable {
    public enum Scope: Sendable, Hashable {
        case process(pid: Int32)
        case cgroup
    }

    public var scope: Scope
    /// The sample's time: the detectors saw this in whole milliseconds.
    public var monotonicNanoseconds: UInt64
    public var cgroupID: UInt64
    /// The cgroup's aggregate RSS after the sample (for a process: its cgroup's).
    public var cgroupRSS: UInt64
    public var limit: MemoryLimit
    /// The process's name (process scope).
    public var comm: String
    /// `struct mw_det_verdict`, as ebpf/detectors.h defines it.
    public var raw: mw_det_verdict

    public init(
        scope: Scope, monotonicNanoseconds: UInt64, cgroupID: UInt64, cgroupRSS: UInt64, limit: MemoryLimit,
        comm: String, raw: mw_det_verdict
    ) {
        self.scope = scope
        self.monotonicNanoseconds = monotonicNanoseconds
        self.cgroupID = cgroupID
        self.cgroupRSS = cgroupRSS
        self.limit = limit
        self.comm = comm
        self.raw = raw
    }
}

extension KernelRecord {
    /// When the kernel wrote the record (CLOCK_MONOTONIC ns).
    public var monotonicNanoseconds: UInt64 {
        get {
            switch self {
            case .process(let r): r.monotonicNanoseconds
            case .cgroup(let r): r.monotonicNanoseconds
            case .verdict(let r): r.monotonicNanoseconds
            }
        }
        set {
            switch self {
            case .process(var r): r.monotonicNanoseconds = newValue; self = .process(r)
            case .cgroup(var r): r.monotonicNanoseconds = newValue; self = .cgroup(r)
            case .verdict(var r): r.monotonicNanoseconds = newValue; self = .verdict(r)
            }
        }
    }
}
