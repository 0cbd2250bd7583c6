import Logging
import MemwardenDetection
import MemwardenIdentity
import MemwardenKernel
import MemwardenModel
import MemwardenOutput
import ServiceLifecycle

/// Which processes a trace keeps.
public struct TraceFilter: Sendable {
    public var pid: Int32?
    /// Keep a process whose memory cgroup is this path or below it.
    public var cgroup: String?

    public init(pid: Int32? = nil, cgroup: String? = nil) {
        self.pid = pid
        self.cgroup = cgroup.map { $0.count > 1 && $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    func keeps(pid: Int32, cgroupPath: String) -> Bool {
        if let wanted = self.pid, wanted != pid { return false }
        if let wanted = cgroup, wanted != "/" {
            return cgroupPath == wanted || cgroupPath.hasPrefix(wanted + "/")
        }
        return true
    }
}

/// Writes process records as a trace (JSON Lines, docs/trace-format.md).
public struct TraceRecorder: Service {
    let input: AsyncStream<SourceOutput>
    let resolver: RecordResolver
    let formatter: SampleFormatter
    let writer: LineWriter
    let filter: TraceFilter
    /// Where the kernel's verdict changes for the kept processes and their
    /// cgroups go (`record --verdicts FILE`), to compare with replay's.
    let verdictWriter: LineWriter?
    let logger: Logger

    public init(
        input: AsyncStream<SourceOutput>, resolver: RecordResolver, formatter: SampleFormatter, writer: LineWriter,
        filter: TraceFilter, verdictWriter: LineWriter? = nil, logger: Logger
    ) {
        self.input = input
        self.resolver = resolver
        self.formatter = formatter
        self.writer = writer
        self.filter = filter
        self.verdictWriter = verdictWriter
        self.logger = logger
    }

    public func run() async throws {
        var resolver = resolver
        var written = 0
        // cgroups that a kept process was in: their verdicts belong to the trace too
        var keptCgroups = Set<UInt64>()
        var lastTime: UInt64 = 0
        var last = KernelCounters()
        for await output in input {
            switch output {
            case .records(let unordered):
                var lines: [String] = []
                var verdicts: [String] = []
                // Records from two CPUs can reach the ring out of time order by a few
                // microseconds; a trace's t never goes back. Sort each batch (stably:
                // one target's records keep their order), and clamp across batches.
                let records = unordered.enumerated().sorted {
                    ($0.element.monotonicNanoseconds, $0.offset) < ($1.element.monotonicNanoseconds, $1.offset)
                }.map { record in
                    var record = record.element
                    record.monotonicNanoseconds = max(record.monotonicNanoseconds, lastTime)
                    lastTime = record.monotonicNanoseconds
                    return record
                }
                for record in records {
                    switch record {
                    case .process(let process):
                        let cgroup = resolver.resolve(record).cgroup
                        guard filter.keeps(pid: process.pid, cgroupPath: cgroup.path) else { continue }
                        lines.append(formatter.traceLine(process, cgroup: cgroup))
                        keptCgroups.insert(process.cgroupID)
                    case .verdict(let verdict) where verdictWriter != nil:
                        let path = resolver.resolve(record).cgroup.path
                        let kept =
                            verdict.pid.map { filter.keeps(pid: $0, cgroupPath: path) } ?? keptCgroups.contains(verdict.cgroupID)
                        if kept { verdicts.append(formatter.verdictLine(verdict, cgroupPath: path)) }
                    default:
                        continue
                    }
                }
                try writer.write(lines: lines)
                try verdictWriter?.write(lines: verdicts)
                written += lines.count
            case .counters(let counters):
                last = counters
            case .attached:
                continue
            }
        }
        logger.info(
            "trace written",
            metadata: [
                "samples": "\(written)", "ringbuf_drops": "\(last.ringBufferDrops)",
                "userspace_drops": "\(last.userspaceDrops)",
            ])
        try? await gracefulShutdown()
    }
}
