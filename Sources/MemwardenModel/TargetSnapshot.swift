/// What the agent knows about one tracked target right now: the row of
/// /api/v1/targets and the labelled series of /metrics. The pipeline upserts
/// one per target as samples and verdicts arrive (TargetTable.upsert,
/// AgentMetrics.update) and removes it when the target goes.
public struct TargetSnapshot: Sendable, Hashable {
    public enum Verdict: String, Sendable, Hashable, CaseIterable {
        /// Tracked, nothing suspicious.
        case ok
        /// The detectors suspect a leak (between leak.suspected and leak.cleared).
        case leakSuspected = "leak_suspected"
    }

    public var scope: LeakScope
    public var pid: Int32?
    public var comm: String?
    public var identity: TargetIdentity
    /// Resident memory (process) or the cgroup's usage, bytes.
    public var usageBytes: UInt64
    /// The effective memory limit (memory.max or an ancestor's), bytes.
    public var limitBytes: UInt64?
    /// The policy's budget for the target, bytes, and the rule that set it.
    public var budgetBytes: UInt64?
    public var rule: String?
    /// The highest budget tier reached (nil: below warning).
    public var tier: BudgetTier?
    public var verdict: Verdict
    /// 0...1 while a leak is suspected, else 0.
    public var confidence: Double
    /// Bytes per second, from the detectors' trend (negative: shrinking).
    public var growthBytesPerSecond: Int64
    /// Seconds until the limit / the budget at the current growth.
    public var secondsToLimit: Double?
    public var secondsToBudget: Double?
    /// memory.high is held below its original value by the responder.
    public var throttled: Bool
    /// The memory.high the responder wrote, bytes.
    public var memoryHighBytes: UInt64?
    /// While the throttle is a growth cap: the bytes per second it lets
    /// memory.high rise by.
    public var growthCapBytesPerSecond: UInt64?
    /// Wall-clock nanoseconds of the last update, and of the leak.suspected
    /// that started the current suspicion.
    public var updatedAt: UInt64
    public var suspectedSince: UInt64?

    public init(
        scope: LeakScope, pid: Int32? = nil, comm: String? = nil, identity: TargetIdentity, usageBytes: UInt64,
        limitBytes: UInt64? = nil, budgetBytes: UInt64? = nil, rule: String? = nil, tier: BudgetTier? = nil,
        verdict: Verdict = .ok, confidence: Double = 0, growthBytesPerSecond: Int64 = 0, secondsToLimit: Double? = nil,
        secondsToBudget: Double? = nil, throttled: Bool = false, memoryHighBytes: UInt64? = nil,
        growthCapBytesPerSecond: UInt64? = nil, updatedAt: UInt64 = realtimeNanoseconds(), suspectedSince: UInt64? = nil
    ) {
        self.growthCapBytesPerSecond = growthCapBytesPerSecond
        self.scope = scope
        self.pid = pid
        self.comm = comm
        self.identity = identity
        self.usageBytes = usageBytes
        self.limitBytes = limitBytes
        self.budgetBytes = budgetBytes
        self.rule = rule
        self.tier = tier
        self.verdict = verdict
        self.confidence = confidence
        self.growthBytesPerSecond = growthBytesPerSecond
        self.secondsToLimit = secondsToLimit
        self.secondsToBudget = secondsToBudget
        self.throttled = throttled
        self.memoryHighBytes = memoryHighBytes
        self.updatedAt = updatedAt
        self.suspectedSince = suspectedSince
    }

    /// The same key as the events' target (EventTarget.key): process targets
    /// by pid and cgroup, cgroup targets by path.
    public var key: String {
        EventTarget(scope: scope, pid: scope == .process ? pid : nil, comm: comm, identity: identity).key
    }

    /// usage / budget, when there is a budget.
    public var budgetShare: Double? {
        guard let budgetBytes, budgetBytes > 0 else { return nil }
        return Double(usageBytes) / Double(budgetBytes)
    }

    /// The sooner of the two forecasts.
    public var forecastSeconds: Double? {
        switch (secondsToLimit, secondsToBudget) {
        case (let a?, let b?): min(a, b)
        case (let a?, nil): a
        case (nil, let b?): b
        case (nil, nil): nil
        }
    }
}
