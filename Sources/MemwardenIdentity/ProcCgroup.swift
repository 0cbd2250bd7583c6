import MemwardenModel

/// Reads a process's memory cgroup from /proc/PID/cgroup: the v1 `memory`
/// line on v1 and hybrid nodes, the `0::` line on cgroup v2. Used when the
/// kernel's cgroup id is not (yet) known for a record, and by `identify --pid`.
public enum ProcCgroup {
    public static func memoryCgroupPath(pid: Int32, procRoot: String = "/proc", version: CgroupHierarchy.Version) -> String? {
        guard let text = try? readText("\(procRoot)/\(pid)/cgroup") else { return nil }
        return parse(text, version: version)
    }

    /// The memory cgroup path of a process, or an error naming the pid. With
    /// no known hierarchy the v1 memory line wins over the v2 line (on a
    /// hybrid node the v2 line names a group without the memory controller).
    public static func read(pid: Int32, procRoot: String = "/proc", version: CgroupHierarchy.Version?) throws(IdentityError) -> String {
        let file = "\(procRoot)/\(pid)/cgroup"
        let text: String
        do {
            text = try readText(file)
        } catch {
            throw IdentityError(.noSuchProcess, input: "\(pid)", detail: "no process \(pid): cannot read \(file) (\(error))")
        }
        let path: String?
        if let version {
            path = parse(text, version: version)
        } else {
            path = parse(text, version: .v1) ?? parse(text, version: .v2)
        }
        guard let path else {
            throw IdentityError(.noMemoryCgroup, input: "\(pid)", detail: "\(file) has no memory cgroup line")
        }
        return path
    }

    @_spi(Fuzz) public static func parse(_ text: String, version: CgroupHierarchy.Version) -> String? {
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
