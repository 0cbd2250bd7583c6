import Logging
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
    let formatter: SampleFormatter
    let writer: LineWriter
    let filter: TraceFilter
    let logger: Logger

    public init(input: AsyncStream<SourceOutput>, formatter: SampleFormatter, writer: LineWriter, filter: TraceFilter, logger: Logger) {
        self.input = input
        self.formatter = formatter
        self.writer = writer
        self.filter = filter
        self.logger = logger
    }

    public func run() async throws {
        var formatter = formatter
        var written = 0
        var last = KernelCounters()
        for await output in input {
            switch output {
            case .records(let records):
                var lines: [String] = []
                for case .process(let record) in records {
                    let path = formatter.cgroupPath(id: record.cgroupID, pid: record.pid)
                    guard filter.keeps(pid: record.pid, cgroupPath: path) else { continue }
                    lines.append(formatter.traceLine(record))
                }
                try writer.write(lines: lines)
                written += lines.count
            case .counters(let counters):
                last = counters
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
