import MemwardenDetection
import MemwardenIdentity
import MemwardenModel
import MemwardenOutput

/// Right-sizing from the live confirmation stage: each watched cgroup's
/// history (at most 48 hours: `history_seconds` says how much) with its leak
/// verdict, aggregated over a workload's pods where their labels tell the
/// workload (`Workload.key`), else one row per cgroup.
enum LiveRecommendations {
    static func compute(
        _ confirmation: ConfirmationStage, resolver: inout RecordResolver, table: TargetTable?,
        settings: RecommendationSettings = RecommendationSettings()
    ) -> [RecommendedTarget] {
        let processLeaks = confirmation.processLeaks()
        let limits = Dictionary(
            (table?.snapshots() ?? []).compactMap { row in
                row.scope == .cgroup ? row.limitBytes.map { (row.identity.cgroup, $0) } : nil
            },
            uniquingKeysWith: { first, _ in first })
        var groups: [String: (identity: TargetIdentity, workload: String?, members: [RecommendationMember], limit: UInt64?)] = [:]
        for (id, history, leak) in confirmation.cgroupHistories() {
            let path = resolver.cgroupPath(id: id, pid: nil)
            guard !path.isEmpty else { continue }
            let identity = resolver.identity(cgroupPath: path)
            let workload = identity.pod.flatMap(Workload.key)
            let member = RecommendationMember(history: UsageHistory(history), leak: leak ?? processLeaks[path])
            let key = workload ?? "cgroup:" + path
            var group = groups[key] ?? (identity, workload, [], nil)
            group.members.append(member)
            // pods of one workload share its spec: the highest limit among them stands for it
            if let limit = limits[path] { group.limit = max(group.limit ?? 0, limit) }
            groups[key] = group
        }
        return groups.values.compactMap { group in
            Recommender.recommend(group.members, limit: group.limit.map(Double.init), settings: settings).map {
                RecommendedTarget(identity: group.identity, workload: group.workload, recommendation: $0)
            }
        }
    }
}
