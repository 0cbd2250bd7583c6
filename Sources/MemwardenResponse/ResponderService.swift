import Logging
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// Runs a `Responder` in the agent's ServiceGroup: on start it restores what
/// a previous run left throttled, then steps every throttled cgroup once per
/// `tickInterval`, and on graceful shutdown puts every original back before
/// it returns.
///
/// The pipeline's facts go into a bounded inbox and return at once: the
/// memory.high writes and the state file's fsync they lead to run on this
/// service's own task, at its next tick, never on the pipeline's. A budget
/// tier, sent with every cgroup sample, keeps only its newest value per
/// target; the other facts keep their order, and past `inboxCapacity` the
/// oldest is dropped and counted (`dropped`, in `agent.events_lost` as
/// "responder").
public final class ResponderService: Service, Sendable {
    enum Input: Sendable {
        case leakSuspected(EventTarget, TargetPolicy, LeakVerdict)
        case leakUpdated(EventTarget, TargetPolicy, LeakVerdict)
        case leakCleared(EventTarget)
        case policyChanged(EventTarget, TargetPolicy)
        case targetGone(EventTarget)
    }

    struct Inbox {
        var inputs: [Input] = []
        /// The newest tier per target key, in first-seen order.
        var tiers: [String: (BudgetTier?, EventTarget, TargetPolicy)] = [:]
        var tierOrder: [String] = []
        var dropped: UInt64 = 0
    }

    /// Facts waiting beyond this are dropped, oldest first: a tick takes them
    /// all, so only a responder stuck for seconds on a dead filesystem fills it.
    public static let inboxCapacity = 4096

    private let responder: Mutex<Responder>
    private let inbox = Mutex(Inbox())
    private let sink: any EventSink
    private let tickInterval: Duration

    public init(responder: Responder, sink: any EventSink, tickInterval: Duration = .seconds(1)) {
        self.responder = Mutex(responder)
        self.sink = sink
        self.tickInterval = tickInterval
    }

    public func run() async throws {
        deliver(responder.withLock { $0.start() })
        // a shutdown cancels the sleep; the facts still waiting and the restore below run either way
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.tickInterval)
                self.processInbox()
                self.deliver(self.responder.withLock { $0.tick() })
            }
        }
        processInbox()
        deliver(responder.withLock { $0.restoreAll(reason: "agent_stopping") })
    }

    /// Facts dropped from a full inbox since start.
    public var dropped: UInt64 { inbox.withLock { $0.dropped } }

    public func leakSuspected(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) {
        enqueue(.leakSuspected(target, policy, verdict))
    }

    public func leakUpdated(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) {
        enqueue(.leakUpdated(target, policy, verdict))
    }

    public func leakCleared(_ target: EventTarget) {
        enqueue(.leakCleared(target))
    }

    public func budgetTier(_ tier: BudgetTier?, target: EventTarget, policy: TargetPolicy) {
        inbox.withLock { inbox in
            let key = target.key
            if inbox.tiers[key] == nil {
                guard inbox.tierOrder.count < Self.inboxCapacity else {
                    inbox.dropped += 1
                    return
                }
                inbox.tierOrder.append(key)
            }
            inbox.tiers[key] = (tier, target, policy)
        }
    }

    public func policyChanged(_ target: EventTarget, policy: TargetPolicy) {
        enqueue(.policyChanged(target, policy))
    }

    public func targetGone(_ target: EventTarget) {
        inbox.withLock { inbox in
            // a tier still waiting would bring the gone target back
            if inbox.tiers.removeValue(forKey: target.key) != nil { inbox.tierOrder.removeAll { $0 == target.key } }
        }
        enqueue(.targetGone(target))
    }

    /// The cgroups throttled now (for the status API and metrics).
    public var throttled: [String: UInt64] { responder.withLock { $0.throttled } }

    private func enqueue(_ input: Input) {
        inbox.withLock { inbox in
            if inbox.inputs.count >= Self.inboxCapacity {
                inbox.inputs.removeFirst()
                inbox.dropped += 1
            }
            inbox.inputs.append(input)
        }
    }

    /// Hands the waiting facts to the responder: tiers first (each only
    /// sets state), then the rest in the order they came.
    private func processInbox() {
        let waiting = inbox.withLock { inbox -> Inbox in
            defer {
                inbox.inputs.removeAll(keepingCapacity: true)
                inbox.tiers.removeAll(keepingCapacity: true)
                inbox.tierOrder.removeAll(keepingCapacity: true)
            }
            return inbox
        }
        guard !waiting.inputs.isEmpty || !waiting.tierOrder.isEmpty else { return }
        let events = responder.withLock { responder in
            var events: [AgentEvent] = []
            for key in waiting.tierOrder {
                guard let (tier, target, policy) = waiting.tiers[key] else { continue }
                events += responder.budgetTier(tier, target: target, policy: policy)
            }
            for input in waiting.inputs {
                switch input {
                case .leakSuspected(let target, let policy, let verdict):
                    events += responder.leakSuspected(target, policy: policy, verdict: verdict)
                case .leakUpdated(let target, let policy, let verdict):
                    events += responder.leakUpdated(target, policy: policy, verdict: verdict)
                case .leakCleared(let target): events += responder.leakCleared(target)
                case .policyChanged(let target, let policy): events += responder.policyChanged(target, policy: policy)
                case .targetGone(let target): events += responder.targetGone(target)
                }
            }
            return events
        }
        deliver(events)
    }

    private func deliver(_ events: [AgentEvent]) {
        for event in events { sink.submit(event) }
    }
}
