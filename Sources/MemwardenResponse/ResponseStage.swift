import MemwardenModel
import Synchronization

/// The pipeline's one entry to budgets and responses: it hands over facts
/// (a cgroup's usage, a leak event, a policy change, a target gone) from any
/// task; the stage sends the budget events to the sink and keeps the
/// responder's view of each cgroup (suspected leaks, tier, policy) current.
/// The responder itself acts on its own tick (`ResponderService.run`).
public final class ResponseStage: Sendable {
    public let responder: ResponderService
    private let evaluator: Mutex<BudgetEvaluator>
    private let sink: any EventSink
    private let clock: @Sendable () -> ClockReading

    public init(
        responder: ResponderService, sink: any EventSink, node: String?,
        clock: @escaping @Sendable () -> ClockReading = { ClockReading.system() }
    ) {
        self.responder = responder
        self.evaluator = Mutex(BudgetEvaluator(node: node))
        self.sink = sink
        self.clock = clock
    }

    /// A cgroup's usage (its page counter: a `cgroup_sample`'s usage, or
    /// `CgroupMemoryFiles.usage()`), its own limit when it has one, and the
    /// growth rate when the detectors know it.
    public func usage(_ target: EventTarget, usage: UInt64, limit: UInt64?, growth: Int64?, policy: TargetPolicy) {
        let budget = BudgetEvaluator.resolve(policy.budget, limit: limit)
        let now = clock()
        let (events, tier) = evaluator.withLock { evaluator in
            let events = evaluator.evaluate(target: target, now: now, usage: usage, budget: budget, growth: growth, policy: policy)
            return (events, evaluator.tier(of: target.key))
        }
        for event in events { sink.submit(event) }
        responder.budgetTier(tier, target: target, policy: policy)
    }

    /// A `leak.suspected` or `leak.cleared` event (process or cgroup scope),
    /// with the policy of the target's cgroup. Other events are ignored.
    public func leak(_ event: AgentEvent, policy: TargetPolicy) {
        guard let target = event.target else { return }
        switch (event.type, event.details) {
        case (.leakSuspected, .leak(let details)):
            responder.leakSuspected(target, policy: policy, verdict: LeakVerdict(details) ?? LeakVerdict(confidence: 0))
        case (.leakUpdated, .leak(let details)):
            responder.leakUpdated(target, policy: policy, verdict: LeakVerdict(details) ?? LeakVerdict(confidence: 0))
        case (.leakCleared, _): responder.leakCleared(target)
        default: break
        }
    }

    /// The policy for a target changed (a reload resolved it differently).
    public func policyChanged(_ target: EventTarget, policy: TargetPolicy) {
        responder.policyChanged(target, policy: policy)
    }

    /// The target's cgroup is gone (its id left the index, or the pod was deleted).
    public func targetGone(_ target: EventTarget) {
        evaluator.withLock { $0.forget(target.key) }
        responder.targetGone(target)
    }
}
