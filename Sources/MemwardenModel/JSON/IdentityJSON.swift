extension JSONLine {
    /// A target's identity after its "cgroup" field: runtime, container_id,
    /// pod_uid, qos, systemd_unit, and pod, namespace, container when the API
    /// server knows the pod. Event and sample lines leave unknown fields out;
    /// `identify` writes them as null (`nulls`), so its object always has the
    /// same keys, and adds the pod's labels.
    public mutating func addIdentity(_ identity: TargetIdentity, nulls: Bool = false, labels: Bool = false) {
        add("cgroup", identity.cgroup)
        if nulls || identity.runtime != nil { add("runtime", identity.runtime?.rawValue) }
        if nulls || identity.containerID != nil { add("container_id", identity.containerID) }
        if nulls || identity.podUID != nil { add("pod_uid", identity.podUID) }
        if nulls || identity.qos != nil { add("qos", identity.qos?.rawValue) }
        if nulls || identity.systemdUnit != nil { add("systemd_unit", identity.systemdUnit) }
        if let pod = identity.pod {
            add("pod", pod.name)
            add("namespace", pod.namespace)
            if let container = pod.container { add("container", container) }
            if labels { addRaw("labels", JSONLine.object(pod.labels)) }
        }
    }
}
