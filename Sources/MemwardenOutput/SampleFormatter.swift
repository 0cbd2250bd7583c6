import MemwardenModel

/// Turns kernel records, their cgroups resolved (RecordResolver), into the
/// agent's JSON lines and into trace lines: formatting only.
public struct SampleFormatter: Sendable {
    public let clock: WallClock
    /// The clock of `t`.
    public let traceClock: TraceClock
    /// Monotonic nanoseconds at which `t` is 0.
    public var origin: UInt64 { traceClock.origin }
    private var timestamps: TimestampCache

    /// `t` counts from `origin` on the trace's clock (TraceClock says why it rounds).
    public init(clock: WallClock = WallClock(), origin: UInt64 = monotonicNanoseconds()) {
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

    /// `memwarden run`'s line for a process record.
    public mutating func eventLine(_ record: ProcessRecord, cgroup: ResolvedCgroup) -> String {
        var line = JSONLine()
        switch record.kind {
        case .sample: line.add("type", "sample")
        case .exec: line.add("type", "process.exec")
        case .exit: line.add("type", "process.exit")
        }
        line.add("time", timestamps.rfc3339(monotonic: record.monotonicNanoseconds))
        addTraceFields(record, cgroup: cgroup, to: &line, identity: true)
        line.add("rss", record.memory.rss)
        return line.finish()
    }

    /// `memwarden run`'s line for a cgroup aggregate.
    public mutating func eventLine(_ record: CgroupRecord, cgroup: ResolvedCgroup) -> String {
        var line = JSONLine()
        line.add("type", "cgroup_sample")
        line.add("time", timestamps.rfc3339(monotonic: record.monotonicNanoseconds))
        line.add("t", traceTime(record.monotonicNanoseconds), decimals: 6)
        line.addIdentity(cgroup.identity)
        line.add("cgroup_id", record.cgroupID)
        line.add("processes", record.processCount)
        line.add("anon", record.memory.anon)
        line.add("file", record.memory.file)
        line.add("shmem", record.memory.shmem)
        line.add("swap", record.memory.swap)
        line.add("rss", record.memory.rss)
        line.add("usage", record.usage)
        if let limit = cgroup.limit { line.add("limit", limit) }
        return line.finish()
    }

    /// One line of the trace format (docs/trace-format.md). exec and exit
    /// records are samples too, marked with "event".
    public func traceLine(_ record: ProcessRecord, cgroup: ResolvedCgroup) -> String {
        var line = JSONLine()
        addTraceFields(record, cgroup: cgroup, to: &line)
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
    private func addTraceFields(
        _ record: ProcessRecord, cgroup: ResolvedCgroup, to line: inout JSONLine, identity: Bool = false
    ) {
        line.add("t", traceTime(record.monotonicNanoseconds), decimals: 6)
        line.add("pid", record.pid)
        line.add("comm", record.comm)
        if identity {
            line.addIdentity(cgroup.identity)
        } else {
            line.add("cgroup", cgroup.path)
        }
        line.add("anon", record.memory.anon)
        line.add("file", record.memory.file)
        line.add("shmem", record.memory.shmem)
        line.add("swap", record.memory.swap)
        line.add("vsz", record.virtualSize)
        if let limit = cgroup.limit { line.add("limit", limit) }
    }
}
