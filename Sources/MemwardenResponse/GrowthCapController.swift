import MemwardenModel

/// The memory.high of a cgroup whose growth the kernel cannot reclaim:
/// anonymous memory on a node without swap, the Kubernetes default. There the
/// PSI controller has no room to work in: everything reclaimable is gone, and
/// memory.high under the non-reclaimable memory would only stall the
/// container, never shrink it. The one reversible lever left is the pace of
/// allocation: memory.high a page above what cannot be reclaimed, raised by
/// `rate` bytes a second. Past memory.high the kernel reclaims and then
/// throttles the allocating tasks, so the leak runs at about that rate and the
/// container reaches memory.max later (or never, if the leak stops) instead of
/// being OOM-killed at the leak's own pace.
///
/// The allowance is a token bucket that does not fill while idle: it rises
/// only while the cgroup presses against it, so a container that paused
/// cannot spend minutes of saved-up allowance in one burst. It never falls:
/// lowering it under usage would reclaim nothing here. Pure: no files, no
/// clock, so tests step it.
public struct GrowthCapController: Sendable, Hashable {
    public enum Step: String, Sendable, Hashable {
        /// Nothing this tick (between raises, at the ceiling, or not pressing).
        case hold
        /// memory.high up by the rate times the time since the last raise.
        case raise
        /// The cap does nothing any more, the original can go back: the
        /// cgroup stayed far below it for the release window, or, once the
        /// suspicion cleared, did not press on it for that long.
        case release
    }

    public struct Decision: Sendable, Hashable {
        public var step: Step
        /// The next memory.high, page-aligned, never below the current one
        /// nor above the ceiling.
        public var value: UInt64
    }

    /// Bytes per second the allowance rises by.
    public let rate: UInt64
    public let pageSize: UInt64
    /// Nanoseconds between raises: the PSI controller's interval, so both
    /// modes write (and save the state file) at the same pace.
    public let interval: UInt64
    /// memory.high when the cap started: what it has let the cgroup grow is
    /// the value in force less this.
    public let start: UInt64
    private var lastRaise: UInt64
    private var lastHighEvents: UInt64?
    /// The cgroup pressed against the cap at some tick since the last raise.
    private var pressed = false
    /// The last tick it pressed (or the start).
    private var lastPressed: UInt64
    /// Since when usage has stayed far below the cap (nil: it has not).
    private var quietSince: UInt64?

    /// The release window: ten raises, at least a minute.
    public var releaseAfter: UInt64 { max(10 * interval, 60_000_000_000) }

    /// "Far below": more allowance unused than the window would grant. A
    /// leak merely slower than the rate is at most two raises below the cap
    /// after a raise, so it never looks this idle.
    public var releaseMargin: UInt64 { Self.grant(rate: rate, nanoseconds: releaseAfter) }

    /// Where the kernel's count of breaches is unknown: within this of the
    /// cap counts as pressing on it (the allowance of one raise).
    public var slack: UInt64 { max(pageSize, Self.grant(rate: rate, nanoseconds: interval)) }

    /// `start`: the first memory.high (`startValue`); `now`: monotonic
    /// nanoseconds of that write; `highEvents`: memory.events' `high` then
    /// (nil: unknown, and then unknown at every tick).
    public init(settings: ThrottleSettings, pageSize: UInt64, start: UInt64, now: UInt64, highEvents: UInt64?) {
        self.rate = settings.maxGrowthRate
        self.pageSize = max(1, pageSize)
        self.interval = max(1, MemoryHighController.nanoseconds(settings.interval))
        self.start = start
        self.lastRaise = now
        self.lastPressed = now
        self.lastHighEvents = highEvents
    }

    /// The first memory.high of a cap: a page above the non-reclaimable
    /// memory (rounded up to a page), so the next allocation that cannot be
    /// met by reclaim meets the cap. nil when the ceiling (memory.max, a
    /// lower original memory.high) leaves no room above it: the kernel
    /// already holds the cgroup there, a cap would add nothing.
    public static func startValue(nonReclaimable: UInt64, ceiling: UInt64?, pageSize: UInt64) -> UInt64? {
        let page = max(1, pageSize)
        let (value, overflow) = MemoryHighController.alignUp(nonReclaimable, page).addingReportingOverflow(page)
        guard !overflow else { return nil }
        if let ceiling, value > ceiling / page * page { return nil }
        return value
    }

    /// One tick: memory.current, memory.events' `high` count (nil where the
    /// file is missing), the memory.high in force and the ceiling.
    /// `suspected`: a leak is still suspected in the cgroup. The detectors see
    /// the capped rate, which is the cap's own doing, so a suspicion that
    /// cleared under a cap is not taken at its word: the cap goes only once
    /// the cgroup stopped pressing on it for the release window.
    public mutating func observe(
        now: UInt64, usage: UInt64, highEvents: UInt64?, current: UInt64, ceiling: UInt64?, suspected: Bool = true
    ) -> Decision {
        // memory.events' `high` counts the charges the kernel met over
        // memory.high: the cap biting, and only while something allocates. Usage
        // alone cannot tell: a cgroup the cap held may sit at (or, with nothing
        // to reclaim, a little over) it long after it stopped allocating. So
        // usage near the cap counts only where the count is unknown (a dry
        // run, where the cap was never written, or no memory.events file).
        // A counter that went back (a recreated group) says nothing.
        var highRose = false
        if let highEvents {
            if let lastHighEvents, highEvents > lastHighEvents { highRose = true }
            lastHighEvents = highEvents
        }
        let (near, nearOverflow) = usage.addingReportingOverflow(slack)
        if highRose || (highEvents == nil && (nearOverflow || near >= current)) {
            pressed = true
            lastPressed = now
        }
        if !suspected && now &- lastPressed >= releaseAfter { return Decision(step: .release, value: current) }

        let (far, farOverflow) = usage.addingReportingOverflow(releaseMargin)
        if !highRose && !farOverflow && far < current {
            if let quietSince {
                if now &- quietSince >= releaseAfter { return Decision(step: .release, value: current) }
            } else {
                quietSince = now
            }
        } else {
            quietSince = nil
        }

        let elapsed = now &- lastRaise
        guard elapsed >= interval else { return Decision(step: .hold, value: current) }
        guard pressed else {
            // no allowance is banked while the cgroup does not use it
            lastRaise = now
            return Decision(step: .hold, value: current)
        }
        let page = pageSize
        let (sum, overflow) = current.addingReportingOverflow(Self.grant(rate: rate, nanoseconds: elapsed))
        var next = overflow ? UInt64.max / page * page : sum / page * page
        if let ceiling { next = min(next, ceiling / page * page) }
        // less than a page granted so far (a tiny rate), or at the ceiling:
        // the time since the last raise keeps counting
        guard next > current else { return Decision(step: .hold, value: current) }
        lastRaise = now
        pressed = false
        return Decision(step: .raise, value: next)
    }

    /// rate × time, in bytes, saturating.
    static func grant(rate: UInt64, nanoseconds: UInt64) -> UInt64 {
        let (high, low) = rate.multipliedFullWidth(by: nanoseconds)
        guard high < 1_000_000_000 else { return .max }
        return UInt64(1_000_000_000).dividingFullWidth((high, low)).quotient
    }
}
