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

/// Events that other tasks (the policy store, the responder) produce for the
/// pipeline's stdout, held until the pipeline's next turn. Bounded: when full
/// the oldest is dropped and counted.
public final class EventInbox: EventSink {
    public let name = "stdout"
    private let state: Mutex<(events: [AgentEvent], dropped: UInt64)> = Mutex(([], 0))
    private let capacity: Int

    public init(capacity: Int = 4096) {
        self.capacity = max(1, capacity)
    }

    public func submit(_ event: AgentEvent) {
        state.withLock {
            if $0.events.count >= capacity {
                $0.events.removeFirst()
                $0.dropped += 1
            }
            $0.events.append(event)
        }
    }

    /// Everything queued so far, oldest first.
    public func take() -> [AgentEvent] {
        state.withLock {
            let events = $0.events
            $0.events.removeAll(keepingCapacity: true)
            return events
        }
    }

    public var dropped: UInt64 { state.withLock { $0.dropped } }
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
