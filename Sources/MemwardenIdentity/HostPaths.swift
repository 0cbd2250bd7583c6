#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Where the host's procfs and cgroupfs are mounted. On the host itself:
/// /proc and /sys/fs/cgroup. In a container (a DaemonSet pod), the host's are
/// mounted elsewhere, e.g. /host/proc and /host/sys/fs/cgroup, since the
/// container's own /proc and /sys/fs/cgroup show only its own processes and
/// cgroup namespace.
public struct HostPaths: Sendable, Hashable {
    public static let defaultProc = "/proc"
    public static let defaultCgroup = "/sys/fs/cgroup"

    public var proc: String
    public var cgroup: String

    /// Trailing slashes are dropped ("/host/proc/" is "/host/proc").
    public init(proc: String = HostPaths.defaultProc, cgroup: String = HostPaths.defaultCgroup) {
        self.proc = Self.trimmed(proc)
        self.cgroup = Self.trimmed(cgroup)
    }

    /// Checks that both roots are directories, naming the one that is not.
    public func validate() throws(IdentityError) {
        for (option, path) in [("procfs root", proc), ("cgroupfs root", cgroup)] {
            var info = stat()
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
                throw IdentityError(.badHostRoot, input: path, detail: "the \(option) \(path) is not a directory")
            }
        }
    }

    private static func trimmed(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }
}

/// Why an identity could not be read, naming the input.
public struct IdentityError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// /proc/PID does not exist (or is not readable).
        case noSuchProcess
        /// /proc/PID/cgroup has neither a v1 memory line nor a v2 line.
        case noMemoryCgroup
        /// A cgroup path that is not absolute.
        case badCgroupPath
        /// A host root that is not a directory.
        case badHostRoot
    }

    public var code: Code
    /// The pid, path or file the error is about.
    public var input: String
    public var detail: String

    public init(_ code: Code, input: String, detail: String) {
        self.code = code
        self.input = input
        self.detail = detail
    }

    public var description: String { detail }
}

extension CgroupHierarchy {
    /// The memory hierarchy under a host cgroupfs root: cgroup v2 when the
    /// root's cgroup.controllers lists memory, else the v1 `memory` hierarchy
    /// below it. When the root shows neither (a non-standard mount point), this
    /// process's mountinfo decides, relocated under the root.
    public static func detect(hostPaths: HostPaths) -> CgroupHierarchy? {
        if let probed = probe(cgroupRoot: hostPaths.cgroup, read: { try? readText($0) }) { return probed }
        return detect(cgroupRoot: hostPaths.cgroup == HostPaths.defaultCgroup ? nil : hostPaths.cgroup)
    }

    /// `read` returns a file's text, or nil when it does not exist.
    static func probe(cgroupRoot root: String, read: (String) -> String?) -> CgroupHierarchy? {
        let controllers = read(root + "/cgroup.controllers")?.split(whereSeparator: { $0 == " " || $0 == "\n" })
        if controllers?.contains("memory") == true { return CgroupHierarchy(mountPoint: root, version: .v2) }
        // v1: every memory cgroup, the root included, has memory.usage_in_bytes
        if read(root + "/memory/memory.usage_in_bytes") != nil {
            return CgroupHierarchy(mountPoint: root + "/memory", version: .v1)
        }
        return nil
    }
}
