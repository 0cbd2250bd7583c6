/// Who a memory cgroup belongs to, as far as the agent can tell without
/// guessing: what the cgroup path says (runtime, container id, pod UID, QoS,
/// systemd unit) and, in a cluster, what the API server says about the pod.
/// An unknown path shape leaves everything but `cgroup` nil.
public struct TargetIdentity: Sendable, Hashable {
    public enum Runtime: String, Sendable, Hashable, CaseIterable {
        case docker
        case containerd
        case crio = "cri-o"
        case podman
        case systemd
    }

    /// Kubernetes QoS class, lower-case as the kubelet's cgroup names spell it.
    public enum QoSClass: String, Sendable, Hashable, CaseIterable {
        case guaranteed
        case burstable
        case besteffort
    }

    /// The cgroup path as the host sees it ("/kubepods.slice/…"), "" when unknown.
    public var cgroup: String
    public var runtime: Runtime?
    /// The full 64-hex container id.
    public var containerID: String?
    /// The pod UID with dashes ("1b2c…-…"), whatever the cgroup driver wrote.
    public var podUID: String?
    public var qos: QoSClass?
    /// A systemd unit ("nginx.service", "session-3.scope") on plain hosts.
    public var systemdUnit: String?
    /// From the API server, when running in a cluster and the pod is known.
    public var pod: PodMetadata?

    public init(
        cgroup: String, runtime: Runtime? = nil, containerID: String? = nil, podUID: String? = nil,
        qos: QoSClass? = nil, systemdUnit: String? = nil, pod: PodMetadata? = nil
    ) {
        self.cgroup = cgroup
        self.runtime = runtime
        self.containerID = containerID
        self.podUID = podUID
        self.qos = qos
        self.systemdUnit = systemdUnit
        self.pod = pod
    }
}

/// What the API server says about one container of a pod on this node.
public struct PodMetadata: Sendable, Hashable {
    public var name: String
    public var namespace: String
    public var uid: String
    public var labels: [String: String]
    /// The container the cgroup belongs to; nil for a pod-level cgroup.
    public var container: String?
    public var qos: TargetIdentity.QoSClass?
    /// The container's memory request and limit, bytes.
    public var memoryRequest: UInt64?
    public var memoryLimit: UInt64?

    public init(
        name: String, namespace: String, uid: String, labels: [String: String] = [:], container: String? = nil,
        qos: TargetIdentity.QoSClass? = nil, memoryRequest: UInt64? = nil, memoryLimit: UInt64? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.labels = labels
        self.container = container
        self.qos = qos
        self.memoryRequest = memoryRequest
        self.memoryLimit = memoryLimit
    }
}
