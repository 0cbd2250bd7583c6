import Synchronization

/// How every unit test waits for something another task does: poll the
/// condition every few milliseconds until it holds, give up only after a
/// deadline generous enough for a loaded CI machine, and fail naming what it
/// waited for. A fixed sleep is either too short on a busy machine (a flaky
/// test blocks every landing) or wastes time on an idle one; polling returns
/// as soon as the condition holds, so the generous deadline costs nothing
/// when the code works.

/// The default deadline: CI shares two cores with noisy neighbours, where a
/// one-second poll loop can be held off for many seconds.
public let defaultWaitSeconds: Double = 30

/// A wait that ran out: what was awaited, and what was seen instead.
public struct WaitTimeout: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `find` until it returns a value and returns that value; throws
/// `WaitTimeout` naming `what` (and `seen`, the state at the end) after
/// `seconds`.
public func waitFor<Value>(
    _ what: String, seconds: Double = defaultWaitSeconds, interval: Duration = .milliseconds(5),
    seen: () -> String = { "" }, _ find: () async throws -> Value?
) async throws -> Value {
    let clock = ContinuousClock()
    let end = clock.now + .milliseconds(Int64(seconds * 1000))
    while clock.now < end {
        if let value = try await find() { return value }
        try await Task.sleep(for: interval)
    }
    // one last look: the sleep may have overshot the deadline
    if let value = try await find() { return value }
    let state = seen()
    throw WaitTimeout("waited \(seconds) s for \(what); it did not happen" + (state.isEmpty ? "" : " (saw \(state))"))
}

/// Polls `condition` until it holds; returns how long that took (tests print
/// it: a slow path shows in the log before it fails).
@discardableResult
public func waitUntil(
    _ what: String, seconds: Double = defaultWaitSeconds, interval: Duration = .milliseconds(5),
    seen: () -> String = { "" }, _ condition: () async throws -> Bool
) async throws -> Duration {
    let start = ContinuousClock.now
    try await waitFor(what, seconds: seconds, interval: interval, seen: seen) { try await condition() ? () : nil }
    return ContinuousClock.now - start
}

/// Runs `work` in a task of its own and waits for it to return: work that
/// should never block, run against something that never answers (a pipe
/// nobody reads, a receiver holding its answer), fails the test naming `what`
/// instead of hanging it, and a busy machine cannot fail it the way a
/// stopwatch on each call would.
@discardableResult
public func waitForReturn<Value: Sendable>(
    _ what: String, seconds: Double = defaultWaitSeconds, _ work: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    let outcome = Outcome<Value>()
    let task = Task { outcome.set(await Result(catching: work)) }
    defer { task.cancel() }
    return try await waitFor(what, seconds: seconds) { outcome.value }.get()
}

private final class Outcome<Value: Sendable>: Sendable {
    private let result = Mutex<Result<Value, any Error>?>(nil)
    func set(_ value: Result<Value, any Error>) { result.withLock { $0 = value } }
    var value: Result<Value, any Error>? { result.withLock { $0 } }
}

extension Result where Failure == any Error {
    fileprivate init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
