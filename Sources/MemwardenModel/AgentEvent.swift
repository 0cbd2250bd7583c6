/// One event of the agent's voice: what `run` and `replay` print, what the
/// sinks deliver and what /api/v1/events lists. A value: type, time, the
/// target it is about, and the details of its kind. docs/events.md and
/// schema/event.schema.json describe the JSON form (`jsonLine()`).
public struct AgentEvent: Sendable, Hashable {
    public enum EventType: String, Sendable, Hashable, CaseIterable {
        case leakSuspected = "leak.suspected"
        case leakCleared = "leak.cleared"
        case leakUpdated = "leak.updated"
        case budgetWarning = "budget.warning"
        case budgetHigh = "budget.high"
        case budgetCritical = "budget.critical"
        case budgetEmergency = "budget.emergency"
        case budgetRecovered = "budget.recovered"
        case responseThrottle = "response.throttle"
        case responseRestore = "response.restore"
        case responseSkipped = "response.skipped"
        case responseAnnotate = "response.annotate"
        case policyReloaded = "policy.reloaded"
        case policyRejected = "policy.rejected"
        case agentStarted = "agent.started"
        case agentStopping = "agent.stopping"
        case agentEventsLost = "agent.events_lost"

        public static func budget(_ tier: BudgetTier) -> Self {
            switch tier {
            case .warning: .budgetWarning
            case .high: .budgetHigh
            case .critical: .budgetCritical
            case .emergency: .budgetEmergency
            }
        }
    }

    public enum Severity: String, Sendable, Hashable, CaseIterable, Comparable {
        case info
        case warning
        case critical

        public static func < (a: Self, b: Self) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    public var type: EventType
    public var severity: Severity
    /// Wall-clock time, nanoseconds since the Unix epoch.
    public var epochNanoseconds: UInt64
    /// Seconds on the target's clock (the trace's t in replay, time since the
    /// agent's start live); nil for agent events.
    public var t: Double?
    /// The node (NODE_NAME, else the host name).
    public var node: String?
    public var target: EventTarget?
    public var details: Details

    public enum Details: Sendable, Hashable {
        case leak(LeakDetails)
        case budget(BudgetDetails)
        case response(ResponseDetails)
        case policy(PolicyDetails)
        case agent(AgentDetails)
    }

    public init(
        type: EventType, severity: Severity, epochNanoseconds: UInt64, t: Double? = nil, node: String? = nil,
        target: EventTarget? = nil, details: Details
    ) {
        self.type = type
        self.severity = severity
        self.epochNanoseconds = epochNanoseconds
        self.t = t
        self.node = node
        self.target = target
        self.details = details
    }
}

/// What an event is about: a process or a memory cgroup, and who owns it.
public struct EventTarget: Sendable, Hashable {
    public var scope: LeakScope
    public var pid: Int32?
    public var comm: String?
    public var identity: TargetIdentity

    public init(scope: LeakScope, pid: Int32? = nil, comm: String? = nil, identity: TargetIdentity) {
        self.scope = scope
        self.pid = pid
        self.comm = comm
        self.identity = identity
    }

    /// A stable key for one target (process targets by pid and cgroup).
    public var key: String {
        if let pid { return "process:\(pid):\(identity.cgroup)" }
        return "cgroup:\(identity.cgroup)"
    }
}

public struct LeakDetails: Sendable, Hashable {
    public var detectors: [String]
    public var confidence: Double
    public var growthBytesPerSecond: Int64
    public var secondsToLimit: Double?
    public var limit: UInt64?
    public var reasons: [String]
    public var suspectedSeconds: Double?
    /// `seconds_to_limit_low` ... `seconds_to_limit_high`, and the growth model.
    public var forecastInterval: ClosedRange<Double>?
    public var forecastModel: String?
    /// Set while the kernel's samples were being lost (a full ring buffer, a
    /// pipeline behind): the share lost over the last stats interval. The
    /// forecast rests on incomplete data then (`forecast_confidence: low`).
    public var samplesLostRatio: Double?

    public init(
        detectors: [String], confidence: Double, growthBytesPerSecond: Int64, secondsToLimit: Double?, limit: UInt64?,
        reasons: [String], suspectedSeconds: Double?, forecastInterval: ClosedRange<Double>? = nil,
        forecastModel: String? = nil
    ) {
        self.forecastInterval = forecastInterval
        self.forecastModel = forecastModel
        self.detectors = detectors
        self.confidence = confidence
        self.growthBytesPerSecond = growthBytesPerSecond
        self.secondsToLimit = secondsToLimit
        self.limit = limit
        self.reasons = reasons
        self.suspectedSeconds = suspectedSeconds
    }
}

public struct BudgetDetails: Sendable, Hashable {
    /// The tier reached (budget.recovered: the tier left).
    public var tier: BudgetTier
    public var rule: String
    public var budgetBytes: UInt64
    public var usageBytes: UInt64
    /// usage / budget.
    public var share: Double
    public var growthBytesPerSecond: Int64?
    /// Seconds until usage reaches the budget at the current growth.
    public var secondsToBudget: Double?

