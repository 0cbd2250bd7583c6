import CMemwarden
import MemwardenBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// The loaded and attached kernel program, its ring buffer and its counters.
/// Not Sendable: create, poll and drop it on one thread (BPFSource does that
/// for the agent; tests use it directly).
public final class KernelMonitor {
    public let configuration: KernelConfiguration
    private let object: BPFObject
    private let ringBuffer: OpaquePointer
    private let collector = RecordCollector()
    private let countersFD: Int32
    private let procsFD: Int32
    private let hotFD: Int32
    private let cgroupsFD: Int32
    private let cpuCount: Int
    private var evictionFloor = (processes: UInt64(0), cgroups: UInt64(0))

    /// Checks the kernel, then opens, configures, loads and attaches the program.
    public init(configuration: KernelConfiguration = .init()) throws(KernelError) {
        try configuration.validate()
        try KernelPreflight.check()
        self.configuration = configuration
        typealias Program = MemwardenSkeleton
        object = try BPFObject(Program.object)
        try object.setGlobal(Program.Settings.cfgStepBytes, configuration.stepBytes)
        try object.setGlobal(Program.Settings.cfgHeartbeatNs, configuration.heartbeatNanoseconds)
        try object.setGlobal(Program.Settings.cfgPageShift, UInt32(pageSize.trailingZeroBitCount))
        try object.setGlobal(Program.Settings.cfgHotMask, configuration.hotSlots - 1)
        try object.setGlobal(Program.Settings.cfgDet, configuration.detectorSettings)
        try object.setMaxEntries(Program.Maps.hot, configuration.hotSlots)
        try object.setMaxEntries(Program.Maps.procs, configuration.maxProcesses)
        try object.setMaxEntries(Program.Maps.mmOwner, configuration.maxProcesses)
        try object.setMaxEntries(Program.Maps.cgroups, configuration.maxCgroups)
        try object.setMaxEntries(Program.Maps.events, configuration.ringBufferBytes)
        try object.load()
        countersFD = try object.mapFD(Program.Maps.counters)
        procsFD = try object.mapFD(Program.Maps.procs)
        hotFD = try object.mapFD(Program.Maps.hot)
        cgroupsFD = try object.mapFD(Program.Maps.cgroups)
        cpuCount = Int(libbpf_num_possible_cpus())
        let context = Unmanaged.passUnretained(collector).toOpaque()
        guard let ring = ring_buffer__new(try object.mapFD(Program.Maps.events), { context, data, size in
            guard let context, let data else { return 0 }
            Unmanaged<RecordCollector>.fromOpaque(context).takeUnretainedValue().decode(data, size)
            return 0
        }, context, nil) else {
            throw KernelError(.mapFailed, "cannot open the ring buffer: \(String(cString: strerror(errno)))")
        }
        ringBuffer = ring
        // Every stored property is set from here on, so a throw runs deinit, which frees the
        // ring buffer: freeing it here too was a double free (SIGSEGV when attaching failed,
        // e.g. for want of a privilege).
        try object.attachAll()
    }

    deinit {
        ring_buffer__free(ringBuffer)
    }

    /// Waits `timeoutMilliseconds` (less if the ring fills up) and returns what arrived.
    /// The kernel side writes without waking us (a wakeup per record costs more
    /// than the record) except when the ring is half full, so the wait usually
    /// ends on the timeout and the consume after it does the work.
    public func poll(timeoutMilliseconds: Int32) -> [KernelRecord] {
        _ = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
        _ = ring_buffer__consume(ringBuffer)
        return collector.take()
    }

    /// Returns the records already waiting, without blocking.
    public func drain() -> [KernelRecord] {
        _ = ring_buffer__consume(ringBuffer)
        return collector.take()
    }

    /// The kernel counters summed over CPUs, with evictions derived from the
    /// maps' live sizes (LRU maps evict silently; creates - deletes - live is
    /// what they dropped).
    public func counters() -> KernelCounters {
        var values = [UInt64](repeating: 0, count: Int(MW_CNT__MAX.rawValue))
        var perCPU = [UInt64](repeating: 0, count: cpuCount)
        for index in 0..<values.count {
            var key = UInt32(index)
            guard bpf_map_lookup_elem(countersFD, &key, &perCPU) == 0 else { continue }
            values[index] = perCPU.reduce(0, &+)
        }
        func value(_ counter: mw_counter) -> UInt64 { values[Int(counter.rawValue)] }
        var result = KernelCounters()
        result.events = value(MW_CNT_EVENTS)
        result.coalesced = value(MW_CNT_COALESCED)
        result.processSamples = value(MW_CNT_PROC_SAMPLES)
        result.cgroupSamples = value(MW_CNT_CGROUP_SAMPLES)
        result.ringBufferDrops = value(MW_CNT_RINGBUF_DROPS)
        result.unattributed = value(MW_CNT_UNATTRIBUTED)
        result.execs = value(MW_CNT_EXECS)
        result.exits = value(MW_CNT_EXITS)
        result.mapFull = value(MW_CNT_MAP_FULL)
        result.verdicts = value(MW_CNT_VERDICTS)
        result.processesTracked = UInt64(max(0, mw_count_map_keys(procsFD, 4)))
        result.cgroupsTracked = UInt64(max(0, mw_count_map_keys(cgroupsFD, 8)))
        // Counters and the walk are not one snapshot: keep the derived value monotonic.
        let procCreated = value(MW_CNT_PROC_CREATED), procDeleted = value(MW_CNT_PROC_DELETED)
        let cgCreated = value(MW_CNT_CGROUP_CREATED), cgDeleted = value(MW_CNT_CGROUP_DELETED)
        evictionFloor.processes = max(
            evictionFloor.processes, procCreated &- min(procCreated, procDeleted &+ result.processesTracked))
        evictionFloor.cgroups = max(
            evictionFloor.cgroups, cgCreated &- min(cgCreated, cgDeleted &+ result.cgroupsTracked))
        result.processEvictions = evictionFloor.processes
        result.cgroupEvictions = evictionFloor.cgroups
        return result
    }

