import MemwardenModel

/// What the assessor knows about a target besides its verdict.
public struct AssessmentContext: Sendable {
    public var timeNanoseconds: Int64
    public var scope: LeakScope
    public var pid: Int32?
    public var comm: String?
    public var cgroup: String
    /// The cgroup's limit (memory.max, or a policy budget), bytes.
    public var limit: UInt64?
    /// What the limit is compared with now: the cgroup's resident memory, bytes.
    public var usage: UInt64
    /// The cgroup's held memory (anon + shmem + swap) at the moment `usage`
    /// was read: a forecast on the cgroup's growth leaves out the difference
    /// of the two, and both must be of one moment.
    public var cgroupHeld: UInt64?

    public init(
        timeNanoseconds: Int64, scope: LeakScope, pid: Int32?, comm: String?, cgroup: String, limit: UInt64?,
        usage: UInt64, cgroupHeld: UInt64? = nil
    ) {
        self.cgroupHeld = cgroupHeld
        self.timeNanoseconds = timeNanoseconds
        self.scope = scope
        self.pid = pid
        self.comm = comm
        self.cgroup = cgroup
        self.limit = limit
        self.usage = usage
    }
}

/// How the kernel's verdicts are read, now that the confirmation stage
/// decides leak events: the vetoes (growth that is only page cache, or anon
/// moving to swap, is not a leak), and a confidence (the mean of the three
/// scores scaled into [0.5, 1] when the kernel's entry rule holds, into
/// [0, 0.5) when it does not) that the fast path's suspicion starts with.
/// Entry: no veto, and composition with the trend or the rising floor, or
/// fast growth, or VSZ divergence.
public struct Assessor: Sendable {
    public init() {}

    public static func vetoed(_ verdict: DetectorVerdict) -> Bool {
        !verdict.reasons.isDisjoint(with: [.cacheOnly, .swapShuffle])
    }

    public static func entryHolds(_ verdict: DetectorVerdict) -> Bool {
        let f = verdict.factors
        guard !vetoed(verdict) else { return false }
        if f.contains(.fast) || f.contains(.vsz) { return true }
        return f.contains(.composition) && (f.contains(.trend) || f.contains(.rise))
    }

    public static func confidence(_ verdict: DetectorVerdict) -> Double {
        let strength = DetectorKind.allCases.reduce(0.0) { $0 + Double(min(verdict.score($1), 1000)) / 1000 } / 3
        return entryHolds(verdict) ? 0.5 + 0.5 * strength : 0.499 * strength
    }

    /// Seconds until `usage` grows to `limit` at `growth` bytes/s; nil when no
    /// limit is known or nothing grows.
    public static func secondsToLimit(limit: UInt64?, usage: UInt64, growth: Int64) -> Double? {
        guard let limit, growth > 0 else { return nil }
        guard usage < limit else { return 0 }
        return Double(limit - usage) / Double(growth)
    }
}
