import Foundation
import Testing

@testable import MemwardenIdentity
@testable import MemwardenModel

/// The path shapes of real systems, each with the identity it must give. The
/// shapes come from the issue trackers and docs cited beside each case; the
/// ids and UIDs are made up here (only the shape matters).
struct CgroupPathIdentityTests {
    static let c1 = "1339b927ae75ad1197e9d4ec3c7499c37e6c57d662bd57e516af886be90b175d"
    static let c2 = "fc61e22a3a5227b8d41b62a16c9b9126b38f46fe7c15eb2ae26c8ee43d59a8f6"
    static let c3 = "1169ab368fda5518a9ef34cceb590612aaedf84b165bc6e8923f48893c477752"
    static let c4 = "5975bacd450427efa14763bacbc6efa6a25b52c4919c9ee09ff854e1bede25a6"
    static let uid = "64b622fd-1603-4567-9c37-e8df29f5d649"
    /// The same UID as the systemd driver writes it ('-' is systemd's hierarchy separator).
    static let uidSystemd = uid.replacingOccurrences(of: "-", with: "_")
    /// A static pod's UID: the kubelet's hash of the manifest, 32 hex digits.
    static let staticUID = "ee7a8513306beadcea245cabc617a9ea"

    struct Case: CustomTestStringConvertible, Sendable {
        var path: String
        var runtime: TargetIdentity.Runtime?
        var container: String?
        var pod: String?
        var qos: TargetIdentity.QoSClass?
        var unit: String?
        var testDescription: String { path.isEmpty ? "(empty)" : path }

        init(
            _ path: String, _ runtime: TargetIdentity.Runtime? = nil, container: String? = nil, pod: String? = nil,
            qos: TargetIdentity.QoSClass? = nil, unit: String? = nil
        ) {
            self.path = path
            self.runtime = runtime
            self.container = container
            self.pod = pod
            self.qos = qos
            self.unit = unit
        }

        var expected: TargetIdentity {
            TargetIdentity(cgroup: path, runtime: runtime, containerID: container, podUID: pod, qos: qos, systemdUnit: unit)
        }
    }

    static let cases: [Case] = [
        // --- docker
        // cgroupfs driver: ctrsploit/ctrsploit#280 (/proc/1/cgroup memory line), htop-dev/htop#1036
        Case("/docker/\(c1)", .docker, container: c1),
        // systemd driver: neuvector share/system/cgroup_test.go (TestDockerIDCentOS), google/cadvisor#1573
        Case("/system.slice/docker-\(c1).scope", .docker, container: c1),
        // a cgroup the container made below its own (Tetragon docs/cgroup-tracking.md: "even if a container
        // creates a cgroup hierarchy"); and systemd running inside a container
        Case("/docker/\(c1)/workers/1", .docker, container: c1),
        Case("/system.slice/docker-\(c1).scope/init.scope", .docker, container: c1),
        // kubelet + cri-dockerd, systemd driver: open-telemetry/opentelemetry-java#4733, kinvolk/traceloop#34
        Case(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidSystemd).slice/docker-\(c1).scope",
            .docker, container: c1, pod: uid, qos: .besteffort),

        // --- kubelet cgroupfs driver: bare ids, the runtime is not in the path
        // Qard/container-info test/fixtures, moby/moby#34584
        Case("/kubepods/besteffort/pod\(uid)/\(c1)", container: c1, pod: uid, qos: .besteffort),
        // sustainable-computing-io/kepler#684 (minikube)
        Case("/kubepods/burstable/pod\(uid)/\(c1)", container: c1, pod: uid, qos: .burstable),
        // Guaranteed pods have no QoS level: open-telemetry/opentelemetry-java#4733, CJLove/rt-operator notes (K3s)
        Case("/kubepods/pod\(uid)/\(c1)", container: c1, pod: uid, qos: .guaranteed),
        // static pods: the UID is a 32-hex hash (kubernetes/kubernetes#67537 "Generated UID")
        Case("/kubepods/burstable/pod\(staticUID)/\(c1)", container: c1, pod: staticUID, qos: .burstable),
        // nested below a container (Tetragon docs/cgroup-tracking.md)
        Case("/kubepods/burstable/pod\(uid)/\(c1)/sub", container: c1, pod: uid, qos: .burstable),

