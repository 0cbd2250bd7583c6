import Logging
import ServiceLifecycle

/// What `memwarden run` prints and sends besides the events themselves.
public struct PipelineSettings: Sendable {
    /// The node name every event carries.
    public var node: String?
    /// Events (leak, budget, response, agent) as JSON lines on stdout.
    public var stdoutEvents = true
    /// The sample stream too (`sample`, `cgroup_sample`, `process.exec`,
    /// `process.exit`): the trace of what the detectors saw, for debugging.
    public var samples = false
    /// Each raw detector verdict change (`type: verdict`), as `replay --verdicts` prints it.
    public var verdicts = false

    public init(node: String? = nil, stdoutEvents: Bool = true, samples: Bool = false, verdicts: Bool = false) {
        self.node = node
        self.stdoutEvents = stdoutEvents
        self.samples = samples
        self.verdicts = verdicts
    }
}

/// The live agent after the kernel source: turns records into leak events
/// with their targets' identity, prints events (and on request the sample
/// stream) on stdout, hands every event to the sinks, and says when anything
/// was lost. Runs until the source's stream ends, so that on shutdown
/// everything the source drained is still handled.
public struct LivePipeline: Service {
    let input: AsyncStream<SourceOutput>
    var formatter: SampleFormatter
    let writer: LineWriter
    let sinks: [any EventSink]
    let settings: PipelineSettings
    /// Budgets and responses (nil: detection only, as in tests).
    let responses: PipelineResponses?
    /// Events other tasks produced for stdout (policy reloads, responses).
    let inbox: EventInbox?
    let logger: Logger
    /// How long a batch may wait for a reader of stdout before its lines are dropped.
    let stallTimeout: UInt64 = 2_000_000_000

    public init(
        input: AsyncStream<SourceOutput>, formatter: SampleFormatter, writer: LineWriter = .standardOutput,
        sinks: [any EventSink] = [], settings: PipelineSettings = PipelineSettings(),
        responses: PipelineResponses? = nil, inbox: EventInbox? = nil, logger: Logger
    ) {
        self.responses = responses
        self.inbox = inbox
        self.input = input
        self.formatter = formatter
        self.writer = writer
        self.sinks = sinks
        self.settings = settings
        self.logger = logger
    }

    public func run() async throws {
        let stdout = await handleInput()
        // The stream ends when the source stopped; the group shuts down in reverse
        // order, so returning before our turn would count as an unexpected end.
        // The responder restores on its own turn, before ours: its events are
        // still printed below.
        try? await gracefulShutdown()
        finish(stdout)
    }

    /// Handles the source's output until its stream ends (the source stopped).
    @discardableResult
    public func handleInput() async -> StdoutState {
        var formatter = formatter
        var detection = LiveDetection(origin: formatter.origin)
        let epoch = formatter.clock.realtime(fromMonotonic: formatter.origin)
        var stdout = StdoutState()
        var losses = LossTracker()
        var budgets = responses.map(BudgetFeed.init)
        for await output in input {
            var lines: [String] = []
            var events: [AgentEvent] = []
            switch output {
            case .attached:
                events.append(agentEvent(.agentStarted, details: AgentDetails(version: MemwardenVersion.current)))
            case .records(let records):
                if settings.samples { lines.reserveCapacity(records.count) }
                for record in records {
                    if settings.samples {
                        switch record {
                        case .process(let process): lines.append(formatter.eventLine(process))
                        case .cgroup(let cgroup): lines.append(formatter.eventLine(cgroup))
                        case .verdict: break
                        }
                    }
                    if settings.verdicts, case .verdict(let verdict) = record { lines.append(formatter.verdictLine(verdict)) }
                    for leak in detection.events(for: record, lookup: { formatter.cgroupAndLimit(id: $0, pid: $1, own: $2) }) {
                        let event = AgentEvent(
                            leak: leak, epochNanoseconds: epoch, node: settings.node,
                            identity: formatter.identity(cgroupPath: leak.cgroup))
                        events.append(event)
                        budgets?.leak(event)
                    }
                    if budgets != nil { feed(record, to: &budgets!, formatter: &formatter) }
                }
            case .counters(var counters):
                counters.stdoutDrops = stdout.dropped
                lines.append(formatter.statsLine(counters))
                if let lost = losses.update(counters) {
                    events.append(agentEvent(.agentEventsLost, severity: .warning, details: AgentDetails(lost: lost)))
                }
            }
            emit(events, into: &lines)
            // what the policy store and the responder said meanwhile (they reached the other sinks already)
            if let inbox, settings.stdoutEvents { lines.append(contentsOf: inbox.take().map { $0.jsonLine() }) }
            write(lines, stdout: &stdout)
        }
        return stdout
    }