    /// The kernel's state for a process, if it follows it.
    public func processState(pid: Int32) -> TrackedProcess? {
        var key = UInt32(bitPattern: pid)
        var state = mw_proc_state()
        guard bpf_map_lookup_elem(procsFD, &key, &state) == 0 else { return nil }
        // while the process holds its hot slot, the slot's counters are the newer ones
        var slot = state.mm_id & (configuration.hotSlots - 1)
        var hot = mw_hot()
        if state.mm_id != 0, bpf_map_lookup_elem(hotFD, &slot, &hot) == 0, hot.tgid == key, hot.mm_id == state.mm_id {
            state.bytes = hot.bytes
        }
        return TrackedProcess(state)
    }

    /// Program names and fds, for the benchmark's bpf_stats.
    func programs() -> [(name: String, section: String, fd: Int32)] { object.programs() }
}

/// The kernel's per-process state, as read back from the `procs` map.
public struct TrackedProcess: Sendable, Hashable {
    public var memory: MemoryCounters
    public var cgroupID: UInt64
    public var comm: String
    public var mmID: UInt32
    public var startMonotonicNanoseconds: UInt64

    init(_ state: mw_proc_state) {
        memory = MemoryCounters(
            anon: UInt64(max(0, state.bytes.1)), file: UInt64(max(0, state.bytes.0)),
            shmem: UInt64(max(0, state.bytes.3)), swap: UInt64(max(0, state.bytes.2)))
        cgroupID = state.cgroup_id
        comm = decodeComm(state.comm)
        mmID = state.mm_id
        startMonotonicNanoseconds = state.start_ts
    }
}

/// Decodes ring-buffer records inside libbpf's callback and holds them until taken.
private final class RecordCollector {
    private var records: [KernelRecord] = []

    func take() -> [KernelRecord] {
        defer { records.removeAll(keepingCapacity: true) }
        return records
    }

    func decode(_ data: UnsafeMutableRawPointer, _ size: Int) {
        guard size >= MemoryLayout<UInt32>.size else { return }
        switch data.load(as: UInt32.self) {
        case UInt32(MW_REC_VERDICT.rawValue):
            guard size >= MemoryLayout<mw_verdict_record>.size else { return }
            let r = data.loadUnaligned(as: mw_verdict_record.self)
            records.append(
                .verdict(
                    VerdictRecord(
                        scope: r.scope == MW_SCOPE_CGROUP.rawValue ? .cgroup : .process(pid: Int32(bitPattern: r.tgid)),
                        monotonicNanoseconds: r.ts_ns, cgroupID: r.cgroup_id, cgroupRSS: r.cgroup_rss,
                        limit: MemoryLimit(kernelValue: r.limit), comm: decodeComm(r.comm), raw: r.verdict)))
        case UInt32(MW_REC_CGROUP_SAMPLE.rawValue):
            guard size >= MemoryLayout<mw_cgroup_record>.size else { return }
            let r = data.loadUnaligned(as: mw_cgroup_record.self)
            records.append(
                .cgroup(
                    CgroupRecord(
                        cgroupID: r.cgroup_id, monotonicNanoseconds: r.ts_ns, processCount: Int(r.nr_procs),
                        memory: counters(r.bytes), usage: r.usage == 0 ? nil : r.usage,
                        limit: MemoryLimit(kernelValue: r.limit))))
        case let kind:
            guard size >= MemoryLayout<mw_proc_record>.size else { return }
            let r = data.loadUnaligned(as: mw_proc_record.self)
            let recordKind: ProcessRecord.Kind
            switch kind {
            case UInt32(MW_REC_PROC_EXEC.rawValue): recordKind = .exec
            case UInt32(MW_REC_PROC_EXIT.rawValue): recordKind = .exit
            case UInt32(MW_REC_PROC_SAMPLE.rawValue): recordKind = .sample
            default: return
            }
            records.append(
                .process(
                    ProcessRecord(
                        kind: recordKind, pid: Int32(bitPattern: r.tgid), monotonicNanoseconds: r.ts_ns,
                        cgroupID: r.cgroup_id, memory: counters(r.bytes), virtualSize: r.vsz,
                        limit: MemoryLimit(kernelValue: r.limit), comm: decodeComm(r.comm))))
        }
    }

    private func counters(_ bytes: (UInt64, UInt64, UInt64, UInt64)) -> MemoryCounters {
        // kernel order: file, anon, swap, shmem
        MemoryCounters(anon: bytes.1, file: bytes.0, shmem: bytes.3, swap: bytes.2)
    }
}

func decodeComm<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix(while: { $0 != 0 })
        return String(decoding: bytes, as: UTF8.self)
    }
}
