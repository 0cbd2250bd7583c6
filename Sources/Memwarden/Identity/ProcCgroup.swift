/// Reads a process's memory cgroup from /proc/PID/cgroup: the v1 `memory`
/// line on v1 and hybrid nodes, the `0::` line on cgroup v2. Used when the
/// kernel's cgroup id is not (yet) known for a record.
public enum ProcCgroup {
    public static func memoryCgroupPath(pid: Int32, procRoot: String = "/proc", version: CgroupHierarchy.Version) -> String? {
        guard let text = try? readText("\(procRoot)/\(pid)/cgroup") else { return nil }
        return parse(text, version: version)
    }

    static func parse(_ text: String, version: CgroupHierarchy.Version) -> String? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            switch version {
            case .v1 where fields[1].split(separator: ",").contains("memory"):
                return String(fields[2])
            case .v2 where fields[0] == "0" && fields[1].isEmpty:
                return String(fields[2])
            default:
                continue
            }
        }
        return nil
    }
}