        // --- containerd
        // systemd driver: kubernetes/kubernetes#104039 (case 1)
        Case(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidSystemd).slice/cri-containerd-\(c2).scope",
            .containerd, container: c2, pod: uid, qos: .burstable),
        // Guaranteed, systemd driver: tkestack/vcuda-controller#19
        Case(
            "/kubepods.slice/kubepods-pod\(uidSystemd).slice/cri-containerd-\(c2).scope", .containerd, container: c2,
            pod: uid, qos: .guaranteed),
        // SystemdCgroup off with the systemd kubelet: "<slice>:cri-containerd:<id>", kubernetes/kubernetes#104039
        // (case 2), open-telemetry/opentelemetry-java#4507
        Case("/kubepods-besteffort-pod\(uidSystemd).slice:cri-containerd:\(c2)", .containerd, container: c2, pod: uid, qos: .besteffort),
        // the same below containerd.service (v1 controllers): open-telemetry/opentelemetry-java#4730,
        // open-telemetry/opentelemetry-ebpf-profiler#992
        Case(
            "/system.slice/containerd.service/kubepods-pod\(uidSystemd).slice:cri-containerd:\(c2)", .containerd,
            container: c2, pod: uid, qos: .guaranteed),
        Case(
            "/system.slice/containerd.service/kubepods-besteffort-pod\(uidSystemd).slice:cri-containerd:\(c2)",
            .containerd, container: c2, pod: uid, qos: .besteffort),
        // containerd namespaces as cgroup parents: containerd/containerd#3133 (k8s.io/<id>), containerd's
        // default namespace (ctr, nerdctl)
        Case("/k8s.io/\(c2)", .containerd, container: c2),
        Case("/default/\(c2)", .containerd, container: c2),
        // a CRI sandbox outside kubepods: containerd/cri#290
        Case("/system.slice/system-getty.slice/cri-containerd-\(c2).scope", .containerd, container: c2),
        // kind (kubelet cgroup root /kubelet): containerd/nri#227, both forms
        Case(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod\(uidSystemd).slice/cri-containerd-\(c2).scope",
            .containerd, container: c2, pod: uid, qos: .besteffort),
        Case("/kubelet-kubepods-besteffort-pod\(uidSystemd).slice:cri-containerd:\(c2)", .containerd, container: c2, pod: uid, qos: .besteffort),
        // kind node inside docker: the innermost container is the pod's (grafana/beyla#468)
        Case(
            "/docker/\(c1)/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod\(uidSystemd).slice/cri-containerd-\(c2).scope",
            .containerd, container: c2, pod: uid, qos: .besteffort),
        // read through a private cgroup namespace: grafana/beyla#468 ("0::/../cri-containerd-<id>.scope")
        Case("/../cri-containerd-\(c2).scope", .containerd, container: c2),

        // --- CRI-O
        // systemd driver: falcosecurity/falco#3630, opencontainers/runc#4620
        Case(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidSystemd).slice/crio-\(c3).scope", .crio,
            container: c3, pod: uid, qos: .burstable),
        // Guaranteed: CJLove/rt-operator notes (Kubernetes 1.25 + cri-o)
        Case("/kubepods.slice/kubepods-pod\(uidSystemd).slice/crio-\(c3).scope", .crio, container: c3, pod: uid, qos: .guaranteed),
        // cgroupfs driver names it crio-<id>: cri-o/cri-o#812, cri-o/cri-o#5511
        Case("/kubepods/burstable/pod\(uid)/crio-\(c3)", .crio, container: c3, pod: uid, qos: .burstable),
        // conmon is not a container: aquasecurity/tracee#5087, cri-o/cri-o#5511; its cgroup is pod level
        Case(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidSystemd).slice/crio-conmon-\(c3).scope",
            pod: uid, qos: .burstable),
        Case("/kubepods/burstable/pod\(uid)/crio-conmon-\(c3)", pod: uid, qos: .burstable),
        // minikube's crio node inside docker: kubernetes/minikube#11280
        Case(
            "/docker/\(c1)/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidSystemd).slice/crio-\(c3).scope",
            .crio, container: c3, pod: uid, qos: .besteffort),

        // --- podman
        // containers/crun#678, podman-container-tools/podman#5864
        Case("/machine.slice/libpod-\(c4).scope", .podman, container: c4),
        // with the /container leaf and inside a podman pod's slice (not a Kubernetes pod): alumet-dev/alumet#463
        Case("/machine.slice/libpod-\(c4).scope/container", .podman, container: c4),
        Case("/machine.slice/machine-libpod_pod_\(staticUID).slice/libpod-\(c4).scope/container", .podman, container: c4),
        // rootless, under the user's manager: podman-container-tools/podman#6734 (user@1000.service layout)
        Case("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(c4).scope", .podman, container: c4),
        // the cgroupfs manager's parent (podman inspect's CgroupPath; podman-container-tools/podman#319), and
        // docker running inside it: its mount units are nested in the podman container
        Case("/libpod_parent/libpod-\(c4)", .podman, container: c4),
        Case("/libpod_parent/libpod-\(c4)/system.slice/var-lib-docker-containers-\(c1)-shm.mount", .podman, container: c4),
        // conmon's own scope: not the container (tracee#5087; the podman conmon scope in /proc/PID/cgroup)
        Case("/machine.slice/libpod-conmon-\(c4).scope", .systemd, unit: "libpod-conmon-\(c4).scope"),

        // --- systemd on plain hosts
        Case("/system.slice/nginx.service", .systemd, unit: "nginx.service"),
        Case("/user.slice/user-1000.slice/session-3.scope", .systemd, unit: "session-3.scope"),
        Case("/init.scope", .systemd, unit: "init.scope"),
        // ctrsploit/ctrsploit#280 (the v2 line of a docker container's process on a hybrid host)
        Case("/system.slice/containerd.service", .systemd, unit: "containerd.service"),
        Case("/user.slice/user-1000.slice/user@1000.service", .systemd, unit: "user@1000.service"),
        // a unit's own subgroup (delegation) belongs to the unit
        Case("/system.slice/app.service/worker", .systemd, unit: "app.service"),
        // .mount units are not containers, even with a container id in their name: openshift/origin#12489,
        // google/cadvisor#1510, google/cadvisor#2226
        Case("/system.slice/var-lib-docker-containers-\(c1)-shm.mount", .systemd, unit: "var-lib-docker-containers-\(c1)-shm.mount"),
        Case("/system.slice/var-lib-docker-overlay2-\(c1)-merged.mount", .systemd, unit: "var-lib-docker-overlay2-\(c1)-merged.mount"),
        Case("/system.slice/sys-kernel-debug.mount", .systemd, unit: "sys-kernel-debug.mount"),
        // through a private cgroup namespace (man 7 cgroup_namespaces; moby/moby#34584)
        Case("/../../system.slice/nginx.service", .systemd, unit: "nginx.service"),

        // --- pod-level and QoS-level cgroups: not containers
        // kubeservice-stack/local-cloud-csi-driver#4 (/kubepods/besteffort/pod<uid>)
        Case("/kubepods/besteffort/pod\(uid)", pod: uid, qos: .besteffort),
        Case("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidSystemd).slice", pod: uid, qos: .besteffort),
        // CJLove/rt-operator notes: Guaranteed pod directories
        Case("/kubepods.slice/kubepods-pod\(uidSystemd).slice", pod: uid, qos: .guaranteed),
        Case("/kubepods/pod\(uid)", pod: uid, qos: .guaranteed),
        Case("/kubepods/burstable", qos: .burstable),
        Case("/kubepods.slice/kubepods-besteffort.slice", qos: .besteffort),
        Case("/kubepods"),
        Case("/kubepods.slice"),
        Case("/../../kubepods/besteffort/pod\(uid)/\(c1)", container: c1, pod: uid, qos: .besteffort),

        // --- unknown shapes: the path alone, never a guess
        Case(""),
        Case("/"),
        // this machine's sandbox: a 32-hex name that is not a pod
        Case("/process_api/22971693b536ba06ec4202cfbf56b49b"),
        // a bare id at the root (neuvector cgroup_test.go, TestDockerIDDebian): no parent says whose it is
        Case("/\(c1)"),
        Case("/lxc/\(c1)"),
        // short ids are never cgroup names; upper case is not an id
        Case("/docker/\(c1.prefix(12))"),
        Case("/docker/\(c1.uppercased())"),
        // a pod directory without a valid UID, and a pod directory outside kubepods
        Case("/kubepods/burstable/podnot-a-uid/\(c1)"),
        Case("/batch/pod\(uid)/\(c1)"),
        // a container scope with a truncated id is just a scope unit
        Case("/system.slice/docker-\(c1.dropLast()).scope", .systemd, unit: "docker-\(c1.dropLast()).scope"),
        Case("/kubepods-besteffort-pod\(uidSystemd).slice:unknown-runtime:\(c2)"),
    ]

    @Test(arguments: cases)
    func parsesRealShapes(_ example: Case) {
        #expect(CgroupPathIdentity.parse(example.path) == example.expected)
    }

    @Test func theCorpusIsLargeAndCoversEveryRuntimeAndQoS() {
        #expect(Self.cases.count >= 40)
        for runtime in TargetIdentity.Runtime.allCases {
            #expect(Self.cases.contains { $0.runtime == runtime }, "no case for \(runtime)")
        }
        for qos in TargetIdentity.QoSClass.allCases {
            #expect(Self.cases.contains { $0.qos == qos && $0.container != nil }, "no container case for \(qos)")
        }
    }

    @Test(arguments: [
        ("64b622fd-1603-4567-9c37-e8df29f5d649", "64b622fd-1603-4567-9c37-e8df29f5d649"),
        ("64b622fd_1603_4567_9c37_e8df29f5d649", "64b622fd-1603-4567-9c37-e8df29f5d649"),
        ("ee7a8513306beadcea245cabc617a9ea", "ee7a8513306beadcea245cabc617a9ea"),
    ])
    func podUIDsComeBackDashed(_ written: String, _ expected: String) {
        #expect(CgroupPathIdentity.podUID(written[...]) == expected)
    }

    @Test(arguments: ["64b622fd-1603-4567-9c37-e8df29f5d64", "64b622fd-1603-4567-9c37_e8df29f5d649x", "64B622FD-1603-4567-9C37-E8DF29F5D649", "64b622fd+1603-4567-9c37-e8df29f5d649", ""])
    func malformedPodUIDsAreRejected(_ written: String) {
        #expect(CgroupPathIdentity.podUID(written[...]) == nil)
    }
}
