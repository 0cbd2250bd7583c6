#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// A memory knob's value as cgroupfs spells it: a byte count or "max".
public enum MemoryKnob: Sendable, Hashable, CustomStringConvertible {
    case bytes(UInt64)
    case max

    /// "max", and v1's PAGE_COUNTER_MAX in bytes (about 2^63), mean no limit.
    public init?(parsing text: String) {
        let value = text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(String.init) ?? ""
        if value == "max" {
            self = .max
        } else if let bytes = UInt64(value) {
            self = bytes >= (1 << 62) ? .max : .bytes(bytes)
        } else {
            return nil
        }
    }

    /// What to write into the file.
    public var description: String {
        switch self {
        case .bytes(let value): String(value)
        case .max: "max"
        }
    }

    public var bytes: UInt64? {
        if case .bytes(let value) = self { return value }
        return nil
    }
}

/// PSI of one cgroup (memory.pressure) or the host (/proc/pressure/memory).
public struct MemoryPressure: Sendable, Hashable {
    /// Total time some task stalled on memory, microseconds since boot/creation.
    public var someTotalMicroseconds: UInt64
    public var someAvg10: Double
    /// Total time all tasks stalled at once; nil where the file has no "full" line.
    public var fullTotalMicroseconds: UInt64?

    /// Parses "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull …".
    @_spi(Fuzz) public static func parse(_ text: String) -> MemoryPressure? {
        var some: (avg10: Double, total: UInt64)?
        var full: UInt64?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let kind = fields.first else { continue }
            var avg10: Double?
            var total: UInt64?
            for field in fields.dropFirst() {
                if field.hasPrefix("avg10=") { avg10 = Double(field.dropFirst(6)) }
                if field.hasPrefix("total=") { total = UInt64(field.dropFirst(6)) }
            }
            if kind == "some", let avg10, let total { some = (avg10, total) }
            if kind == "full", let total { full = total }
        }
        guard let some else { return nil }
        return MemoryPressure(someTotalMicroseconds: some.total, someAvg10: some.avg10, fullTotalMicroseconds: full)
    }
}

/// memory.stat as name → bytes (v1's counts of pages, such as pgfault, are
/// kept as they are; only byte fields are used here).
public struct MemoryStat: Sendable, Hashable {
    public var values: [String: UInt64]

    public subscript(_ key: String) -> UInt64? { values[key] }

    @_spi(Fuzz) public static func parse(_ text: String) -> MemoryStat? {
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let value = UInt64(fields[1]) else { continue }
            values[String(fields[0])] = value
        }
        return values.isEmpty ? nil : MemoryStat(values: values)
    }

    /// Memory the kernel can drop or write back without swap: the file LRU
    /// lists (page cache, not shmem, which lives on the anon lists) and
    /// reclaimable slab. v1 spells them total_* for the hierarchy.
    public var reclaimableBytes: UInt64 {
        if let active = self["total_active_file"], let inactive = self["total_inactive_file"] {
            return active + inactive
        }
        return (self["active_file"] ?? 0) + (self["inactive_file"] ?? 0) + (self["slab_reclaimable"] ?? 0)
    }

    /// Anonymous memory (v2 "anon", v1 "total_rss").
    public var anonBytes: UInt64? { self["anon"] ?? self["total_rss"] }
}

/// An error on one file of a memory cgroup: which file and what went wrong.
public struct CgroupFileError: Error, CustomStringConvertible, Sendable, Hashable {
    public enum Code: String, Sendable, Hashable {
        /// The cgroup directory does not exist (any more).
        case cgroupMissing = "cgroup_missing"
        /// A cgroup v2 group without the memory controller (no memory.* knobs).
        case memoryControllerMissing = "memory_controller_missing"
        /// The operation exists only on cgroup v2 (memory.high, memory.pressure).
        case unsupportedOnV1 = "cgroup_v1"
        case unreadable
        case malformed
        case unwritable
        /// A path that leaves the cgroup root (`..`, `.`, a symlink out):
        /// never opened, whatever named it (an event, the state file).
        case unsafePath = "unsafe_path"
    }

    public var code: Code
    public var path: String
    public var detail: String

    public init(_ code: Code, path: String, detail: String) {
        self.code = code
        self.path = path
        self.detail = detail
    }

    public var description: String { "\(path): \(detail)" }
}

