import MemwardenModel

/// The memory.high control loop of one throttled cgroup, after Meta's
/// senpai: every tick adds the PSI "some" stall time since the last tick to
/// an integral. Over the target, it backs off at once (memory.high up, the
/// more the further over); otherwise, once per interval, it probes (memory.high
/// down, the less the closer the integral came to the target). The integral
/// restarts after each adjustment. Pure: no files, no clock, so tests step it.
public struct MemoryHighController: Sendable, Hashable {
    public enum Step: String, Sendable, Hashable {
        /// Nothing this tick (waiting for the interval, or at a bound).
        case hold
        /// Tighten: pressure stayed under the target for an interval.
        case probe
        /// Loosen: pressure went over the target.
        case backoff
    }

    public struct Decision: Sendable, Hashable {
        public var step: Step
        /// The next memory.high, page-aligned, within [floor, ceiling].
        public var value: UInt64
        /// The share of the current value added (backoff) or taken (probe).
        public var adjustment: Double
        /// The stall time the decision was made on, microseconds.
        public var pressureMicroseconds: UInt64
    }

    public let settings: ThrottleSettings
    public let pageSize: UInt64
    /// Stall time since the last adjustment, microseconds.
    public private(set) var integral: UInt64 = 0
    private var lastTotal: UInt64?
    private var lastAdjustment: UInt64

    /// `now`: monotonic nanoseconds of the first write; the first probe comes
    /// one interval later. `pressureTotal`: memory.pressure's "some total" then.
    public init(settings: ThrottleSettings, pageSize: UInt64, now: UInt64, pressureTotal: UInt64?) {
        self.settings = settings
        self.pageSize = max(1, pageSize)
        self.lastAdjustment = now
        self.lastTotal = pressureTotal
    }

    /// One tick: the cgroup's "some total" now, its memory.high now, and the
    /// bounds (floor: never below; ceiling: never above, nil for none).
    public mutating func observe(
        pressureTotal: UInt64, now: UInt64, current: UInt64, floor: UInt64, ceiling: UInt64?
    ) -> Decision {
        // a counter that went backwards (a recreated group) contributes nothing
        if let lastTotal, pressureTotal >= lastTotal { integral += pressureTotal - lastTotal }
        lastTotal = pressureTotal
        let target = Self.microseconds(settings.pressureTarget)
        let pressure = integral
        if integral > target {
            let share = Self.backoffShare(integral: integral, settings: settings)
            integral = 0
            lastAdjustment = now
            let raised = Double(current) * (1 + share)
            let value = Self.clamp(Self.bytes(raised), floor: floor, ceiling: ceiling, pageSize: pageSize)
            return Decision(step: .backoff, value: value, adjustment: share, pressureMicroseconds: pressure)
        }
        if now &- lastAdjustment >= Self.nanoseconds(settings.interval) {
            let share = Self.probeShare(integral: integral, settings: settings)
            integral = 0
            lastAdjustment = now
            let lowered = Double(current) * (1 - share)
            let value = Self.clamp(Self.bytes(lowered), floor: floor, ceiling: ceiling, pageSize: pageSize)
            return Decision(step: .probe, value: value, adjustment: share, pressureMicroseconds: pressure)
        }
        return Decision(step: .hold, value: current, adjustment: 0, pressureMicroseconds: pressure)
    }

    /// min((integral / target / coeff_backoff)² × max_backoff, max_backoff).
    public static func backoffShare(integral: UInt64, settings: ThrottleSettings) -> Double {
        let target = Double(max(1, microseconds(settings.pressureTarget)))
        let ratio = Double(integral) / target / settings.coeffBackoff
        return min(ratio * ratio * settings.maxBackoff, settings.maxBackoff)
    }

    /// min((target / integral / coeff_probe)² × max_probe, max_probe); an
    /// integral of 0 counts as 1 µs (the largest step).
    public static func probeShare(integral: UInt64, settings: ThrottleSettings) -> Double {
        let target = Double(microseconds(settings.pressureTarget))
        let ratio = target / Double(max(1, integral)) / settings.coeffProbe
        return min(ratio * ratio * settings.maxProbe, settings.maxProbe)
    }

    /// Page-aligned (down), then held within [floor rounded up to a page, ceiling].
    public static func clamp(_ value: UInt64, floor: UInt64, ceiling: UInt64?, pageSize: UInt64) -> UInt64 {
        let page = max(1, pageSize)
        let low = alignUp(floor, page)
        var result = max(value / page * page, low)
        if let ceiling { result = min(result, ceiling / page * page) }
        return result
    }

    static func alignUp(_ value: UInt64, _ page: UInt64) -> UInt64 {
        let (sum, overflow) = value.addingReportingOverflow(page - 1)
        return overflow ? value / page * page : sum / page * page
    }

    static func bytes(_ value: Double) -> UInt64 {
        value >= Double(UInt64.max) ? .max : UInt64(max(0, value))
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000_000
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000
    }
}
