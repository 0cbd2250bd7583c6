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

public enum KernelRecord: Sendable, Hashable {
    case process(ProcessRecord)
    case cgroup(CgroupRecord)
}