/// One memory cgroup's files, under any cgroupfs-shaped root (the host's
/// /sys/fs/cgroup, a container's /host/sys/fs/cgroup, a test's temp tree).
/// The version is told from the files themselves, per group: a hybrid node
/// has v1 memory groups and memory-less v2 groups side by side.
public struct CgroupMemoryFiles: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// cgroup v1 memory controller: usage_in_bytes, limit_in_bytes, stat.
        case v1
        /// cgroup v2 with the memory controller: current, max, high, pressure, stat.
        case v2
        /// cgroup v2 without the memory controller (a hybrid node's
        /// /sys/fs/cgroup/unified): memory.pressure at most, no knobs.
        case v2WithoutMemoryController = "v2_without_memory_controller"
    }

    /// The group's directory, absolute.
    public let directory: String
    public let kind: Kind

    /// Opens the group at `directory` and tells its kind from the files there.
    public init(directory: String) throws(CgroupFileError) {
        let trimmed = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.directory = trimmed
        if access(trimmed + "/memory.current", F_OK) == 0 {
            kind = .v2
        } else if access(trimmed + "/memory.usage_in_bytes", F_OK) == 0 {
            kind = .v1
        } else if access(trimmed + "/cgroup.controllers", F_OK) == 0 {
            kind = .v2WithoutMemoryController
        } else {
            let exists = inodeNumber(trimmed) != nil
            throw CgroupFileError(
                .cgroupMissing, path: trimmed,
                detail: exists ? "not a memory cgroup (no memory.current, memory.usage_in_bytes or cgroup.controllers)" : "no such cgroup")
        }
    }

    /// A group by its path relative to a hierarchy's mount point ("/kubepods/…").
    /// Paths come from the kernel, but the files written are the host's: a
    /// `.` or `..` component, or a directory that resolves outside `root`
    /// (a symlink), is refused before anything is opened.
    public init(root: String, path: String) throws(CgroupFileError) {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        if path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
            throw CgroupFileError(.unsafePath, path: path, detail: "a cgroup path with '.' or '..' in it")
        }
        let directory = path == "/" || path.isEmpty ? base : base + (path.hasPrefix("/") ? path : "/" + path)
        try Self.requireInside(root: base, directory)
        try self.init(directory: directory)
    }

    /// Refuses `directory` unless, symlinks resolved, it is `root` or below it.
    /// A directory that does not exist is left to the caller (cgroup_missing).
    public static func requireInside(root: String, _ directory: String) throws(CgroupFileError) {
        guard let resolvedRoot = realPath(root), let resolved = realPath(directory) else { return }
        guard resolved == resolvedRoot || resolved.hasPrefix(resolvedRoot == "/" ? "/" : resolvedRoot + "/") else {
            throw CgroupFileError(
                .unsafePath, path: directory, detail: "resolves to \(resolved), outside the cgroup root \(resolvedRoot)")
        }
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The directory's inode: the cgroup id on 64-bit kernels, and how a
    /// recycled path (a new container under an old name) is told apart.
    public func inode() throws(CgroupFileError) -> UInt64 {
        guard let inode = inodeNumber(directory) else {
            throw CgroupFileError(.cgroupMissing, path: directory, detail: "no such cgroup")
        }
        return inode
    }

    /// The group's page counter: memory.current (v2), memory.usage_in_bytes (v1).
    public func usage() throws(CgroupFileError) -> UInt64 {
        let file = try memoryFile(v2: "memory.current", v1: "memory.usage_in_bytes")
        guard case .bytes(let value)? = MemoryKnob(parsing: try read(file)) else {
            throw CgroupFileError(.malformed, path: file, detail: "expected a byte count")
        }
        return value
    }

    /// The hard limit: memory.max (v2), memory.limit_in_bytes (v1).
    public func limit() throws(CgroupFileError) -> MemoryKnob {
        let file = try memoryFile(v2: "memory.max", v1: "memory.limit_in_bytes")
        return try knob(file)
    }

    /// memory.high (v2 only).
    public func high() throws(CgroupFileError) -> MemoryKnob {
        try knob(try v2File("memory.high"))
    }

    /// memory.high exactly as the file says it ("max\n" → "max"): what a
    /// restore writes back.
    public func highText() throws(CgroupFileError) -> String {
        let file = try v2File("memory.high")
        let text = try read(file).trimmingWhitespace()
        guard MemoryKnob(parsing: text) != nil else {
            throw CgroupFileError(.malformed, path: file, detail: "expected a byte count or 'max', found '\(text)'")
        }
        return text
    }

    public func writeHigh(_ value: MemoryKnob) throws(CgroupFileError) {
        try writeHigh(text: value.description)
    }

    public func writeHigh(text: String) throws(CgroupFileError) {
        let file = try v2File("memory.high")
        // O_TRUNC: a no-op on cgroupfs (as for a shell's `echo >`), and what
        // keeps a regular file of a test tree from keeping a longer old value's tail
        // O_NOFOLLOW: a symlink planted in place of the knob is not followed
        let fd = open(file, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw CgroupFileError(
                errno == ENOENT ? .cgroupMissing : .unwritable, path: file,
                detail: "cannot open to write '\(text)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = text.withCString { write(fd, $0, strlen($0)) }
        guard written == text.utf8.count else {
            throw CgroupFileError(
                .unwritable, path: file, detail: "cannot write '\(text)': \(String(cString: strerror(errno)))")
        }
    }

    /// memory.pressure (v2, with or without the memory controller: PSI is per cgroup).
    public func pressure() throws(CgroupFileError) -> MemoryPressure {
        guard kind != .v1 else {
            throw CgroupFileError(.unsupportedOnV1, path: directory + "/memory.pressure", detail: "cgroup v1 has no memory.pressure")
        }
        let file = directory + "/memory.pressure"
        guard let value = MemoryPressure.parse(try read(file)) else {
            throw CgroupFileError(.malformed, path: file, detail: "expected 'some avg10=… total=…'")
        }
        return value
    }

    public func memoryStat() throws(CgroupFileError) -> MemoryStat {
        let file = try memoryFile(v2: "memory.stat", v1: "memory.stat")
        guard let value = MemoryStat.parse(try read(file)) else {
            throw CgroupFileError(.malformed, path: file, detail: "expected 'name value' lines")
        }
        return value
    }

    /// The `high` count of memory.events.local (5.2+; else memory.events):
    /// how many times the kernel met a charge over this group's memory.high
    /// (v2 only) since the group was created. The local file, because
    /// memory.events also counts descendants breaching their own memory.high
    /// (a container's, under a capped pod), which says nothing about ours.
    public func highEvents() throws(CgroupFileError) -> UInt64 {
        let local = try v2File("memory.events.local")
        let file = access(local, F_OK) == 0 ? local : try v2File("memory.events")
        guard let value = MemoryStat.parse(try read(file))?["high"] else {
            throw CgroupFileError(.malformed, path: file, detail: "expected a 'high N' line")
        }
        return value
    }

    /// The part of `usage` the kernel cannot reclaim without swap: usage less
    /// the file LRU lists and reclaimable slab. memory.high below it would only
    /// stall the group, never shrink it.
    public func nonReclaimable(usage: UInt64) throws(CgroupFileError) -> UInt64 {
        let reclaimable = try memoryStat().reclaimableBytes
        return usage > reclaimable ? usage - reclaimable : 0
    }

    private func memoryFile(v2: String, v1: String) throws(CgroupFileError) -> String {
        switch kind {
        case .v2: return directory + "/" + v2
        case .v1: return directory + "/" + v1
        case .v2WithoutMemoryController:
            throw CgroupFileError(
                .memoryControllerMissing, path: directory + "/" + v2,
                detail: "cgroup v2 group without the memory controller")
        }
    }

    private func v2File(_ name: String) throws(CgroupFileError) -> String {
        switch kind {
        case .v2: return directory + "/" + name
        case .v1: throw CgroupFileError(.unsupportedOnV1, path: directory + "/" + name, detail: "cgroup v1 has no \(name)")
        case .v2WithoutMemoryController:
            throw CgroupFileError(
                .memoryControllerMissing, path: directory + "/" + name, detail: "cgroup v2 group without the memory controller")
        }
    }

    private func knob(_ file: String) throws(CgroupFileError) -> MemoryKnob {
        let text = try read(file)
        guard let value = MemoryKnob(parsing: text) else {
            throw CgroupFileError(.malformed, path: file, detail: "expected a byte count or 'max', found '\(text.trimmingWhitespace())'")
        }
        return value
    }

    private func read(_ file: String) throws(CgroupFileError) -> String {
        do {
            return try readText(file, limit: 1 << 16)
        } catch {
            throw CgroupFileError(error.errno == ENOENT ? .cgroupMissing : .unreadable, path: file, detail: "\(error)")
        }
    }
}

private func inodeNumber(_ path: String) -> UInt64? {
    var info = stat()
    return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
}

