/// What a memory cgroup's path says about its owner, from the names that
/// container runtimes, the kubelet and systemd give their cgroups
/// (docs/identity.md lists every shape). Pure: no file is read.
///
/// The rules, in the order they matter:
/// - The deepest component that names a container is the container; anything
///   below it is a cgroup nested inside that container and belongs to it.
/// - A container's pod is the deepest pod component above it. A pod component
///   deeper than every container (a pod-level cgroup, e.g. `crio-conmon-…`
///   beside the containers) gives a pod and no container.
/// - A bare 64-hex component is a container only where a runtime puts bare
///   ids: under `docker` (docker, cgroupfs driver), under a containerd
///   namespace (`k8s.io`, `default`), or directly under a pod (the kubelet's
///   cgroupfs driver, where the runtime cannot be told from the path).
/// - A QoS-level cgroup (`/kubepods/burstable`) gives its QoS class alone.
/// - On a plain host (no container, no pod) the deepest systemd unit
///   (`.service`, `.scope`, `.socket`, `.mount`, `.swap`) is the identity.
/// - Anything else: the path alone. Nothing is guessed.
public enum CgroupPathIdentity {
    public static func parse(_ path: String) -> TargetIdentity {
        var identity = TargetIdentity(cgroup: path)
        // a private cgroup namespace shows other groups as "/../../x": the names
        // below the ".." components are still the runtime's and the kubelet's
        let components = path.split(separator: "/").filter { $0 != "." && $0 != ".." }

        var container: (index: Int, runtime: TargetIdentity.Runtime?, id: String)?
        var pods: [(index: Int, uid: String, qos: TargetIdentity.QoSClass?)] = []
        var qosLevel: (index: Int, qos: TargetIdentity.QoSClass)?
        var unit: (index: Int, name: String)?
        var kubepodsSeen = false

        for (index, component) in components.enumerated() {
            let name = String(component)
            let parent = index > 0 ? String(components[index - 1]) : nil

            if let found = containerName(name, parent: parent, parentIsPod: pods.last?.index == index - 1 && index > 0) {
                container = (index, found.runtime, found.id)
                // the colon form carries the pod's slice in front of the id
                if let colon = name.firstIndex(of: ":"), name[..<colon].hasSuffix(".slice"),
                    let pod = podSlice(String(name[..<colon].dropLast(".slice".count)))
                {
                    pods.append((index, pod.uid, pod.qos))
                }
                continue
            }
            if name == "kubepods" {
                kubepodsSeen = true
                continue
            }
            if name.hasSuffix(".slice") {
                let slice = String(name.dropLast(".slice".count))
                if let pod = podSlice(slice) {
                    pods.append((index, pod.uid, pod.qos))
                } else if let level = qosSlice(slice) {
                    qosLevel = (index, level)
                }
                continue
            }
            if kubepodsSeen, name.hasPrefix("pod"), let uid = podUID(name.dropFirst(3)) {
                // cgroupfs driver: /kubepods/<qos>/pod<uid>, Guaranteed pods right under /kubepods
                let qos: TargetIdentity.QoSClass? =
                    switch parent {
                    case "kubepods": .guaranteed
                    case "burstable": .burstable
                    case "besteffort": .besteffort
                    default: nil
                    }
                pods.append((index, uid, qos))
                continue
            }
            if kubepodsSeen, parent == "kubepods", name == "burstable" || name == "besteffort" {
                qosLevel = TargetIdentity.QoSClass(rawValue: name).map { (index, $0) }
                continue
            }
            if isSystemdUnit(name) {
                unit = (index, name)
            }
        }

        let deepestPod = pods.last
        if let container, deepestPod.map({ $0.index <= container.index }) ?? true {
            identity.runtime = container.runtime
            identity.containerID = container.id
            if let pod = pods.last(where: { $0.index <= container.index }) {
                identity.podUID = pod.uid
                identity.qos = pod.qos
            }
        } else if let pod = deepestPod {
            identity.podUID = pod.uid
            identity.qos = pod.qos
        } else if let qosLevel, qosLevel.index == components.count - 1 {
            // the QoS level's own cgroup; below it, only a pod is a known shape
            identity.qos = qosLevel.qos
        } else if let unit {
            identity.runtime = .systemd
            identity.systemdUnit = unit.name
        }
        return identity
    }

