import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenIdentity

/// Where the host's procfs and cgroupfs are, for an agent running in a
/// container (the Helm chart mounts them under /host).
struct HostOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Where the host's procfs is mounted (in a container, e.g. /host/proc).", valueName: "path"))
    var hostProc: String = HostPaths.defaultProc

    @Option(help: ArgumentHelp("Where the host's cgroupfs is mounted (in a container, e.g. /host/sys/fs/cgroup).", valueName: "path"))
    var hostCgroup: String = HostPaths.defaultCgroup

    /// The paths, or exit 1 with one line naming the bad one.
    func validated() throws -> HostPaths {
        let paths = HostPaths(proc: hostProc, cgroup: hostCgroup)
        do {
            try paths.validate()
        } catch {
            let text = "memwarden: \(error)\n"
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            throw ExitCode(1)
        }
        return paths
    }
}
