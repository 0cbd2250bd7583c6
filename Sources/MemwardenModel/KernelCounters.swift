/// The kernel program's counters, summed over CPUs, plus what userspace lost.
public struct KernelCounters: Sendable, Hashable {
    /// rss_stat events the program ran on.
    public var events: UInt64 = 0
    /// Events absorbed by coalescing (no record).
    public var coalesced: UInt64 = 0
    public var processSamples: UInt64 = 0
    public var cgroupSamples: UInt64 = 0
    /// Records lost because the ring buffer was full.
    public var ringBufferDrops: UInt64 = 0
    /// curr=0 events whose mm had no known owner (dropped, never charged to the current task).
    public var unattributed: UInt64 = 0
    public var execs: UInt64 = 0
    public var exits: UInt64 = 0
    /// Map inserts that failed outright.
    public var mapFull: UInt64 = 0
    /// Detector verdict changes the kernel reported.
    public var verdicts: UInt64 = 0
    /// States the LRU maps dropped to make room (creates - deletes - live entries).
    public var processEvictions: UInt64 = 0
    public var cgroupEvictions: UInt64 = 0
    public var processesTracked: UInt64 = 0
    public var cgroupsTracked: UInt64 = 0
    /// Records decoded in userspace but dropped because the pipeline was behind.
    public var userspaceDrops: UInt64 = 0
    /// Event lines not written because nothing read stdout for too long.
    public var stdoutDrops: UInt64 = 0

    public init() {}
}
