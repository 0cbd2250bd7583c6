import ArgumentParser
import Logging

#if canImport(Glibc)
import Glibc
#endif
import MemwardenIdentity
import MemwardenModel

/// `memwarden identify --pid PID | --cgroup-path PATH`: what the agent would
/// say about a process's or a cgroup's owner, as one JSON object.
struct IdentifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identify",
        abstract: "Print the identity of a process or a memory cgroup (runtime, container, pod, systemd unit) as one JSON object.",
        discussion: """
            The object always has the keys cgroup, runtime, container_id, pod_uid, qos and systemd_unit \
            (null when the cgroup path does not say), plus pod, namespace, container and labels when pod \
            metadata is known (in a cluster, or with --kube-api: the node's pods are listed once). Unknown path shapes give the cgroup path alone (docs/identity.md). \
            Exit 1 naming the input when the process does not exist or a path is not absolute.
            """)

    @Option(help: "A process id, as the host's procfs (--host-proc) numbers it.")
    var pid: Int32?

    @Option(help: "A memory cgroup path as /proc/PID/cgroup shows it (\"/kubepods/…\"), or a directory under --host-cgroup.")
    var cgroupPath: String?

    @Option(help: "Where the host's procfs is mounted (in a container, e.g. /host/proc).")
    var hostProc: String = HostPaths.defaultProc

    @Option(help: "Where the host's cgroupfs is mounted (in a container, e.g. /host/sys/fs/cgroup).")
    var hostCgroup: String = HostPaths.defaultCgroup

    @OptionGroup var kubernetes: KubernetesOptions

    @Option(help: "The node whose pods to list (default: $NODE_NAME, else the host name).")
    var nodeName: String?

    func validate() throws {
        switch (pid, cgroupPath) {
        case (nil, nil): throw ValidationError("give --pid PID or --cgroup-path PATH")
        case (.some, .some): throw ValidationError("give either --pid or --cgroup-path, not both")
        case (.some(let pid), nil) where pid <= 0: throw ValidationError("--pid must be a positive process id: \(pid)")
        case (nil, .some(let path)) where !path.hasPrefix("/"):
            throw ValidationError("--cgroup-path must be absolute (start with '/'): \(path)")
        default: break
        }
    }

    func run() async throws {
        let logger = Logger(label: "memwarden.identify")
        let pods = try await kubernetes.listPods(node: NodeName.resolve(nodeName), within: .seconds(20), logger: logger)
        let hostPaths = HostPaths(proc: hostProc, cgroup: hostCgroup)
        let identity: TargetIdentity
        do {
            try hostPaths.validate()
            let hierarchy = CgroupHierarchy.detect(hostPaths: hostPaths)
            var resolver = IdentityResolver(hostPaths: hostPaths, hierarchy: hierarchy, metadata: pods)
            if let pid {
                identity = try resolver.identity(pid: pid)
            } else {
                identity = resolver.identity(cgroupPath: Self.hierarchyPath(cgroupPath ?? "/", hierarchy: hierarchy))
            }
        } catch {
            let line = "memwarden: \(error)\n"
            _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            Glibc.exit(1)
        }
        var line = JSONLine()
        line.addIdentity(identity, nulls: true, labels: true)
        print(line.finish())
    }

    /// A directory under the hierarchy's mount point ("/sys/fs/cgroup/memory/kubepods/…")
    /// names the cgroup "/kubepods/…", as /proc/PID/cgroup would.
    static func hierarchyPath(_ path: String, hierarchy: CgroupHierarchy?) -> String {
        guard let mount = hierarchy?.mountPoint, mount != "/" else { return path }
        if path == mount { return "/" }
        if path.hasPrefix(mount + "/") { return String(path.dropFirst(mount.count)) }
        return path
    }
}
