import Foundation
import MemwardenModel

/// A container id as the kubelet reports it in a pod's status: "containerd://64hex",
/// "cri-o://64hex", "docker://64hex". The cgroup path carries only the hex id, so the index
/// keys on that.
public struct ContainerReference: Sendable, Hashable {
    public var runtime: TargetIdentity.Runtime?
    /// Lower-case, without the scheme.
    public var id: String

    /// nil for an empty id (a container not started yet has none).
    public init?(_ text: String) {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { return nil }
        if let range = trimmed.range(of: "://") {
            let scheme = trimmed[..<range.lowerBound]
            id = String(trimmed[range.upperBound...]).lowercased()
            runtime = switch scheme {
            case "containerd": .containerd
            case "cri-o", "crio": .crio
            case "docker": .docker
            case "podman": .podman
            default: nil
            }
        } else {
            runtime = nil
            id = trimmed.lowercased()
        }
        guard !id.isEmpty else { return nil }
    }
}


/// What the index keeps of one pod: enough to answer `PodMetadata` for the pod and for each of
/// its containers, and nothing else of the object (a node has ~110 pods; their specs are big).
public struct PodRecord: Sendable, Equatable {
    public struct Container: Sendable, Equatable {
        public var name: String
        public var memoryRequest: UInt64?
        public var memoryLimit: UInt64?
    }

    public var uid: String
    public var name: String
    public var namespace: String
    public var labels: [String: String]
    public var qos: TargetIdentity.QoSClass?
    public var resourceVersion: String?
    /// Every container of the spec (app, init, ephemeral) by name.
    public var containers: [String: Container]
    /// Container id (hex, lower-case) → container name, from the three status lists.
    public var containerIDs: [String: String]
    /// The pod's memory request (sum over app containers) and limit (sum, when every app
    /// container has one): what a pod-level cgroup is sized by.
    public var memoryRequest: UInt64?
    public var memoryLimit: UInt64?

    public struct MappingError: Error, CustomStringConvertible, Sendable {
        public var pod: String
        public var problem: String
        public var description: String { "pod \(pod): \(problem)" }
    }

    init(_ pod: KubePod) throws(MappingError) {
        let label = "\(pod.metadata.namespace ?? "?")/\(pod.metadata.name ?? "?")"
        guard let uid = pod.metadata.uid, !uid.isEmpty else { throw MappingError(pod: label, problem: "no metadata.uid") }
        guard let name = pod.metadata.name, let namespace = pod.metadata.namespace else {
            throw MappingError(pod: label, problem: "no metadata.name or metadata.namespace")
        }
        self.uid = uid.lowercased()
        self.name = name
        self.namespace = namespace
        labels = pod.metadata.labels ?? [:]
        resourceVersion = pod.metadata.resourceVersion

        let spec = pod.spec ?? KubePodSpec()
        let appContainers = spec.containers ?? []
        var containers: [String: Container] = [:]
        for container in appContainers + (spec.initContainers ?? []) + (spec.ephemeralContainers ?? []) {
            // A quantity that does not parse leaves that value unknown rather than dropping the
            // pod: the API server validated it, so this only happens with a newer syntax.
            let request = container.resources?.requests?["memory"].flatMap { try? KubernetesQuantity(parsing: $0).bytes }
            let limit = container.resources?.limits?["memory"].flatMap { try? KubernetesQuantity(parsing: $0).bytes }
            containers[container.name] = Container(name: container.name, memoryRequest: request, memoryLimit: limit)
        }
        self.containers = containers

        var ids: [String: String] = [:]
        let status = pod.status
        for entry in (status?.containerStatuses ?? []) + (status?.initContainerStatuses ?? [])
            + (status?.ephemeralContainerStatuses ?? [])
        {
            if let reference = entry.containerID.flatMap(ContainerReference.init) { ids[reference.id] = entry.name }
        }
        containerIDs = ids

        let app = appContainers.compactMap { containers[$0.name] }
        let requests = app.compactMap(\.memoryRequest)
        memoryRequest = requests.isEmpty ? nil : requests.reduce(0, &+)
        let limits = app.compactMap(\.memoryLimit)
        memoryLimit = !app.isEmpty && limits.count == app.count ? limits.reduce(0, &+) : nil

        qos = status?.qosClass.flatMap { TargetIdentity.QoSClass(rawValue: $0.lowercased()) } ?? Self.qosClass(of: spec)
    }

    /// The pod as `PodMetadata`: for one container (by name) or the pod as a whole.
    func metadata(container: String?) -> PodMetadata {
        let entry = container.flatMap { containers[$0] }
        return PodMetadata(
            name: name, namespace: namespace, uid: uid, labels: labels, container: container, qos: qos,
            memoryRequest: container == nil ? memoryRequest : entry?.memoryRequest,
            memoryLimit: container == nil ? memoryLimit : entry?.memoryLimit
        )
    }

    /// The QoS class as the API server computes it (pkg/apis/core/helper/qos, v1.20) when the
    /// status has none yet: BestEffort without any cpu/memory request or limit, Guaranteed when
    /// every container limits both and requests equal limits, else Burstable.
    static func qosClass(of spec: KubePodSpec) -> TargetIdentity.QoSClass {
        let supported: Set<String> = ["cpu", "memory"]
        var requests: [String: KubernetesQuantity] = [:]
        var limits: [String: KubernetesQuantity] = [:]
        var guaranteed = true
        func add(_ quantity: KubernetesQuantity, to sums: inout [String: KubernetesQuantity], key: String) {
            if let sum = sums[key] {
                sums[key] = KubernetesQuantity(text: "", value: sum.value + quantity.value)
            } else {
                sums[key] = quantity
            }
        }
        for container in (spec.containers ?? []) + (spec.initContainers ?? []) {
            for (key, text) in container.resources?.requests ?? [:] where supported.contains(key) {
                if let quantity = try? KubernetesQuantity(parsing: text), !quantity.isZero { add(quantity, to: &requests, key: key) }
            }
            var limited: Set<String> = []
            for (key, text) in container.resources?.limits ?? [:] where supported.contains(key) {
                if let quantity = try? KubernetesQuantity(parsing: text), !quantity.isZero {
                    limited.insert(key)
                    add(quantity, to: &limits, key: key)
                }
            }
            if limited != supported { guaranteed = false }
        }
        if requests.isEmpty && limits.isEmpty { return .besteffort }
        if guaranteed {
            for (key, request) in requests where limits[key] != request { guaranteed = false }
        }
        return guaranteed && requests.count == limits.count ? .guaranteed : .burstable
    }
}