    /// The runtime prefixes of container cgroups (systemd driver `<prefix>-<id>.scope`,
    /// and the same names without `.scope` under the cgroupfs drivers of CRI-O and podman).
    private static let prefixes: [(prefix: String, runtime: TargetIdentity.Runtime)] = [
        ("cri-containerd-", .containerd),
        ("docker-", .docker),
        ("crio-", .crio),
        ("libpod-", .podman),
    ]

    /// Monitors that sit beside containers in their own cgroups: not containers.
    private static let monitorPrefixes = ["crio-conmon-", "libpod-conmon-"]

    /// Runtime prefixes of containerd's systemd-less form `<slice>:<prefix>:<id>`.
    private static let colonPrefixes: [String: TargetIdentity.Runtime] = [
        "cri-containerd": .containerd, "crio": .crio, "docker": .docker, "libpod": .podman,
    ]

    private static func containerName(
        _ name: String, parent: String?, parentIsPod: Bool
    ) -> (runtime: TargetIdentity.Runtime?, id: String)? {
        if name.contains(":") {
            let parts = name.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, let runtime = colonPrefixes[String(parts[1])], isContainerID(parts[2]) else {
                return nil
            }
            return (runtime, String(parts[2]))
        }
        if isContainerID(name[...]) {
            switch parent {
            case "docker": return (.docker, name)
            case "k8s.io", "default": return (.containerd, name)
            default: return parentIsPod ? (nil, name) : nil
            }
        }
        if monitorPrefixes.contains(where: { name.hasPrefix($0) }) { return nil }
        let base = name.hasSuffix(".scope") ? name.dropLast(".scope".count) : name[...]
        for (prefix, runtime) in prefixes where base.hasPrefix(prefix) {
            let id = base.dropFirst(prefix.count)
            if isContainerID(id) { return (runtime, String(id)) }
        }
        return nil
    }

    /// A full container id: 64 lower-case hex digits (short ids are never in cgroup names).
    static func isContainerID(_ text: Substring) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy(isLowerHex)
    }

    /// A pod-level slice of the kubelet's systemd driver, without ".slice":
    /// `kubepods[-<qos>]-pod<uid>`, possibly under a prefix of the kubelet's
    /// cgroup root (kind's `kubelet-kubepods-…`).
    private static func podSlice(_ slice: String) -> (uid: String, qos: TargetIdentity.QoSClass?)? {
        // the UID is the name's tail: 36 or 32 characters after the last "-pod"
        let bytes = Array(slice.utf8)
        guard let marker = (0..<max(0, bytes.count - 3)).reversed().first(where: { bytes[$0..<$0 + 4].elementsEqual("-pod".utf8) })
        else { return nil }
        guard let uid = podUID(Substring(String(decoding: bytes[(marker + 4)...], as: UTF8.self))) else { return nil }
        let tokens = String(decoding: bytes[..<marker], as: UTF8.self).split(separator: "-")
        guard let last = tokens.last, tokens.contains("kubepods") else { return nil }
        switch last {
        case "kubepods": return (uid, .guaranteed)
        case "burstable": return (uid, .burstable)
        case "besteffort": return (uid, .besteffort)
        default: return nil
        }
    }

    /// A QoS-level slice (`kubepods-burstable`), without ".slice".
    private static func qosSlice(_ slice: String) -> TargetIdentity.QoSClass? {
        let tokens = slice.split(separator: "-")
        guard tokens.count >= 2, tokens[tokens.count - 2] == "kubepods" else { return nil }
        switch tokens[tokens.count - 1] {
        case "burstable": return .burstable
        case "besteffort": return .besteffort
        default: return nil
        }
    }

    /// A pod UID as the kubelet writes it in a cgroup name, returned with
    /// dashes: an 8-4-4-4-12 UUID with '-' (cgroupfs) or '_' (systemd, which
    /// reserves '-' for its hierarchy), or 32 hex digits (static pods, whose
    /// UID is a hash of the manifest).
    static func podUID(_ text: Substring) -> String? {
        let bytes = Array(text.utf8)
        if bytes.count == 32 { return bytes.allSatisfy(isLowerHex) ? String(text) : nil }
        guard bytes.count == 36 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, byte) in bytes.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") else { return nil }
                out.append(UInt8(ascii: "-"))
            } else {
                guard isLowerHex(byte) else { return nil }
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let unitSuffixes = [".service", ".scope", ".socket", ".mount", ".swap"]

    private static func isSystemdUnit(_ name: String) -> Bool {
        unitSuffixes.contains { name.hasSuffix($0) && name.count > $0.count }
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}
