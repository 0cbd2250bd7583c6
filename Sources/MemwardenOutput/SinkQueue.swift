import Synchronization

/// A bounded first-in first-out queue between `submit` (any thread, never
/// waits) and one delivering task (waits for work). When full, the oldest
/// element goes: a receiver that was down cares more about what is happening
/// now than about what happened when it went away. The caller counts drops.
final class SinkQueue<Element: Sendable>: Sendable {
    private struct State {
        var ring: [Element?]
        var head = 0
        var count = 0
        var waiter: CheckedContinuation<Void, Never>?
        var closed = false
        /// A wake() that found no waiter: the next wait() returns at once
        /// (a shutdown between a check and the wait must not be lost).
        var wakePending = false
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        precondition(capacity > 0, "a sink queue holds at least one element")
        self.capacity = capacity
        state = Mutex(State(ring: Array(repeating: nil, count: capacity)))
    }

    var count: Int { state.withLock { $0.count } }

    /// Adds an element; returns how many old ones were dropped (0 or 1).
    /// After `close()` nothing is accepted and the element counts as dropped.
    @discardableResult
    func push(_ element: Element) -> Int {
        let (dropped, waiter) = state.withLock { s -> (Int, CheckedContinuation<Void, Never>?) in
            if s.closed { return (1, nil) }
            var dropped = 0
            if s.count == capacity {
                s.ring[s.head] = nil
                s.head = (s.head + 1) % capacity
                s.count -= 1
                dropped = 1
            }
            s.ring[(s.head + s.count) % capacity] = element
            s.count += 1
            let waiter = s.waiter
            s.waiter = nil
            return (dropped, waiter)
        }
        waiter?.resume()
        return dropped
    }

    func popFirst() -> Element? {
        state.withLock { s in
            guard s.count > 0 else { return nil }
            let element = s.ring[s.head]
            s.ring[s.head] = nil
            s.head = (s.head + 1) % capacity
            s.count -= 1
            return element
        }
    }

    /// Up to `limit` elements, oldest first.
    func pop(upTo limit: Int) -> [Element] {
        state.withLock { s in
            let n = min(limit, s.count)
            var taken: [Element] = []
            taken.reserveCapacity(n)
            for _ in 0..<n {
                taken.append(s.ring[s.head]!)
                s.ring[s.head] = nil
                s.head = (s.head + 1) % capacity
                s.count -= 1
            }
            return taken
        }
    }

    /// Everything queued, oldest first.
    func popAll() -> [Element] {
        var all: [Element] = []
        while let element = popFirst() { all.append(element) }
        return all
    }

    /// Puts an element back at the front (a delivery that will be retried),
    /// unless newer ones filled the queue meanwhile: then it is the oldest
    /// and is dropped (returns false).
    func pushFront(_ element: Element) -> Bool {
        state.withLock { s in
            guard s.count < capacity, !s.closed else { return false }
            s.head = (s.head - 1 + capacity) % capacity
            s.ring[s.head] = element
            s.count += 1
            return true
        }
    }

    /// Returns when an element is queued, the queue is closed, `wake()` is
    /// called, or the task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.count > 0 || s.closed || s.wakePending {
                        s.wakePending = false
                        return true
                    }
                    s.waiter?.resume()
                    s.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wake()
        }
    }

    /// Wakes the waiting task without adding anything (shutdown, a timer).
    func wake() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            let waiter = s.waiter
            s.waiter = nil
            if waiter == nil { s.wakePending = true }
            return waiter
        }
        waiter?.resume()
    }

    /// Stops accepting elements and wakes the waiting task.
    func close() {
        state.withLock { $0.closed = true }
        wake()
    }

    var isClosed: Bool { state.withLock { $0.closed } }
}