    public init(
        tier: BudgetTier, rule: String, budgetBytes: UInt64, usageBytes: UInt64, share: Double,
        growthBytesPerSecond: Int64?, secondsToBudget: Double?
    ) {
        self.tier = tier
        self.rule = rule
        self.budgetBytes = budgetBytes
        self.usageBytes = usageBytes
        self.share = share
        self.growthBytesPerSecond = growthBytesPerSecond
        self.secondsToBudget = secondsToBudget
    }
}

/// A leak verdict as the responder weighs it (from leak.suspected / leak.updated).
public struct LeakVerdict: Sendable, Hashable {
    public var confidence: Double
    /// The target is younger than its warm-up grace (reason `warmup_grace`): never throttled.
    public var inGrace: Bool

    public init(confidence: Double, inGrace: Bool = false) {
        self.confidence = confidence
        self.inGrace = inGrace
    }

    public init?(_ details: LeakDetails) {
        self.init(confidence: details.confidence, inGrace: details.reasons.contains("warmup_grace"))
    }
}

/// The suspicion a throttle acted on: which target, how sure, since when.
public struct ResponseVerdict: Sendable, Hashable {
    /// The suspicion's target key (`process:PID:CGROUP` or `cgroup:CGROUP`).
    public var target: String
    public var confidence: Double
    /// Wall clock, nanoseconds since the epoch.
    public var suspectedSince: UInt64

    public init(target: String, confidence: Double, suspectedSince: UInt64) {
        self.target = target
        self.confidence = confidence
        self.suspectedSince = suspectedSince
    }
}

/// A growth cap as an event tells it: how fast it lets the cgroup grow, and
/// how much it has let it grow so far.
public struct GrowthCapDetails: Sendable, Hashable {
    public var rateBytesPerSecond: UInt64
    /// How far memory.high has risen since the cap started.
    public var allowanceBytes: UInt64
    /// memory.current when the step was decided (nil: not read, as in a
    /// restore after a restart).
    public var usageBytes: UInt64?
    /// Where raises stop: memory.max, or a lower original memory.high (nil: none).
    public var ceilingBytes: UInt64?

    /// The forecast under the cap: seconds until usage reaches the ceiling when it grows at
    /// the cap's rate (nil: usage or ceiling unknown). A leak the cap holds grows at about
    /// that rate, so this replaces the unthrottled forecast of its leak events.
    public var secondsToCeiling: Double? {
        guard let usageBytes, let ceilingBytes, rateBytesPerSecond > 0 else { return nil }
        return Double(ceilingBytes > usageBytes ? ceilingBytes - usageBytes : 0) / Double(rateBytesPerSecond)
    }

    public init(rateBytesPerSecond: UInt64, allowanceBytes: UInt64, usageBytes: UInt64? = nil, ceilingBytes: UInt64? = nil) {
        self.rateBytesPerSecond = rateBytesPerSecond
        self.allowanceBytes = allowanceBytes
        self.usageBytes = usageBytes
        self.ceilingBytes = ceilingBytes
    }
}

public struct ResponseDetails: Sendable, Hashable {
    public var mode: ResponseMode
    public var rule: String
    /// Printed what it would do, did nothing (`--dry-run`).
    public var dryRun: Bool
    /// memory.high before and after (nil: "max").
    public var memoryHighBefore: UInt64?
    public var memoryHighAfter: UInt64?
    public var floorBytes: UInt64?
    /// PSI memory "some" stall over the last interval, microseconds.
    public var pressureMicroseconds: UInt64?
    /// Why (response.skipped, response.restore): a reason code such as
    /// "cgroup_v1", "external_write", "leak_cleared", "agent_stopping".
    public var reason: String?
    /// Annotations written (response.annotate).
    public var annotations: [String: String]?
    /// response.throttle: the confirmed leak suspicion it acts on.
    public var verdict: ResponseVerdict?
    /// response.throttle and response.restore of a growth cap (memory.high
    /// raised at a fixed rate over memory that cannot be reclaimed).
    public var growthCap: GrowthCapDetails?

    public init(
        mode: ResponseMode, rule: String, dryRun: Bool = false, memoryHighBefore: UInt64? = nil,
        memoryHighAfter: UInt64? = nil, floorBytes: UInt64? = nil, pressureMicroseconds: UInt64? = nil,
        reason: String? = nil, annotations: [String: String]? = nil, verdict: ResponseVerdict? = nil,
        growthCap: GrowthCapDetails? = nil
    ) {
        self.verdict = verdict
        self.growthCap = growthCap
        self.mode = mode
        self.rule = rule
        self.dryRun = dryRun
        self.memoryHighBefore = memoryHighBefore
        self.memoryHighAfter = memoryHighAfter
        self.floorBytes = floorBytes
        self.pressureMicroseconds = pressureMicroseconds
        self.reason = reason
        self.annotations = annotations
    }
}

public struct PolicyDetails: Sendable, Hashable {
    public var file: String
    /// policy.rejected: each problem as `file:line:column: path: message`.
    public var problems: [String]
    public var rules: Int?

    public init(file: String, problems: [String] = [], rules: Int? = nil) {
        self.file = file
        self.problems = problems
        self.rules = rules
    }
}

public struct AgentDetails: Sendable, Hashable {
    public var version: String?
    public var message: String?
    /// agent.events_lost: what was lost since the last such event, by where
    /// ("ring_buffer", "stdout", "sink.webhook", …).
    public var lost: [String: UInt64]

    public init(version: String? = nil, message: String? = nil, lost: [String: UInt64] = [:]) {
        self.version = version
        self.message = message
        self.lost = lost
    }
}
