import MemwardenModel

/// Which workload a pod's container belongs to, from what the pod's labels
/// say (the agent's pod watch has labels, not owner references): VPA sizes a
/// Deployment's containers by name over all its pods, and so does memwarden
/// where the labels allow it.
public enum Workload {
    /// "namespace/workload/container", or nil when the labels do not tell a
    /// workload (a bare pod, or a pod-level cgroup): then the container is its
    /// own target.
    public static func key(_ pod: PodMetadata) -> String? {
        guard let container = pod.container, let name = name(pod) else { return nil }
        return "\(pod.namespace)/\(name)/\(container)"
    }

    /// The controller's name, derived the way the controllers name their pods.
    static func name(_ pod: PodMetadata) -> String? {
        // a Deployment's ReplicaSet names its pods NAME-HASH-XXXXX, HASH
        // being the pod-template-hash label
        let parts = pod.name.split(separator: "-", omittingEmptySubsequences: false)
        if let hash = pod.labels["pod-template-hash"], parts.count >= 3, parts[parts.count - 2] == hash {
            return parts.dropLast(2).joined(separator: "-")
        }
        // a StatefulSet's pods are NAME-ORDINAL
        if pod.labels["statefulset.kubernetes.io/pod-name"] == pod.name, let dash = pod.name.lastIndex(of: "-"),
            Int(pod.name[pod.name.index(after: dash)...]) != nil
        {
            return String(pod.name[..<dash])
        }
        // DaemonSets (and Jobs' batch pods) name theirs NAME-XXXXX and label
        // them with the revision (or the job)
        if let job = pod.labels["job-name"] ?? pod.labels["batch.kubernetes.io/job-name"] { return job }
        if pod.labels["controller-revision-hash"] != nil, let dash = pod.name.lastIndex(of: "-") {
            return String(pod.name[..<dash])
        }
        return nil
    }
}
