import Logging
import ServiceLifecycle

/// The live agent's output stage: prints the source's records as JSON lines
/// on stdout with the leak events the detectors' verdicts cause, and a stats
/// line at each counter reading. Runs until the source's stream ends, so that
/// on shutdown everything the source drained is still printed.
public struct EventPrinter: Service {
    let input: AsyncStream<SourceOutput>
    var formatter: SampleFormatter
    let writer: LineWriter
    let logger: Logger
    /// How long a batch may wait for a reader of stdout before its lines are dropped.
    let stallTimeout: UInt64 = 2_000_000_000

    /// Also print each raw verdict change (`type: verdict`), for debugging and tests.
    let verdicts: Bool

    public init(
        input: AsyncStream<SourceOutput>, formatter: SampleFormatter, writer: LineWriter = .standardOutput,
        verdicts: Bool = false, logger: Logger
    ) {
        self.input = input
        self.verdicts = verdicts
        self.formatter = formatter
        self.writer = writer
        self.logger = logger
    }

    public func run() async throws {
        var formatter = formatter
        var detection = LiveDetection(origin: formatter.origin)
        let epoch = formatter.clock.realtime(fromMonotonic: formatter.origin)
        // once stdout stalled, later batches do not wait for it until it takes a write again
        var stalled = false
        var dropped: UInt64 = 0
        for await output in input {
            var lines: [String] = []
            switch output {
            case .records(let records):
                lines.reserveCapacity(records.count)
                for record in records {
                    switch record {
                    case .process(let process): lines.append(formatter.eventLine(process))
                    case .cgroup(let cgroup): lines.append(formatter.eventLine(cgroup))
                    case .verdict(let verdict): if verdicts { lines.append(formatter.verdictLine(verdict)) }
                    }
                    for event in detection.events(for: record, lookup: { formatter.cgroupAndLimit(id: $0, pid: $1, own: $2) }) {
                        lines.append(event.jsonLine(epochNanoseconds: epoch))
                    }
                }
            case .counters(var counters):
                counters.stdoutDrops = dropped
                lines.append(formatter.statsLine(counters))
            }
            let written = writer.write(lines: lines, deadline: monotonicNanoseconds() + (stalled ? 0 : stallTimeout))
            if let error = written.error {
                logger.error("cannot write events", metadata: ["errno": "\(error)"])
            }
            if written.lines < lines.count {
                if !stalled { logger.warning("stdout is not being read: dropping event lines (counted in stats as stdout_drops)") }
                stalled = true
                dropped += UInt64(lines.count - written.lines)
            } else {
                stalled = false
            }
        }
        if dropped > 0 {
            // the last stats line may itself have been dropped: say it where it is read
            logger.warning("event lines dropped because stdout was not read", metadata: ["stdout_drops": "\(dropped)"])
        }
        // The stream ends when the source stopped; the group shuts down in reverse
        // order, so returning before our turn would count as an unexpected end.
        try? await gracefulShutdown()
    }
}

extension SampleFormatter {
    /// A kernel verdict change in the form `memwarden replay --verdicts` prints,
    /// on the trace's clock, so the two can be compared line for line.
    mutating func verdictLine(_ record: VerdictRecord) -> String {
        VerdictChange(
            timeNanoseconds: traceNanoseconds(record.monotonicNanoseconds),
            scope: record.pid == nil ? .cgroup : .process, pid: record.pid,
            cgroup: cgroupPath(id: record.cgroupID, pid: record.pid), verdict: DetectorVerdict(raw: record.raw)
        ).jsonLine()
    }
}
