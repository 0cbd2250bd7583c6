import MemwardenIdentity
import MemwardenModel

/// Turns kernel records into the agent's JSON lines and into trace lines,
/// resolving cgroup ids to paths and limits to the effective limit.
public struct SampleFormatter: Sendable {
    public private(set) var cgroups: CgroupIndex?
    public let clock: WallClock
    /// The host's procfs (for the /proc/PID/cgroup fallback).
    public let hostPaths: HostPaths
    /// Names the owner of each line's cgroup (container, pod, systemd unit).
    public private(set) var identities: IdentityResolver
    /// The clock of `t`.
    public let traceClock: TraceClock
    /// Monotonic nanoseconds at which `t` is 0.
    public var origin: UInt64 { traceClock.origin }
    private var timestamps: TimestampCache
    /// Effective limits by (cgroup id, the kernel's own-limit value), refreshed
    /// on the index's schedule: walking ancestors per record is too slow.
    private var limits: [LimitKey: (limit: UInt64?, readAt: UInt64)] = [:]
    private struct LimitKey: Hashable {
        var path: String
        var own: MemoryLimit
    }

    /// `t` counts from `origin` on the trace's clock (TraceClock says why it rounds).
    public init(
        hierarchy: CgroupHierarchy?, hostPaths: HostPaths = HostPaths(), metadata: (any PodMetadataSource)? = nil,
        clock: WallClock = WallClock(), origin: UInt64 = monotonicNanoseconds()
    ) {
        cgroups = hierarchy.map(CgroupIndex.init)
        self.hostPaths = hostPaths
        // paths here come from the index (host paths) or /proc, whose "/.." paths
        // the resolver maps back through the same hierarchy
        identities = IdentityResolver(hostPaths: hostPaths, hierarchy: hierarchy, metadata: metadata)
        self.clock = clock
        traceClock = TraceClock(origin: origin)
        timestamps = TimestampCache(clock: clock)
    }

    /// Nanoseconds since the origin, truncated to whole microseconds like `t`.
    public func traceNanoseconds(_ monotonic: UInt64) -> Int64 {
        traceClock.nanoseconds(monotonic)
    }

