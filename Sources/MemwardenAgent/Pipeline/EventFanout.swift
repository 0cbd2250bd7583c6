import MemwardenModel
import Synchronization

/// Hands each event to every sink, in order. Sinks never block, so neither does this.
public final class EventFanout: EventSink {
    public let name = "fanout"
    public let sinks: [any EventSink]

    public init(_ sinks: [any EventSink]) {
        self.sinks = sinks
    }

    public func submit(_ event: AgentEvent) {
        for sink in sinks { sink.submit(event) }
    }
}

/// A sink that exists before its destination does: the policy store is made
/// (and may report) before the sinks its `outputs` section configures.
/// Events before `connect` are held (at most `capacity`, oldest dropped).
public final class EventRelay: EventSink {
    public let name = "relay"
    private let state: Mutex<(target: (any EventSink)?, held: [AgentEvent])> = Mutex((nil, []))
    private let capacity: Int

    public init(capacity: Int = 256) {
        self.capacity = capacity
    }

    public func connect(_ sink: any EventSink) {
        let held = state.withLock { state in
            state.target = sink
            let held = state.held
            state.held = []
            return held
        }
        for event in held { sink.submit(event) }
    }

    public func submit(_ event: AgentEvent) {
        let target: (any EventSink)? = state.withLock {
            if $0.target == nil {
                if $0.held.count >= capacity { $0.held.removeFirst() }
                $0.held.append(event)
            }
            return $0.target
        }
        target?.submit(event)
    }
}
