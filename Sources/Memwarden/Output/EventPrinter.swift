import Logging
import ServiceLifecycle

/// Prints the source's records as JSON lines on stdout, and a stats line at
/// each counter reading. Runs until the source's stream ends, so that on
/// shutdown everything the source drained is still printed.
public struct EventPrinter: Service {
    let input: AsyncStream<SourceOutput>
    var formatter: SampleFormatter
    let writer: LineWriter
    let logger: Logger

    public init(input: AsyncStream<SourceOutput>, formatter: SampleFormatter, writer: LineWriter = .standardOutput, logger: Logger) {
        self.input = input
        self.formatter = formatter
        self.writer = writer
        self.logger = logger
    }

    public func run() async throws {
        var formatter = formatter
        for await output in input {
            var lines: [String] = []
            switch output {
            case .records(let records):
                lines.reserveCapacity(records.count)
                for record in records {
                    switch record {
                    case .process(let process): lines.append(formatter.eventLine(process))
                    case .cgroup(let cgroup): lines.append(formatter.eventLine(cgroup))
                    }
                }
            case .counters(let counters):
                lines.append(formatter.statsLine(counters))
            }
            do {
                try writer.write(lines: lines)
            } catch {
                // stdout gone (closed pipe): nothing left to tell; keep draining so the source never blocks
                logger.error("cannot write events", metadata: ["error": "\(error)"])
            }
        }
        // The stream ends when the source stopped; the group shuts down in reverse
        // order, so returning before our turn would count as an unexpected end.
        try? await gracefulShutdown()
    }
}
