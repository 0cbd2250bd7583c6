import MemwardenModel
import MemwardenPolicy
import MemwardenResponse

/// What the pipeline tells the budget evaluator and the responder: each
/// cgroup's usage with the policy that applies to it, leak events, targets
/// that went, and targets whose policy changed on a reload.
public struct PipelineResponses: Sendable {
    public let policy: PolicyStore
    public let stage: ResponseStage

    public init(policy: PolicyStore, stage: ResponseStage) {
        self.policy = policy
        self.stage = stage
    }
}

/// The pipeline's memory of the cgroups it fed to the responder: their
/// policy (re-resolved when the store's generation moves), the growth the
/// detectors or the usage trend give, and when their usage was last seen.
struct BudgetFeed {
    let responses: PipelineResponses
    private var targets: [String: Target] = [:]
    private var generation: UInt64

    struct Target {
        var target: EventTarget
        var policy: TargetPolicy
        /// The leak's growth while a leak is suspected in the cgroup, bytes/s.
        var leakGrowth: Int64?
        var trend = UsageTrend()
    }

    init(responses: PipelineResponses) {
        self.responses = responses
        generation = responses.policy.statistics.generation
    }

    /// A cgroup's sample: its usage (page counter) and its limit, at `seconds`
    /// on the agent's clock. Returns the policy that applies to it.
    @discardableResult
    mutating func usage(identity: TargetIdentity, usage: UInt64, limit: UInt64?, seconds: Double) -> TargetPolicy {
        refreshPolicies()
        let key = identity.cgroup
        if targets[key] == nil {
            targets[key] = Target(
                target: EventTarget(scope: .cgroup, identity: identity), policy: responses.policy.resolve(for: identity))
        }
        targets[key]!.target.identity = identity
        targets[key]!.trend.add(seconds: seconds, usage: usage)
        let target = targets[key]!
        let growth = target.leakGrowth ?? target.trend.rate
        responses.stage.usage(target.target, usage: usage, limit: limit, growth: growth, policy: target.policy)
        return target.policy
    }

    /// A leak event (process or cgroup scope).
    mutating func leak(_ event: AgentEvent) {
        guard let eventTarget = event.target else { return }
        refreshPolicies()
        let key = eventTarget.identity.cgroup
        let policy = targets[key]?.policy ?? responses.policy.resolve(for: eventTarget.identity)
        if eventTarget.scope == .cgroup, targets[key] != nil, case .leak(let details) = event.details {
            targets[key]!.leakGrowth = event.type == .leakCleared ? nil : details.growthBytesPerSecond
        }
        responses.stage.leak(event, policy: policy)
    }

    /// A process ended, or a cgroup's last tracked process left.
    mutating func gone(_ target: EventTarget) {
        if target.scope == .cgroup { targets[target.identity.cgroup] = nil }
        responses.stage.targetGone(target)
    }

    /// After a reload, every known target whose policy changed hears it once.
    private mutating func refreshPolicies() {
        let now = responses.policy.statistics.generation
        guard now != generation else { return }
        generation = now
        for key in Array(targets.keys) {
            let policy = responses.policy.resolve(for: targets[key]!.target.identity)
            guard policy != targets[key]!.policy else { continue }
            targets[key]!.policy = policy
            responses.stage.policyChanged(targets[key]!.target, policy: policy)
        }
    }
}

/// A cgroup's usage trend for the budget forecast when no leak is suspected:
/// the rate between the oldest and newest of the readings of the last few
/// minutes, once they span at least a minute (shorter spans are noise).
struct UsageTrend {
    private var readings: [(seconds: Double, usage: UInt64)] = []
    static let window = 300.0
    static let minimumSpan = 60.0

    mutating func add(seconds: Double, usage: UInt64) {
        readings.append((seconds, usage))
        if let first = readings.first, seconds - first.seconds > Self.window, readings.count > 2 {
            readings.removeFirst(readings.firstIndex { seconds - $0.seconds <= Self.window } ?? 0)
        }
        if readings.count > 64 { readings.remove(at: 1) }
    }

    /// Bytes per second, or nil when the readings span less than a minute.
    var rate: Int64? {
        guard let first = readings.first, let last = readings.last, last.seconds - first.seconds >= Self.minimumSpan
        else { return nil }
        return Int64((Double(last.usage) - Double(first.usage)) / (last.seconds - first.seconds))
    }
}
