import MemwardenModel

/// Turns cgroup paths (and pids) into identities for the pipeline: the path's
/// own identity (CgroupPathIdentity), cached per path since a path's name
/// never changes meaning, and the pod's metadata from a PodMetadataSource,
/// looked up on every call because the API server's watch may learn a pod
/// after its first sample.
///
/// A value with a single owner (the stage that formats or assesses records):
/// a call costs one dictionary lookup once a path was seen.
public struct IdentityResolver: Sendable {
    public let hostPaths: HostPaths
    public let metadata: (any PodMetadataSource)?
    /// Paths kept at most; the cache starts over when full (cgroups come and
    /// go with containers, and a re-parse costs a few microseconds).
    public let capacity: Int
    private var index: CgroupIndex?
    private var parsed: [String: TargetIdentity] = [:]

    /// `hierarchy` lets paths read through a private cgroup namespace
    /// ("/../..") be resolved to host paths by walking the hierarchy; without
    /// it they are parsed as read.
    public init(
        hostPaths: HostPaths = HostPaths(), hierarchy: CgroupHierarchy? = nil, metadata: (any PodMetadataSource)? = nil,
        capacity: Int = 16384
    ) {
        self.hostPaths = hostPaths
        self.metadata = metadata
        self.capacity = max(1, capacity)
        index = hierarchy.map(CgroupIndex.init)
    }

    /// Paths in the cache.
    public var cachedPaths: Int { parsed.count }

    /// The identity of a memory cgroup path as /proc/PID/cgroup or the cgroup
    /// index name it ("" when unknown: an identity with nothing but that).
    public mutating func identity(cgroupPath path: String) -> TargetIdentity {
        var identity: TargetIdentity
        if let cached = parsed[path] {
            identity = cached
        } else {
            var hostPath = path
            var final = true
            if path.contains("/.."), index != nil {
                // not found yet (a cgroup newer than the last walk): parse the names,
                // and try again on a later call rather than keep the namespaced path
                if let resolved = index?.hostPath(namespaced: path) { hostPath = resolved } else { final = false }
            }
            identity = CgroupPathIdentity.parse(hostPath)
            if final {
                if parsed.count >= capacity { parsed.removeAll(keepingCapacity: true) }
                parsed[path] = identity
            }
        }
        if let metadata, identity.podUID != nil || identity.containerID != nil {
            identity.pod = metadata.metadata(podUID: identity.podUID, containerID: identity.containerID)
        }
        return identity
    }

    /// The identity of a process: its memory cgroup from the host's
    /// /proc/PID/cgroup (the v1 memory line or the v2 line, after the
    /// hierarchy's version), then as for a path.
    public mutating func identity(pid: Int32) throws(IdentityError) -> TargetIdentity {
        let path = try ProcCgroup.read(pid: pid, procRoot: hostPaths.proc, version: index?.hierarchy.version)
        return identity(cgroupPath: path)
    }
}
