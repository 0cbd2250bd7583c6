/// What the policy decides for one target (a container's or unit's memory
/// cgroup): its budget, the tiers, the response mode and how the responder
/// may act. `Policy` resolves one per target; the budget evaluator and the
/// responder only ever see this value.
public struct TargetPolicy: Sendable, Hashable {
    /// The rule that matched ("default" for the policy's defaults).
    public var rule: String
    /// nil: no budget (no budget events, no throttling).
    public var budget: Budget?
    public var tiers: BudgetTiers
    public var mode: ResponseMode
    public var throttle: ThrottleSettings
    public var cooldowns: Cooldowns
    /// nil: the agent's default detector profile.
    public var detectorProfile: DetectorConfiguration.Profile?
    /// The confirmation stage's thresholds a rule overrides (nil: the profile's).
    public var detectorOverrides = DetectorOverrides()

    public init(
        rule: String = "default", budget: Budget? = .limit, tiers: BudgetTiers = BudgetTiers(),
        mode: ResponseMode = .observe, throttle: ThrottleSettings = ThrottleSettings(),
        cooldowns: Cooldowns = Cooldowns(), detectorProfile: DetectorConfiguration.Profile? = nil
    ) {
        self.rule = rule
        self.budget = budget
        self.tiers = tiers
        self.mode = mode
        self.throttle = throttle
        self.cooldowns = cooldowns
        self.detectorProfile = detectorProfile
    }

    /// The built-in policy when no file exists: observe only, tiers of the
    /// cgroup's own limit.
    public static let builtIn = TargetPolicy()
}

/// A rule's `detectors` settings beyond the profile: the confirmation stage's
/// patience for the targets it matches.
public struct DetectorOverrides: Sendable, Hashable {
    /// Minimum age before a non-urgent verdict (`grace`).
    public var grace: Duration?
    /// How long growth must last before a non-urgent verdict (`patience`).
    public var patience: Duration?
    /// How near the limit must be for a non-urgent verdict (`horizon`).
    public var horizon: Duration?

    public init(grace: Duration? = nil, patience: Duration? = nil, horizon: Duration? = nil) {
        self.grace = grace
        self.patience = patience
        self.horizon = horizon
    }
}

public enum Budget: Sendable, Hashable {
    case bytes(UInt64)
    /// The cgroup's own (effective) limit: memory.max, or the v1 limit.
    case limit
}

/// Tier thresholds as shares of the budget, strictly increasing, in (0, 1].
public struct BudgetTiers: Sendable, Hashable {
    public var warning: Double
    public var high: Double
    public var critical: Double
    public var emergency: Double
    /// A tier is left only when usage falls this share of the budget below it.
    public var hysteresis: Double

    public init(
        warning: Double = 0.70, high: Double = 0.80, critical: Double = 0.90, emergency: Double = 0.95,
        hysteresis: Double = 0.05
    ) {
        self.warning = warning
        self.high = high
        self.critical = critical
        self.emergency = emergency
        self.hysteresis = hysteresis
    }
}

/// The budget tiers in rising order.
public enum BudgetTier: String, Sendable, Hashable, CaseIterable, Comparable {
    case warning
    case high
    case critical
    case emergency

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// How far up the ladder the responder may go for a target.
public enum ResponseMode: String, Sendable, Hashable, CaseIterable {
    /// Events only.
    case observe
    /// Events, and pod annotations (Kubernetes).
    case annotate
    /// Events, annotations, and memory.high throttling (cgroup v2).
    case throttle
}

/// The memory.high controller (after Meta's senpai; see REFERENCES.md).
public struct ThrottleSettings: Sendable, Hashable {
    /// Throttling starts once a leak is suspected and usage reached this tier.
    public var fromTier: BudgetTier
    /// Never below this many bytes (besides the container's memory request and
    /// the cgroup's non-reclaimable memory).
    public var minimumBytes: UInt64
    /// PSI "some" stall time per interval above which the controller backs off.
    public var pressureTarget: Duration
    /// Seconds between control steps.
    public var interval: Duration
    /// Largest step down, as a share of the current memory.high.
    public var maxProbe: Double
    /// Largest step up when pressure is over target, as a share.
    public var maxBackoff: Double
    public var coeffProbe: Double
    public var coeffBackoff: Double
    /// Only a confirmed leak is throttled: its confidence at least this...
    public var minConfidence: Double
    /// ...and suspected for at least this long.
    public var minSuspected: Duration
    /// Bytes per second a growth cap lets memory.high rise by: the pace a
    /// leak of non-reclaimable memory is slowed to (`GrowthCapController`).
    public var maxGrowthRate: UInt64

    public init(
        fromTier: BudgetTier = .high, minimumBytes: UInt64 = 100 << 20, pressureTarget: Duration = .milliseconds(10),
        interval: Duration = .seconds(6), maxProbe: Double = 0.01, maxBackoff: Double = 1.0, coeffProbe: Double = 10,
        coeffBackoff: Double = 20, minConfidence: Double = 0.8, minSuspected: Duration = .seconds(120),
        maxGrowthRate: UInt64 = 128 << 10
    ) {
        self.maxGrowthRate = maxGrowthRate
        self.minConfidence = minConfidence
        self.minSuspected = minSuspected
        self.fromTier = fromTier
        self.minimumBytes = minimumBytes
        self.pressureTarget = pressureTarget
        self.interval = interval
        self.maxProbe = maxProbe
        self.maxBackoff = maxBackoff
        self.coeffProbe = coeffProbe
        self.coeffBackoff = coeffBackoff
    }
}

public struct Cooldowns: Sendable, Hashable {
    /// The same budget tier is not announced again for a target within this time.
    public var event: Duration
    /// Between two responder actions on one target (no flapping).
    public var response: Duration

    public init(event: Duration = .seconds(300), response: Duration = .seconds(15)) {
        self.event = event
        self.response = response
    }
}
