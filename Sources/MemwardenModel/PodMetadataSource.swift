/// Who knows the pods on this node (the API server's watch, or nobody on a
/// plain host). Lookups are synchronous and cheap: the source keeps its own
/// index up to date in the background.
public protocol PodMetadataSource: Sendable {
    /// The pod (and container, when `containerID` names one of its containers)
    /// for a pod UID from a cgroup path and/or a container id; nil when unknown.
    func metadata(podUID: String?, containerID: String?) -> PodMetadata?
}
