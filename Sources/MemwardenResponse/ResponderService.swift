import Logging
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// Runs a `Responder` in the agent's ServiceGroup: on start it restores what
/// a previous run left throttled, then steps every throttled cgroup once per
/// `tickInterval`, and on graceful shutdown puts every original back before
/// it returns. The pipeline calls the input methods from any task; each
/// delivers the events it produced to the sink (which never blocks).
public final class ResponderService: Service, Sendable {
    private let responder: Mutex<Responder>
    private let sink: any EventSink
    private let tickInterval: Duration

    public init(responder: Responder, sink: any EventSink, tickInterval: Duration = .seconds(1)) {
        self.responder = Mutex(responder)
        self.sink = sink
        self.tickInterval = tickInterval
    }

    public func run() async throws {
        deliver(responder.withLock { $0.start() })
        // a shutdown cancels the sleep; the restore below runs either way
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.tickInterval)
                self.deliver(self.responder.withLock { $0.tick() })
            }
        }
        deliver(responder.withLock { $0.restoreAll(reason: "agent_stopping") })
    }

    public func leakSuspected(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) {
        deliver(responder.withLock { $0.leakSuspected(target, policy: policy, verdict: verdict) })
    }

    public func leakUpdated(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) {
        deliver(responder.withLock { $0.leakUpdated(target, policy: policy, verdict: verdict) })
    }

    public func leakCleared(_ target: EventTarget) {
        deliver(responder.withLock { $0.leakCleared(target) })
    }

    public func budgetTier(_ tier: BudgetTier?, target: EventTarget, policy: TargetPolicy) {
        deliver(responder.withLock { $0.budgetTier(tier, target: target, policy: policy) })
    }

    public func policyChanged(_ target: EventTarget, policy: TargetPolicy) {
        deliver(responder.withLock { $0.policyChanged(target, policy: policy) })
    }

    public func targetGone(_ target: EventTarget) {
        deliver(responder.withLock { $0.targetGone(target) })
    }

    /// The cgroups throttled now (for the status API and metrics).
    public var throttled: [String: UInt64] { responder.withLock { $0.throttled } }

    private func deliver(_ events: [AgentEvent]) {
        for event in events { sink.submit(event) }
    }
}
