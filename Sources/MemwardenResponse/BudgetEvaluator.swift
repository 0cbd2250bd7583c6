import MemwardenModel

/// When an event happens, on both clocks: monotonic nanoseconds for
/// cooldowns and intervals, wall-clock nanoseconds for the event's time.
public struct ClockReading: Sendable, Hashable {
    public var monotonicNanoseconds: UInt64
    public var epochNanoseconds: UInt64
    /// The event's `t` (seconds since the agent's start), when known.
    public var t: Double?

    public init(monotonicNanoseconds: UInt64, epochNanoseconds: UInt64, t: Double? = nil) {
        self.monotonicNanoseconds = monotonicNanoseconds
        self.epochNanoseconds = epochNanoseconds
        self.t = t
    }

    public static func system(start: UInt64? = nil) -> ClockReading {
        let now = MemwardenModel.monotonicNanoseconds()
        return ClockReading(
            monotonicNanoseconds: now, epochNanoseconds: realtimeNanoseconds(),
            t: start.map { Double(now &- $0) / 1e9 })
    }
}

/// Turns usage samples into budget events: `budget.<tier>` when a target's
/// usage reaches a tier of its budget, `budget.recovered` when it falls below
/// the warning tier less the hysteresis. A tier is left only hysteresis
/// below its threshold, so usage hovering at a threshold announces it once;
/// and the same tier is not announced again for a target within the event
/// cooldown. A value: no clock, no files; the caller feeds samples.
public struct BudgetEvaluator: Sendable {
    struct State: Sendable {
        /// The tier held now (nil: under warning).
        var tier: BudgetTier?
        /// Whether this episode (warning and above) announced anything, so a
        /// recovery is said only after something was.
        var announced = false
        var lastAnnounced: [BudgetTier: UInt64] = [:]
    }

    private var states: [String: State] = [:]
    public var node: String?

    public init(node: String? = nil) {
        self.node = node
    }

    /// The budget in bytes for a target: the policy's bytes, or the cgroup's
    /// own limit when the policy says `limit` (nil when it has none).
    public static func resolve(_ budget: Budget?, limit: UInt64?) -> UInt64? {
        switch budget {
        case .bytes(let value): value > 0 ? value : nil
        case .limit: limit.flatMap { $0 > 0 ? $0 : nil }
        case nil: nil
        }
    }

    /// The tier a target holds now, if any.
    public func tier(of key: String) -> BudgetTier? { states[key]?.tier }

    /// One usage sample of a target. `budget`: resolved (see `resolve`), nil
    /// when the target has none; `growth`: bytes per second when the
    /// detectors know it (the forecast needs it).
    public mutating func evaluate(
        target: EventTarget, now: ClockReading, usage: UInt64, budget: UInt64?, growth: Int64?, policy: TargetPolicy
    ) -> [AgentEvent] {
        let key = target.key
        guard let budget, budget > 0 else {
            // no budget (any more): nothing to hold
            states[key] = nil
            return []
        }
        var state = states[key] ?? State()
        let share = Double(usage) / Double(budget)
        let tiers = policy.tiers
        let reached = BudgetTier.allCases.last(where: { share >= tiers.startShare(of: $0) })
        var events: [AgentEvent] = []

        if let reached, state.tier.map({ reached > $0 }) ?? true {
            state.tier = reached
            let cooldown = MemoryHighController.nanoseconds(policy.cooldowns.event)
            let last = state.lastAnnounced[reached]
            if last.map({ now.monotonicNanoseconds &- $0 >= cooldown }) ?? true {
                state.lastAnnounced[reached] = now.monotonicNanoseconds
                state.announced = true
                events.append(
                    event(
                        .budget(reached), tier: reached, target: target, now: now, usage: usage, budget: budget,
                        share: share, growth: growth, policy: policy))
            }
        } else if let held = state.tier, share < tiers.startShare(of: held) - tiers.hysteresis {
            // leave the held tier; keep the highest one still within its hysteresis
            let kept = BudgetTier.allCases.last(where: { $0 < held && share >= tiers.startShare(of: $0) - tiers.hysteresis })
            state.tier = kept
            if kept == nil {
                if state.announced {
                    events.append(
                        event(
                            .budgetRecovered, tier: held, target: target, now: now, usage: usage, budget: budget,
                            share: share, growth: growth, policy: policy))
                }
                state.announced = false
            }
        }
        states[key] = state
        return events
    }

    /// The target went away (its cgroup is gone): forget its tier and cooldowns.
    public mutating func forget(_ key: String) {
        states[key] = nil
    }

    /// Seconds until `usage` reaches `budget` at `growth` bytes/s: 0 at or over
    /// the budget, nil when not growing.
    public static func secondsToBudget(usage: UInt64, budget: UInt64, growth: Int64?) -> Double? {
        if usage >= budget { return 0 }
        guard let growth, growth > 0 else { return nil }
        return Double(budget - usage) / Double(growth)
    }

    private func event(
        _ type: AgentEvent.EventType, tier: BudgetTier, target: EventTarget, now: ClockReading, usage: UInt64,
        budget: UInt64, share: Double, growth: Int64?, policy: TargetPolicy
    ) -> AgentEvent {
        let severity: AgentEvent.Severity =
            switch type {
            case .budgetRecovered: .info
            case .budgetCritical, .budgetEmergency: .critical
            default: .warning
            }
        return AgentEvent(
            type: type, severity: severity, epochNanoseconds: now.epochNanoseconds, t: now.t, node: node,
            target: target,
            details: .budget(
                BudgetDetails(
                    tier: tier, rule: policy.rule, budgetBytes: budget, usageBytes: usage, share: share,
                    growthBytesPerSecond: growth,
                    secondsToBudget: Self.secondsToBudget(usage: usage, budget: budget, growth: growth))))
    }
}

extension BudgetTiers {
    /// The share of the budget at which `tier` starts.
    func startShare(of tier: BudgetTier) -> Double {
        switch tier {
        case .warning: warning
        case .high: high
        case .critical: critical
        case .emergency: emergency
        }
    }
}
