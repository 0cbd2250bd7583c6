import MemwardenModel
import Synchronization

/// The pods of this node as the API server last said, indexed by pod UID and container id, for
/// the identity stage's synchronous lookups. The PodWatcher writes it; any thread reads it.
///
/// Deleted pods stay for a while (the last `retainDeleted`), since a cgroup's last samples and
/// its leak.cleared event arrive after the API server has forgotten the pod. Old container ids
/// of restarted containers stay with their pod for the same reason.
public final class PodIndex: PodMetadataSource, Sendable {
    public struct Statistics: Sendable, Hashable {
        /// Pods on the node now, and deleted pods still kept.
        public var pods: Int
        public var deletedRetained: Int
        /// Full lists (the first one and each resync).
        public var relists: UInt64
        /// Watches that ended and were opened again from the last resourceVersion.
        public var watchRestarts: UInt64
        /// 410 Gone: the resourceVersion was compacted away (HTTP status or watch ERROR).
        public var expired: UInt64
        /// Failed requests, bad events, broken streams.
        public var errors: UInt64
        /// Watch events applied.
        public var events: UInt64
    }

    private struct State {
        var pods: [String: PodRecord] = [:]
        /// Container id → pod UID.
        var containers: [String: String] = [:]
        /// UIDs of deleted pods, oldest first (a UID can appear once).
        var deleted: [String] = []
        var deletedSet: Set<String> = []
        var synced = false
        var statistics = Statistics(
            pods: 0, deletedRetained: 0, relists: 0, watchRestarts: 0, expired: 0, errors: 0, events: 0
        )
    }

    /// Container ids kept per pod beyond the current ones (a crash-looping container gets a new
    /// id on every restart; only the latest few can still have late events).
    static let previousContainerIDsPerPod = 32

    public let retainDeleted: Int
    private let state = Mutex(State())

    public init(retainDeleted: Int = 1024) {
        self.retainDeleted = max(0, retainDeleted)
    }

    // MARK: - Reading

    public func metadata(podUID: String?, containerID: String?) -> PodMetadata? {
        let container = containerID.flatMap(ContainerReference.init)?.id
        let uid = podUID?.lowercased()
        return state.withLock { (state: inout State) -> PodMetadata? in
            // the container counts only under its own pod: a nested cgroup named like
            // another pod's container (a tenant can create one inside its own) must not
            // borrow that pod's identity, labels or policy
            if let container, let owner = state.containers[container], uid == nil || owner == uid,
                let pod = state.pods[owner]
            {
                return pod.metadata(container: pod.containerIDs[container])
            }
            if let uid, let pod = state.pods[uid] { return pod.metadata(container: nil) }
            return nil
        }
    }

    /// True once the first list has been applied: from then on lookups answer for the node.
    public var synced: Bool { state.withLock { $0.synced } }

    public var statistics: Statistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.pods = state.pods.count - state.deletedSet.count
            statistics.deletedRetained = state.deletedSet.count
            return statistics
        }
    }

    /// The pod with this UID, live or recently deleted.
    public func pod(uid: String) -> PodRecord? { state.withLock { $0.pods[uid.lowercased()] } }

    // MARK: - Writing (the watcher)

    /// A full list: pods missing from it were deleted while nobody watched.
    func replaceAll(with records: [PodRecord]) {
        state.withLock { state in
            let listed = Set(records.map(\.uid))
            for (uid, _) in state.pods where !listed.contains(uid) && !state.deletedSet.contains(uid) {
                markDeleted(uid, in: &state)
            }
            for record in records { upsert(record, in: &state) }
            state.synced = true
            state.statistics.relists += 1
            trim(&state)
        }
    }

    func apply(_ event: PodWatchEvent) throws(PodRecord.MappingError) {
        switch event {
        case .added(let pod), .modified(let pod):
            let record = try PodRecord(pod)
            state.withLock { state in
                upsert(record, in: &state)
                state.statistics.events += 1
            }
        case .deleted(let pod):
            let record = try PodRecord(pod)
            state.withLock { state in
                // The deleted object carries the final status: keep its container ids too.
                upsert(record, in: &state)
                markDeleted(record.uid, in: &state)
                state.statistics.events += 1
                trim(&state)
            }
        case .bookmark, .error:
            break
        }
    }

    func countWatchRestart() { state.withLock { $0.statistics.watchRestarts += 1 } }
    func countExpired() { state.withLock { $0.statistics.expired += 1 } }
    func countError() { state.withLock { $0.statistics.errors += 1 } }

    // MARK: - Inside the lock

    private func upsert(_ new: PodRecord, in state: inout State) {
        var record = new
        if let old = state.pods[new.uid] {
            // Keep ids of earlier container instances, newest wins, bounded.
            let previous = old.containerIDs.filter { record.containerIDs[$0.key] == nil }
            if previous.count <= Self.previousContainerIDsPerPod {
                record.containerIDs.merge(previous) { current, _ in current }
            } else {
                for id in previous.keys where state.containers[id] == new.uid { state.containers[id] = nil }
            }
        }
        if state.deletedSet.remove(record.uid) != nil { state.deleted.removeAll { $0 == record.uid } }
        state.pods[record.uid] = record
        for id in record.containerIDs.keys { state.containers[id] = record.uid }
    }

    private func markDeleted(_ uid: String, in state: inout State) {
        guard state.pods[uid] != nil, state.deletedSet.insert(uid).inserted else { return }
        state.deleted.append(uid)
    }

    private func trim(_ state: inout State) {
        while state.deleted.count > retainDeleted {
            let uid = state.deleted.removeFirst()
            state.deletedSet.remove(uid)
            if let record = state.pods.removeValue(forKey: uid) {
                for id in record.containerIDs.keys where state.containers[id] == uid { state.containers[id] = nil }
            }
        }
    }
}
