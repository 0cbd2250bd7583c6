import MemwardenModel

/// Resolves each kernel record's memory cgroup once, before detection: its
/// path (the cgroup index by id, else the process's /proc/PID/cgroup), its
/// owner (container, pod, unit) and the limit that applies. Every later
/// stage (detection, budgets, the target table, the lines) takes the result.
///
/// Cached per cgroup id for a second: a fault storm sends thousands of
/// records a second for a few cgroups, and a second is also how fresh the
/// limits (read from the cgroup files) and a pod's metadata need to be. A
/// pod's cgroup whose pod the API server's watch does not know yet is not
/// cached: the watch may learn it after the first samples.
/// A value with a single owner, like IdentityResolver.
public struct RecordResolver: Sendable {
    public private(set) var cgroups: CgroupIndex?
    public let hostPaths: HostPaths
    public private(set) var identities: IdentityResolver
    /// Cgroup ids kept at most; the cache starts over when full.
    public let capacity: Int
    private var resolved: [UInt64: Entry] = [:]
    private struct Entry {
        var own: MemoryLimit
        var cgroup: ResolvedCgroup
        var resolvedAt: UInt64
    }

    static let freshnessNanoseconds: UInt64 = 1_000_000_000

    public init(
        hierarchy: CgroupHierarchy?, hostPaths: HostPaths = HostPaths(), metadata: (any PodMetadataSource)? = nil,
        capacity: Int = 16384
    ) {
        cgroups = hierarchy.map(CgroupIndex.init)
        self.hostPaths = hostPaths
        // paths here come from the index (host paths) or /proc, whose "/.." paths
        // the resolver maps back through the same hierarchy
        identities = IdentityResolver(hostPaths: hostPaths, hierarchy: hierarchy, metadata: metadata)
        self.capacity = max(1, capacity)
    }

    /// The record with its cgroup. `now`: monotonic nanoseconds, for the cache.
    public mutating func resolve(_ record: KernelRecord, now: UInt64 = monotonicNanoseconds()) -> ResolvedRecord {
        ResolvedRecord(record, cgroup: cgroup(id: record.cgroupID, pid: record.processID, own: record.ownLimit, now: now))
    }

    /// A cgroup by the kernel's id; `pid` lets a cgroup newer than the index
    /// be found through /proc, `own` is the limit the kernel read with it.
    public mutating func cgroup(
        id: UInt64, pid: Int32?, own: MemoryLimit, now: UInt64 = monotonicNanoseconds()
    ) -> ResolvedCgroup {
        if id != 0, let entry = resolved[id], entry.own == own, now &- entry.resolvedAt < Self.freshnessNanoseconds {
            return entry.cgroup
        }
        let path = cgroupPath(id: id, pid: pid)
        let cgroup = ResolvedCgroup(path: path, identity: identities.identity(cgroupPath: path), limit: limit(path: path, own: own))
        // an unknown cgroup may be found on the next record (the index rescans, or /proc tells),
        // and a pod the API server's watch has not told of yet (the agent's own pod, whose
        // records start while the watch lists) may be named on the next
        let podPending = cgroup.identity.pod == nil && (cgroup.identity.podUID != nil || cgroup.identity.containerID != nil)
        if id != 0, !path.isEmpty, !podPending || identities.metadata == nil {
            if resolved.count >= capacity { resolved.removeAll(keepingCapacity: true) }
            resolved[id] = Entry(own: own, cgroup: cgroup, resolvedAt: now)
        }
        return cgroup
    }

    /// The memory cgroup's path; "" when neither the id nor /proc can tell (the process is gone).
    public mutating func cgroupPath(id: UInt64, pid: Int32?) -> String {
        if id != 0, let path = cgroups?.path(for: id) { return path }
        if let pid, let version = cgroups?.hierarchy.version,
            let path = ProcCgroup.memoryCgroupPath(pid: pid, procRoot: hostPaths.proc, version: version)
        {
            // a cgroup newer than the index's last walk: the cgroup's own aggregate
            // records (no pid) that follow find it by id
            cgroups?.learn(path: path, for: id)
            return path
        }
        return ""
    }

    /// The identity of a cgroup path (a leak event's, a budget's), from the
    /// same cache as the records'.
    public mutating func identity(cgroupPath path: String) -> TargetIdentity {
        identities.identity(cgroupPath: path)
    }

    /// The cgroup is gone (emptied): its entry goes, so a cgroup created
    /// under its name later is read afresh.
    public mutating func forget(id: UInt64) {
        resolved[id] = nil
    }

    private mutating func limit(path: String, own: MemoryLimit) -> UInt64? {
        guard !path.isEmpty, cgroups != nil else { return own.bytes }
        return cgroups!.effectiveLimit(path: path, own: own).bytes
    }
}
