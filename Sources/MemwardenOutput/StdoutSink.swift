import Logging
import MemwardenModel
import ServiceLifecycle

/// Events as JSON lines on stdout (or any descriptor), one object a line,
/// never interleaved: every line goes through this sink's one writer task.
/// `submit` only queues; when nothing reads stdout the queue fills and the
/// oldest lines are dropped and counted, so detection never waits for a
/// reader. Raw lines (the trace stream of `run`: samples, stats) can share
/// the same writer through `submit(line:)`.
public struct StdoutSink: CountingSink, Service {
    public let name = "stdout"
    /// Stdout's lost lines have been `stdout` in events and metrics since the first version.
    public var lossKey: String { name }
    private let queue: SinkQueue<String>
    private let counters = SinkCounters()
    private let writer: LineWriter
    private let flushTimeout: Duration
    private let logger: Logger

    /// - Parameters:
    ///   - capacity: lines held while stdout is not read.
    ///   - flushTimeout: how long graceful shutdown may wait for a reader to
    ///     take what is still queued.
    public init(
        writer: LineWriter = .standardOutput, capacity: Int = 8192, flushTimeout: Duration = .seconds(2),
        logger: Logger
    ) {
        self.writer = writer
        queue = SinkQueue(capacity: max(1, capacity))
        self.flushTimeout = flushTimeout
        self.logger = logger
    }

    public func submit(_ event: AgentEvent) {
        submit(line: event.jsonLine())
    }

    /// Queues one already-encoded line (no newline).
    public func submit(line: String) {
        let dropped = queue.push(line)
        if dropped > 0 {
            counters.update {
                if queue.isClosed { $0.droppedAtShutdown += 1 } else { $0.droppedQueueFull += UInt64(dropped) }
            }
        }
    }

    public var statistics: SinkStatistics { counters.snapshot(queueDepth: queue.count) }

    public func run() async throws {
        var warned = false
        // the batch being written: at most `batchSize` lines beyond the queue's capacity
        var pending: [String] = []
        var pause: Duration = .milliseconds(1)
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                if pending.isEmpty {
                    pending = queue.pop(upTo: Self.batchSize)
                    if pending.isEmpty {
                        await queue.wait()
                        continue
                    }
                }
                let written = write(&pending)
                if written == nil { pending = [] }
                if pending.isEmpty {
                    pause = .milliseconds(1)
                    continue
                }
                if written == 0 {
                    if !warned && pause >= .milliseconds(50) {
                        warned = true
                        logger.warning("stdout is not being read: the oldest event lines are dropped (counted)")
                    }
                    // stdout is full: poll again later, less often the longer it stays full
                    let delay = pause
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                    pause = min(pause * 2, .milliseconds(50))
                } else {
                    pause = .milliseconds(1)
                }
            }
        } onGracefulShutdown: {
            queue.wake()
        }
        // lines submitted from now on count as dropped at shutdown
        queue.close()
        pending += queue.popAll()
        let deadline = ContinuousClock.now.advanced(by: flushTimeout)
        while !pending.isEmpty && ContinuousClock.now < deadline {
            if write(&pending) == 0 { try? await Task.sleep(for: .milliseconds(5)) }
        }
        if !pending.isEmpty {
            counters.update { $0.droppedAtShutdown += UInt64(pending.count) }
            logger.warning("stdout was not read at shutdown", metadata: ["dropped_lines": "\(pending.count)"])
        }
    }

    static let batchSize = 512

    /// Writes the whole lines stdout takes now without waiting, and removes
    /// them from `lines`. Returns the count written, nil when stdout failed
    /// for good (the lines are counted as dropped).
    private func write(_ lines: inout [String]) -> Int? {
        let result = writer.write(lines: lines, deadline: monotonicNanoseconds())
        counters.update { $0.delivered += UInt64(result.lines) }
        lines.removeFirst(result.lines)
        if let error = result.error {
            logger.error("cannot write events to stdout", metadata: ["errno": "\(error)"])
            counters.update { $0.droppedRejected += UInt64(lines.count) }
            return nil
        }
        return result.lines
    }
}