    /// The last lines: what other tasks said while stopping, then agent.stopping.
    public func finish(_ stdout: StdoutState) {
        var stdout = stdout
        var last: [String] = []
        if let inbox, settings.stdoutEvents { last.append(contentsOf: inbox.take().map { $0.jsonLine() }) }
        emit([agentEvent(.agentStopping, details: AgentDetails(version: MemwardenVersion.current))], into: &last)
        write(last, stdout: &stdout)
        if stdout.dropped > 0 {
            // the last stats line may itself have been dropped: say it where it is read
            logger.warning("event lines dropped because stdout was not read", metadata: ["stdout_drops": "\(stdout.dropped)"])
        }
    }

    /// Cgroup usage to the budget evaluator; targets that went to the responder.
    private func feed(_ record: KernelRecord, to budgets: inout BudgetFeed, formatter: inout SampleFormatter) {
        switch record {
        case .cgroup(let cgroup):
            let (path, limit) = formatter.cgroupAndLimit(id: cgroup.cgroupID, pid: nil, own: cgroup.limit)
            guard !path.isEmpty else { return }
            let identity = formatter.identity(cgroupPath: path)
            if cgroup.processCount == 0 {
                budgets.gone(EventTarget(scope: .cgroup, identity: identity))
            } else {
                budgets.usage(
                    identity: identity, usage: cgroup.usage ?? cgroup.memory.rss, limit: limit,
                    seconds: formatter.traceTime(cgroup.monotonicNanoseconds))
            }
        case .process(let process) where process.kind == .exit:
            let path = formatter.cgroupPath(id: process.cgroupID, pid: nil)
            budgets.gone(
                EventTarget(scope: .process, pid: process.pid, comm: process.comm, identity: formatter.identity(cgroupPath: path)))
        default:
            break
        }
    }

    private func agentEvent(_ type: AgentEvent.EventType, severity: AgentEvent.Severity = .info, details: AgentDetails)
        -> AgentEvent
    {
        AgentEvent(
            type: type, severity: severity, epochNanoseconds: realtimeNanoseconds(), node: settings.node,
            details: .agent(details))
    }

    private func emit(_ events: [AgentEvent], into lines: inout [String]) {
        for event in events {
            if settings.stdoutEvents { lines.append(event.jsonLine()) }
            for sink in sinks { sink.submit(event) }
        }
    }

    public struct StdoutState: Sendable {
        /// Once stdout stalled, later batches do not wait for it until it takes a write again.
        var stalled = false
        var dropped: UInt64 = 0
    }

    private func write(_ lines: [String], stdout: inout StdoutState) {
        guard !lines.isEmpty else { return }
        let written = writer.write(lines: lines, deadline: monotonicNanoseconds() + (stdout.stalled ? 0 : stallTimeout))
        if let error = written.error {
            logger.error("cannot write events", metadata: ["errno": "\(error)"])
        }
        if written.lines < lines.count {
            if !stdout.stalled {
                logger.warning("stdout is not being read: dropping event lines (counted in stats as stdout_drops)")
            }
            stdout.stalled = true
            stdout.dropped += UInt64(lines.count - written.lines)
        } else {
            stdout.stalled = false
        }
    }
}

/// Notices what was lost between two counter readings, for `agent.events_lost`.
struct LossTracker {
    private var last: [String: UInt64] = [:]

    /// What grew since the last reading, by where it was lost; nil when nothing was.
    mutating func update(_ counters: KernelCounters) -> [String: UInt64]? {
        let now: [String: UInt64] = [
            "ring_buffer": counters.ringBufferDrops, "userspace": counters.userspaceDrops,
            "stdout": counters.stdoutDrops, "map_full": counters.mapFull,
        ]
        var grown: [String: UInt64] = [:]
        for (key, value) in now where value > last[key, default: 0] { grown[key] = value - last[key, default: 0] }
        last = now
        return grown.isEmpty ? nil : grown
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
