import MemwardenModel
import Synchronization

/// What a sink did with the events it was given, since it started. Every
/// event submitted ends up delivered, still queued, or in one of the drop
/// counts: nothing disappears without a number.
public struct SinkStatistics: Sendable, Hashable {
    public var delivered: UInt64 = 0
    /// The queue was full: the oldest event made room for a new one.
    public var droppedQueueFull: UInt64 = 0
    /// Every attempt failed (timeouts, connection errors, 5xx).
    public var droppedRetriesExhausted: UInt64 = 0
    /// The receiver refused the event for good (4xx other than 408 and 429).
    public var droppedRejected: UInt64 = 0
    /// Still queued when the shutdown's flush time ran out.
    public var droppedAtShutdown: UInt64 = 0
    /// Attempts that failed, including those retried successfully later.
    public var failedAttempts: UInt64 = 0
    /// Events waiting now.
    public var queueDepth: Int = 0

    public init() {}

    public var dropped: UInt64 { droppedQueueFull + droppedRetriesExhausted + droppedRejected + droppedAtShutdown }

    /// The drop counts by reason, as the `reason` label of the metrics names them.
    public var droppedByReason: [(reason: String, count: UInt64)] {
        [
            ("queue_full", droppedQueueFull), ("retries_exhausted", droppedRetriesExhausted),
            ("rejected", droppedRejected), ("shutdown", droppedAtShutdown),
        ]
    }
}

/// A sink that counts what it does: AgentMetrics exports these counts per
/// sink, and agent.events_lost reports the drops.
public protocol CountingSink: EventSink {
    var statistics: SinkStatistics { get }
    /// The key of this sink's drops in agent.events_lost's `lost` (docs/events.md).
    var lossKey: String { get }
}

extension CountingSink {
    public var lossKey: String { "sink." + name }
}

/// The counters behind `SinkStatistics`, shared by the submitting threads and
/// the delivering task (a lock: a few increments per event, never contended
/// for long).
final class SinkCounters: Sendable {
    private let values = Mutex(SinkStatistics())

    func update(_ body: (inout SinkStatistics) -> Void) {
        values.withLock { body(&$0) }
    }

    func snapshot(queueDepth: Int) -> SinkStatistics {
        var s = values.withLock { $0 }
        s.queueDepth = queueDepth
        return s
    }
}

/// A value behind a lock, in a class so that Copyable structs (the sinks) can hold it.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}
