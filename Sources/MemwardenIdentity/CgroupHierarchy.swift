import MemwardenModel

/// Where the memory controller's cgroup hierarchy is mounted: cgroup v2's
/// unified tree, or on v1 and hybrid nodes the v1 `memory` hierarchy. Limits
/// and charges live there, so paths and limits are read there.
public struct CgroupHierarchy: Sendable, Hashable {
    public enum Version: Sendable, Hashable {
        case v1
        case v2
    }

    public var mountPoint: String
    public var version: Version

    public init(mountPoint: String, version: Version) {
        self.mountPoint = mountPoint
        self.version = version
    }

    /// The file holding a cgroup's own hard limit.
    public var limitFile: String { version == .v2 ? "memory.max" : "memory.limit_in_bytes" }

    /// Finds the memory hierarchy from a mountinfo file (default: this process's).
    /// `cgroupRoot` replaces the host's /sys/fs/cgroup prefix, for running in a
    /// container with the host's cgroupfs mounted elsewhere (e.g. /host/sys/fs/cgroup).
    public static func detect(mountinfo: String = "/proc/self/mountinfo", cgroupRoot: String? = nil) -> CgroupHierarchy? {
        guard let text = try? readText(mountinfo) else { return nil }
        return parse(mountinfo: text, cgroupRoot: cgroupRoot, controllers: { path in
            (try? readText("\(path)/cgroup.controllers")) ?? ""
        })
    }

    static func parse(
        mountinfo: String, cgroupRoot: String?, controllers: (String) -> String
    ) -> CgroupHierarchy? {
        var unified: String?
        for line in mountinfo.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " ")
            let tail = halves[1].split(separator: " ")
            guard fields.count >= 5, tail.count >= 3 else { continue }
            let mountPoint = relocate(unescape(String(fields[4])), cgroupRoot: cgroupRoot)
            if tail[0] == "cgroup", tail[2].split(separator: ",").contains("memory") {
                return CgroupHierarchy(mountPoint: mountPoint, version: .v1)
            }
            if tail[0] == "cgroup2", unified == nil {
                unified = mountPoint
            }
        }
        // cgroup2 holds the memory controller only where it is enabled there
        // (a hybrid node's /sys/fs/cgroup/unified has no controllers)
        if let unified, controllers(unified).split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("memory") {
            return CgroupHierarchy(mountPoint: unified, version: .v2)
        }
        return nil
    }

    private static func relocate(_ path: String, cgroupRoot: String?) -> String {
        guard let cgroupRoot, path.hasPrefix("/sys/fs/cgroup") else { return path }
        return cgroupRoot + path.dropFirst("/sys/fs/cgroup".count)
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count + 0,
                let value = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(value)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
