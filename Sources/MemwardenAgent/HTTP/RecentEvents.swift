import MemwardenModel
import Synchronization

/// The last events, for /api/v1/events: a ring of their JSON lines. Also a
/// sink, so the pipeline submits to it like to any other.
public final class RecentEvents: EventSink, Sendable {
    public let name = "recent"
    public let capacity: Int

    private struct Entry: Sendable {
        var epochNanoseconds: UInt64
        var json: String
    }

    private struct Ring {
        var entries: [Entry] = []
        var next = 0
    }

    private let ring = Mutex(Ring())

    public init(capacity: Int = 1000) {
        self.capacity = max(1, capacity)
    }

    public func submit(_ event: AgentEvent) {
        let entry = Entry(epochNanoseconds: event.epochNanoseconds, json: event.jsonLine())
        ring.withLock { r in
            if r.entries.count < capacity {
                r.entries.append(entry)
            } else {
                r.entries[r.next] = entry
            }
            r.next = (r.next + 1) % capacity
        }
    }

    /// The events at or after `since` (epoch nanoseconds), oldest first, at
    /// most the newest `limit` of them.
    public func lines(since: UInt64? = nil, limit: Int? = nil) -> [String] {
        let ordered = ring.withLock { r in
            r.entries.count < capacity ? r.entries : Array(r.entries[r.next...] + r.entries[..<r.next])
        }
        // events arrive nearly in time order, not exactly (several sources): filter, do not bisect
        var selected = ordered.filter { since == nil || $0.epochNanoseconds >= since! }.map(\.json)
        if let limit, selected.count > limit { selected.removeFirst(selected.count - limit) }
        return selected
    }
}
