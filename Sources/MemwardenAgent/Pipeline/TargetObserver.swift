import MemwardenDetection
import MemwardenModel
import MemwardenOutput

/// Keeps /api/v1/targets and the per-target metrics current: usage from the
/// pipeline's cgroup samples, everything else from the events themselves
/// (it is a sink): verdict and growth from leak events, the tier and the
/// budget forecast from budget events, memory.high from response events.
/// Cgroups are listed while they have tracked processes; a process only
/// while a leak is suspected in it (bounded, never a row per pid).
public final class TargetObserver: EventSink {
    public let name = "targets"
    public let table: TargetTable
    public let metrics: AgentMetrics?

    public init(table: TargetTable, metrics: AgentMetrics?) {
        self.table = table
        self.metrics = metrics
    }

    /// A cgroup's sample.
    public func cgroupSample(identity: TargetIdentity, usage: UInt64, limit: UInt64?, budget: UInt64?, rule: String?) {
        let key = EventTarget(scope: .cgroup, identity: identity).key
        let row = table.update(key: key, initial: TargetSnapshot(scope: .cgroup, identity: identity, usageBytes: usage)) {
            $0.identity = identity
            $0.usageBytes = usage
            $0.limitBytes = limit
            $0.budgetBytes = budget
            $0.rule = rule
            if $0.growthBytesPerSecond > 0, let limit {
                $0.secondsToLimit = Assessor.secondsToLimit(limit: limit, usage: usage, growth: $0.growthBytesPerSecond)
            }
            $0.updatedAt = realtimeNanoseconds()
        }
        if let row { metrics?.update(row) }
    }

    /// A cgroup without tracked processes, or a process that ended.
    public func gone(_ target: EventTarget) {
        table.remove(key: target.key)
        metrics?.removeTarget(key: target.key)
    }

    public func submit(_ event: AgentEvent) {
        guard let target = event.target else { return }
        let key = target.key
        let row: TargetSnapshot?
        switch event.details {
        case .leak(let leak):
            if event.type == .leakCleared, target.scope == .process {
                gone(target)
                return
            }
            let initial = TargetSnapshot(
                scope: target.scope, pid: target.pid, comm: target.comm, identity: target.identity, usageBytes: 0)
            row = table.update(key: key, initial: event.type == .leakSuspected ? initial : nil) {
                if event.type == .leakSuspected {
                    $0.verdict = .leakSuspected
                    $0.confidence = leak.confidence
                    $0.growthBytesPerSecond = leak.growthBytesPerSecond
                    $0.secondsToLimit = leak.secondsToLimit
                    $0.limitBytes = leak.limit ?? $0.limitBytes
                    $0.suspectedSince = event.epochNanoseconds
                } else {
                    $0.verdict = .ok
                    $0.confidence = 0
                    $0.growthBytesPerSecond = 0
                    $0.secondsToLimit = nil
                    $0.suspectedSince = nil
                }
                $0.updatedAt = event.epochNanoseconds
            }
        case .budget(let budget):
            row = table.update(key: key, initial: nil) {
                $0.tier = event.type == .budgetRecovered ? nil : budget.tier
                $0.secondsToBudget = event.type == .budgetRecovered ? nil : budget.secondsToBudget
                $0.budgetBytes = budget.budgetBytes
                $0.rule = budget.rule
                $0.updatedAt = event.epochNanoseconds
            }
        case .response(let response) where !response.dryRun:
            guard event.type == .responseThrottle || event.type == .responseRestore else { return }
            row = table.update(key: EventTarget(scope: .cgroup, identity: target.identity).key, initial: nil) {
                $0.throttled = event.type == .responseThrottle
                $0.memoryHighBytes = event.type == .responseThrottle ? response.memoryHighAfter : nil
                $0.growthCapBytesPerSecond = event.type == .responseThrottle ? response.growthCap?.rateBytesPerSecond : nil
                $0.updatedAt = event.epochNanoseconds
            }
        default:
            return
        }
        if let row { metrics?.update(row) }
    }
}
