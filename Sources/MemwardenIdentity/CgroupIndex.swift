#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Maps the kernel's memory cgroup ids (the cgroup directory's inode number on
/// 64-bit kernels) to paths in the memory hierarchy, by walking cgroupfs.
/// Cached; a miss triggers a new walk at most once per `rescanInterval`, since
/// ids of cgroups created after the last walk are expected, and a cgroup that
/// is gone must not cost a walk per record.
public struct CgroupIndex: Sendable {
    public let hierarchy: CgroupHierarchy
    private var paths: [UInt64: String] = [:]
    private var limits: [String: (limit: MemoryLimit, readAt: UInt64)] = [:]
    private var lastScan: UInt64 = 0
    let rescanInterval: UInt64 = 1_000_000_000
    let limitTTL: UInt64 = 30_000_000_000

    public init(hierarchy: CgroupHierarchy) {
        self.hierarchy = hierarchy
    }

    /// The cgroup's path relative to the hierarchy's root ("/" for the root), or nil if unknown.
    public mutating func path(for id: UInt64, now: UInt64 = monotonicNanoseconds()) -> String? {
        if let path = paths[id] { return path }
        guard id != 0, now &- lastScan >= rescanInterval || lastScan == 0 else { return nil }
        rescan(now: now)
        return paths[id]
    }

    /// Learns the id of a cgroup created since the last walk from a path found
    /// elsewhere (a process's /proc/PID/cgroup), when that directory's inode
    /// is the id: a container's first records would otherwise name no cgroup
    /// until the next walk. Returns whether the id now resolves to `path`.
    @discardableResult
    public mutating func learn(path: String, for id: UInt64) -> Bool {
        guard id != 0, path.hasPrefix("/"), !path.contains("/..") else { return false }
        if let known = paths[id] { return known == path }
        var info = stat()
        guard stat(hierarchy.mountPoint + (path == "/" ? "" : path), &info) == 0, UInt64(info.st_ino) == id else {
            return false
        }
        paths[id] = path
        return true
    }

    /// The host path of a path read through a private cgroup namespace
    /// ("/../../kubepods/…/<id>": relative to the reader's namespace root): the
    /// one indexed cgroup whose path ends with the components after the "..".
    /// nil when none or several do (then the path is kept as read).
    public mutating func hostPath(namespaced path: String, now: UInt64 = monotonicNanoseconds()) -> String? {
        let parts = path.split(separator: "/")
        guard parts.contains("..") else { return nil }
        let tail = parts.filter { $0 != ".." && $0 != "." }
        guard !tail.isEmpty else { return nil }
        let suffix = "/" + tail.joined(separator: "/")
        func find() -> (match: String?, ambiguous: Bool) {
            var match: String?
            for candidate in paths.values where candidate.hasSuffix(suffix) {
                if match != nil { return (nil, true) }
                match = candidate
            }
            return (match, false)
        }
        let first = find()
        if first.match != nil || first.ambiguous { return first.match }
        guard now &- lastScan >= rescanInterval || lastScan == 0 else { return nil }
        rescan(now: now)
        return find().match
    }

    /// Walks the hierarchy; directory entries carry inode numbers, so no stat per cgroup.
    public mutating func rescan(now: UInt64 = monotonicNanoseconds()) {
        lastScan = now
        var found: [UInt64: String] = [:]
        var rootStat = stat()
        if stat(hierarchy.mountPoint, &rootStat) == 0 {
            found[UInt64(rootStat.st_ino)] = "/"
        }
        var stack: [(directory: String, relative: String)] = [(hierarchy.mountPoint, "")]
        while let (directory, relative) = stack.popLast() {
            guard let dir = opendir(directory) else { continue }
            while let entry = readdir(dir) {
                guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let childRelative = relative + "/" + name
                found[UInt64(entry.pointee.d_ino)] = childRelative
                stack.append((directory + "/" + name, childRelative))
            }
            closedir(dir)
        }
        paths = found
    }

    /// The limit that applies to a cgroup: the lowest of its own and its
    /// ancestors' (a pod-level or slice-level limit bounds a container with none).
    public mutating func effectiveLimit(
        path: String, own: MemoryLimit, now: UInt64 = monotonicNanoseconds()
    ) -> MemoryLimit {
        var best = own.bytes
        var current = path
        while current != "/" && !current.isEmpty {
            guard let slash = current.lastIndex(of: "/") else { break }
            current = slash == current.startIndex ? "/" : String(current[..<slash])
            if current == "/" { break }  // the root has no limit file
            if case .bytes(let value) = fileLimit(current, now: now) { best = min(best ?? .max, value) }
        }
        if let best { return .bytes(best) }
        return own == .unknown ? .unknown : .unlimited
    }

    private mutating func fileLimit(_ path: String, now: UInt64) -> MemoryLimit {
        if let cached = limits[path], now &- cached.readAt < limitTTL { return cached.limit }
        let limit: MemoryLimit
        if let text = try? readText(hierarchy.mountPoint + path + "/" + hierarchy.limitFile) {
            limit = Self.parseLimit(text)
        } else {
            limit = .unknown
        }
        limits[path] = (limit, now)
        return limit
    }

    /// "max" (v2) and v1's PAGE_COUNTER_MAX in bytes (about 2^63) mean no limit.
    static func parseLimit(_ text: String) -> MemoryLimit {
        let value = text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(String.init) ?? ""
        if value == "max" { return .unlimited }
        guard let bytes = UInt64(value) else { return .unknown }
        return bytes >= (1 << 62) ? .unlimited : .bytes(bytes)
    }
}
