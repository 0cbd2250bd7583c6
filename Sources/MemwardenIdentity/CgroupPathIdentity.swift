import MemwardenModel

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
    /// A path component: bytes of the path (names are ASCII in every shape
    /// known; byte comparisons keep a parse in the low microseconds).
    typealias Name = ArraySlice<UInt8>

    public static func parse(_ path: String) -> TargetIdentity {
        var identity = TargetIdentity(cgroup: path)
        let bytes = Array(path.utf8)
        // a private cgroup namespace shows other groups as "/../../x": the names
        // below the ".." components are still the runtime's and the kubelet's
        let components = bytes.split(separator: slash).filter { !equal($0, dot) && !equal($0, dotDot) }

        var container: (index: Int, runtime: TargetIdentity.Runtime?, id: Name)?
        var pods: [(index: Int, uid: String, qos: TargetIdentity.QoSClass?)] = []
        var qosLevel: (index: Int, qos: TargetIdentity.QoSClass)?
        var unit: (index: Int, name: Name)?
        var kubepodsSeen = false

        for (index, name) in components.enumerated() {
            let parent = index > 0 ? components[index - 1] : nil
            let parentIsPod = index > 0 && pods.last?.index == index - 1

            if let found = containerName(name, parent: parent, parentIsPod: parentIsPod) {
                container = (index, found.runtime, found.id)
                // the colon form carries the pod's slice in front of the id
                if let colon = name.firstIndex(of: colon), hasSuffix(name[..<colon], sliceSuffix),
                    let pod = podSlice(name[..<colon].dropLast(sliceSuffix.count))
                {
                    pods.append((index, pod.uid, pod.qos))
                }
                continue
            }
            if equal(name, kubepods) {
                kubepodsSeen = true
                continue
            }
            if hasSuffix(name, sliceSuffix) {
                let slice = name.dropLast(sliceSuffix.count)
                if let pod = podSlice(slice) {
                    pods.append((index, pod.uid, pod.qos))
                } else if let level = qosSlice(slice) {
                    qosLevel = (index, level)
                }
                continue
            }
            if kubepodsSeen, hasPrefix(name, podPrefix), let uid = podUID(name.dropFirst(podPrefix.count)) {
                // cgroupfs driver: /kubepods/<qos>/pod<uid>, Guaranteed pods right under /kubepods
                pods.append((index, uid, parent.flatMap { qosLevelName($0, includingKubepods: true) }))
                continue
            }
            if kubepodsSeen, let parent, equal(parent, kubepods), let level = qosLevelName(name, includingKubepods: false) {
                qosLevel = (index, level)
                continue
            }
            if unitSuffixes.contains(where: { hasSuffix(name, $0) && name.count > $0.count }) {
                unit = (index, name)
            }
        }

        let deepestPod = pods.last
        if let container, deepestPod.map({ $0.index <= container.index }) ?? true {
            identity.runtime = container.runtime
            identity.containerID = string(container.id)
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
            identity.systemdUnit = string(unit.name)
        }
        return identity
    }

    /// The runtime prefixes of container cgroups (systemd driver `<prefix>-<id>.scope`,
    /// and the same names without `.scope` under the cgroupfs drivers of CRI-O and podman).
    private static let prefixes: [(prefix: [UInt8], runtime: TargetIdentity.Runtime)] = [
        (bytes("cri-containerd-"), .containerd),
        (bytes("docker-"), .docker),
        (bytes("crio-"), .crio),
        (bytes("libpod-"), .podman),
    ]

    /// Monitors that sit beside containers in their own cgroups: not containers.
    private static let monitorPrefixes = [bytes("crio-conmon-"), bytes("libpod-conmon-")]

    /// Runtime prefixes of containerd's systemd-less form `<slice>:<prefix>:<id>`.
    private static let colonPrefixes: [(prefix: [UInt8], runtime: TargetIdentity.Runtime)] = [
        (bytes("cri-containerd"), .containerd), (bytes("crio"), .crio), (bytes("docker"), .docker), (bytes("libpod"), .podman),
    ]

    /// Parents under which a bare id is a container of a known runtime.
    private static let bareParents: [(parent: [UInt8], runtime: TargetIdentity.Runtime)] = [
        (bytes("docker"), .docker), (bytes("k8s.io"), .containerd), (bytes("default"), .containerd),
    ]

    private static func containerName(
        _ name: Name, parent: Name?, parentIsPod: Bool
    ) -> (runtime: TargetIdentity.Runtime?, id: Name)? {
        if name.contains(colon) {
            let parts = name.split(separator: colon, omittingEmptySubsequences: false)
            guard parts.count == 3, isContainerID(parts[2]),
                let runtime = colonPrefixes.first(where: { equal(parts[1], $0.prefix) })?.runtime
            else { return nil }
            return (runtime, parts[2])
        }
        if isContainerID(name) {
            if let parent, let known = bareParents.first(where: { equal(parent, $0.parent) }) { return (known.runtime, name) }
            return parentIsPod ? (nil, name) : nil
        }
        if monitorPrefixes.contains(where: { hasPrefix(name, $0) }) { return nil }
        let base = hasSuffix(name, scopeSuffix) ? name.dropLast(scopeSuffix.count) : name
        for (prefix, runtime) in prefixes where hasPrefix(base, prefix) {
            let id = base.dropFirst(prefix.count)
            if isContainerID(id) { return (runtime, id) }
        }
        return nil
    }

    /// A full container id: 64 lower-case hex digits (short ids are never in cgroup names).
    static func isContainerID(_ name: Name) -> Bool {
        name.count == 64 && name.allSatisfy(isLowerHex)
    }

    /// A pod-level slice of the kubelet's systemd driver, without ".slice":
    /// `kubepods[-<qos>]-pod<uid>`, possibly under a prefix of the kubelet's
    /// cgroup root (kind's `kubelet-kubepods-…`).
    private static func podSlice(_ slice: Name) -> (uid: String, qos: TargetIdentity.QoSClass?)? {
        // the UID is the name's tail, after the last "-pod"
        var marker = slice.endIndex - dashPod.count
        while marker >= slice.startIndex, !slice[marker..<marker + dashPod.count].elementsEqual(dashPod) { marker -= 1 }
        guard marker >= slice.startIndex, let uid = podUID(slice[(marker + dashPod.count)...]) else { return nil }
        let tokens = slice[..<marker].split(separator: dash)
        guard let last = tokens.last, tokens.contains(where: { equal($0, kubepods) }) else { return nil }
        return qosLevelName(last, includingKubepods: true).map { (uid, $0) }
    }

    /// A QoS-level slice (`kubepods-burstable`), without ".slice".
    private static func qosSlice(_ slice: Name) -> TargetIdentity.QoSClass? {
        let tokens = slice.split(separator: dash)
        guard tokens.count >= 2, equal(tokens[tokens.count - 2], kubepods) else { return nil }
        return qosLevelName(tokens[tokens.count - 1], includingKubepods: false)
    }

    /// The QoS class a level's name stands for; `kubepods` itself is the level
    /// of Guaranteed pods (they have none of their own).
    private static func qosLevelName(_ name: Name, includingKubepods: Bool) -> TargetIdentity.QoSClass? {
        if equal(name, burstable) { return .burstable }
        if equal(name, besteffort) { return .besteffort }
        return includingKubepods && equal(name, kubepods) ? .guaranteed : nil
    }

    /// A pod UID as the kubelet writes it in a cgroup name, returned with
    /// dashes: an 8-4-4-4-12 UUID with '-' (cgroupfs) or '_' (systemd, which
    /// reserves '-' for its hierarchy), or 32 hex digits (static pods, whose
    /// UID is a hash of the manifest).
    static func podUID(_ text: Name) -> String? {
        if text.count == 32 { return text.allSatisfy(isLowerHex) ? string(text) : nil }
        guard text.count == 36 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, byte) in text.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard byte == dash || byte == UInt8(ascii: "_") else { return nil }
                out.append(dash)
            } else {
                guard isLowerHex(byte) else { return nil }
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func podUID(_ text: Substring) -> String? { podUID(Name(text.utf8)) }

    private static let unitSuffixes = [bytes(".service"), bytes(".scope"), bytes(".socket"), bytes(".mount"), bytes(".swap")]
    private static let slash = UInt8(ascii: "/")
    private static let colon = UInt8(ascii: ":")
    private static let dash = UInt8(ascii: "-")
    private static let dot = bytes(".")
    private static let dotDot = bytes("..")
    private static let kubepods = bytes("kubepods")
    private static let burstable = bytes("burstable")
    private static let besteffort = bytes("besteffort")
    private static let podPrefix = bytes("pod")
    private static let dashPod = bytes("-pod")
    private static let sliceSuffix = bytes(".slice")
    private static let scopeSuffix = bytes(".scope")

    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    private static func string(_ name: Name) -> String { String(decoding: name, as: UTF8.self) }
    private static func equal(_ name: Name, _ text: [UInt8]) -> Bool { name.elementsEqual(text) }

    private static func hasPrefix(_ name: Name, _ prefix: [UInt8]) -> Bool {
        name.count >= prefix.count && name.prefix(prefix.count).elementsEqual(prefix)
    }

    private static func hasSuffix(_ name: Name, _ suffix: [UInt8]) -> Bool {
        name.count >= suffix.count && name.suffix(suffix.count).elementsEqual(suffix)
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}