    /// Seconds since the origin, truncated to microseconds (never negative:
    /// records from before the origin are at 0).
    public func traceTime(_ monotonic: UInt64) -> Double {
        traceClock.seconds(monotonic)
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

    /// The identity of a cgroup path, from the same cache the lines use (for
    /// the leak and budget events about the same cgroups).
    public mutating func identity(cgroupPath path: String) -> TargetIdentity {
        identities.identity(cgroupPath: path)
    }

    mutating func limit(path: String, own: MemoryLimit) -> UInt64? {
        guard !path.isEmpty, cgroups != nil else { return own.bytes }
        let key = LimitKey(path: path, own: own)
        let now = monotonicNanoseconds()
        if let cached = limits[key], now &- cached.readAt < 1_000_000_000 { return cached.limit }
        if limits.count > 4096 { limits.removeAll(keepingCapacity: true) }
        let limit = cgroups!.effectiveLimit(path: path, own: own, now: now).bytes
        limits[key] = (limit, now)
        return limit
    }

    /// The path and effective limit of a record's cgroup.
    public mutating func cgroupAndLimit(id: UInt64, pid: Int32?, own: MemoryLimit) -> (path: String, limit: UInt64?) {
        let path = cgroupPath(id: id, pid: pid)
        return (path, limit(path: path, own: own))
    }

    /// `memwarden run`'s line for a process record.
    public mutating func eventLine(_ record: ProcessRecord) -> String {
        var line = JSONLine()
        switch record.kind {
        case .sample: line.add("type", "sample")
        case .exec: line.add("type", "process.exec")
        case .exit: line.add("type", "process.exit")
        }
        line.add("time", timestamps.rfc3339(monotonic: record.monotonicNanoseconds))
        addTraceFields(record, to: &line, identity: true)
        line.add("rss", record.memory.rss)
        return line.finish()
    }

    /// `memwarden run`'s line for a cgroup aggregate.
    public mutating func eventLine(_ record: CgroupRecord) -> String {
        var line = JSONLine()
        line.add("type", "cgroup_sample")
        line.add("time", timestamps.rfc3339(monotonic: record.monotonicNanoseconds))
        line.add("t", traceTime(record.monotonicNanoseconds), decimals: 6)
        let path = cgroupPath(id: record.cgroupID, pid: nil)
        line.addIdentity(identities.identity(cgroupPath: path))
        line.add("cgroup_id", record.cgroupID)
        line.add("processes", record.processCount)
        line.add("anon", record.memory.anon)
        line.add("file", record.memory.file)
        line.add("shmem", record.memory.shmem)
        line.add("swap", record.memory.swap)
        line.add("rss", record.memory.rss)
        line.add("usage", record.usage)
        if let limit = limit(path: path, own: record.limit) { line.add("limit", limit) }
        return line.finish()
    }

    /// One line of the trace format (docs/trace-format.md). exec and exit
    /// records are samples too, marked with "event".
    public mutating func traceLine(_ record: ProcessRecord) -> String {
        var line = JSONLine()
        addTraceFields(record, to: &line)
        switch record.kind {
        case .sample: break
        case .exec: line.add("event", "exec")
        case .exit: line.add("event", "exit")
        }
        return line.finish()
    }

    /// `confirmation`: the detection stage's state, when the agent runs one.
    public mutating func statsLine(
        _ counters: KernelCounters, confirmation: ConfirmationStatistics? = nil,
        at monotonic: UInt64 = monotonicNanoseconds()
    ) -> String {
        var line = JSONLine()
        line.add("type", "stats")
        line.add("time", timestamps.rfc3339(monotonic: monotonic))
        line.add("t", traceTime(monotonic), decimals: 3)
        line.add("events", counters.events)
        line.add("coalesced", counters.coalesced)
        line.add("process_samples", counters.processSamples)
        line.add("cgroup_samples", counters.cgroupSamples)
        line.add("ringbuf_drops", counters.ringBufferDrops)
        line.add("unattributed", counters.unattributed)
        line.add("execs", counters.execs)
        line.add("exits", counters.exits)
        line.add("map_full", counters.mapFull)
        line.add("verdicts", counters.verdicts)
        line.add("process_evictions", counters.processEvictions)
        line.add("cgroup_evictions", counters.cgroupEvictions)
        line.add("processes_tracked", counters.processesTracked)
        line.add("cgroups_tracked", counters.cgroupsTracked)
        line.add("userspace_drops", counters.userspaceDrops)
        line.add("stdout_drops", counters.stdoutDrops)
        if let confirmation {
            line.add("confirmation_targets", confirmation.targets)
            line.add("confirmation_suspected", confirmation.suspected)
            line.add("confirmation_history_bytes", confirmation.historyBytes)
            line.add("confirmation_evictions", confirmation.evicted)
        }
        return line.finish()
    }

    /// The trace's fields; event lines (`identity`) also name the cgroup's owner.
    private mutating func addTraceFields(_ record: ProcessRecord, to line: inout JSONLine, identity: Bool = false) {
        line.add("t", traceTime(record.monotonicNanoseconds), decimals: 6)
        line.add("pid", record.pid)
        line.add("comm", record.comm)
        let path = cgroupPath(id: record.cgroupID, pid: record.pid)
        if identity {
            line.addIdentity(identities.identity(cgroupPath: path))
        } else {
            line.add("cgroup", path)
        }
        line.add("anon", record.memory.anon)
        line.add("file", record.memory.file)
        line.add("shmem", record.memory.shmem)
        line.add("swap", record.memory.swap)
        line.add("vsz", record.virtualSize)
        if let limit = limit(path: path, own: record.limit) { line.add("limit", limit) }
    }
}
