import Synchronization

/// The tracked targets as /api/v1/targets lists them. The pipeline upserts a
/// snapshot per target as it learns more, and removes it when the target goes.
public final class TargetTable: Sendable {
    private let rows = Mutex<[String: TargetSnapshot]>([:])

    public init() {}

    public func upsert(_ snapshot: TargetSnapshot) {
        rows.withLock { $0[snapshot.key] = snapshot }
    }

    /// Changes one target's row in place (creating it from `initial` when
    /// absent); returns the row as changed, or nil when `body` removed it.
    @discardableResult
    public func update(
        key: String, initial: @autoclosure () -> TargetSnapshot?, _ body: (inout TargetSnapshot) -> Void
    ) -> TargetSnapshot? {
        rows.withLock { rows in
            guard var row = rows[key] ?? initial() else { return nil }
            body(&row)
            rows[key] = row
            return row
        }
    }

    public func remove(key: String) {
        _ = rows.withLock { $0.removeValue(forKey: key) }
    }

    public var count: Int { rows.withLock { $0.count } }

    /// All targets, suspected leaks first, then by key.
    public func snapshots() -> [TargetSnapshot] {
        rows.withLock { Array($0.values) }.sorted {
            ($0.verdict == .leakSuspected ? 0 : 1, $0.key) < ($1.verdict == .leakSuspected ? 0 : 1, $1.key)
        }
    }

    /// One target as a JSON object (docs/http-api.md).
    package static func json(_ target: TargetSnapshot) -> String {
        var line = JSONLine()
        line.add("key", target.key)
        AgentEvent.add(
            EventTarget(scope: target.scope, pid: target.pid, comm: target.comm, identity: target.identity), to: &line,
            nullProcess: false)
        line.add("usage_bytes", target.usageBytes)
        if let value = target.limitBytes { line.add("limit_bytes", value) }
        if let value = target.budgetBytes { line.add("budget_bytes", value) }
        if let value = target.budgetShare { line.add("budget_share", value, decimals: 4) }
        if let value = target.rule { line.add("rule", value) }
        if let value = target.tier { line.add("tier", value.rawValue) }
        line.add("verdict", target.verdict.rawValue)
        line.add("confidence", target.confidence, decimals: 3)
        line.add("growth_bytes_per_second", target.growthBytesPerSecond)
        if let value = target.secondsToLimit { line.add("seconds_to_limit", value, decimals: 1) }
        if let value = target.secondsToBudget { line.add("seconds_to_budget", value, decimals: 1) }
        if let value = target.forecastSeconds { line.add("forecast_seconds", value, decimals: 1) }
        line.add("throttled", target.throttled)
        if let value = target.memoryHighBytes { line.add("memory_high_bytes", value) }
        if let value = target.growthCapBytesPerSecond { line.add("growth_cap_bytes_per_second", value) }
        line.add("updated", WallClock.rfc3339(epochNanoseconds: target.updatedAt))
        if let value = target.suspectedSince { line.add("suspected_since", WallClock.rfc3339(epochNanoseconds: value)) }
        return line.finish()
    }
}
