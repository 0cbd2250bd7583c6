import Foundation
import Logging
import MemwardenDetection
import MemwardenIdentity
import MemwardenKernel
import MemwardenModel
import MemwardenOutput
import MemwardenPolicy
import MemwardenResponse
import ServiceLifecycle

/// What `memwarden run` prints besides the events themselves.
public struct PipelineSettings: Sendable {
    /// The node name every event carries.
    public var node: String?
    /// The sample stream on stdout too (`sample`, `cgroup_sample`,
    /// `process.exec`, `process.exit`): the trace of what the detectors saw.
    public var samples = false
    /// Each raw detector verdict change (`type: verdict`), as `replay --verdicts` prints it.
    public var verdicts = false
    /// The agent's detector profile (`--detector-profile`): the kernel's, and the
    /// confirmation stage's for targets whose policy names none.
    public var detectorProfile: DetectorConfiguration.Profile = .standard

    public init(
        node: String? = nil, samples: Bool = false, verdicts: Bool = false,
        detectorProfile: DetectorConfiguration.Profile = .standard
    ) {
        self.node = node
        self.samples = samples
        self.verdicts = verdicts
        self.detectorProfile = detectorProfile
    }
}

/// Where the pipeline's output goes.
public struct PipelineOutputs: Sendable {
    /// Every event: the configured sinks (stdout among them), the HTTP ring,
    /// the metrics, the target observer.
    public var events: any EventSink
    /// The stats lines and, on request, the sample stream (nil: stdout off).
    public var stdout: StdoutSink?
    public var metrics: AgentMetrics?
    public var targets: TargetObserver?
    public var status: AgentStatus?
    /// The running totals of what the sinks and the responder dropped, by place (`sink.NAME`,
    /// `responder`), for the loss ledger.
    public var lossTotals: @Sendable () -> [String: UInt64]
    /// Where the right-sizing figures go (/api/v1/recommendations; nil: not computed).
    public var recommendations: RecommendationBoard?

    public init(
        events: any EventSink, stdout: StdoutSink?, metrics: AgentMetrics? = nil, targets: TargetObserver? = nil,
        status: AgentStatus? = nil, lossTotals: @escaping @Sendable () -> [String: UInt64] = { [:] },
        recommendations: RecommendationBoard? = nil
    ) {
        self.events = events
        self.stdout = stdout
        self.metrics = metrics
        self.targets = targets
        self.status = status
        self.lossTotals = lossTotals
        self.recommendations = recommendations
    }
}

/// The live agent after the kernel source: turns records into leak events
/// with their targets' identity, feeds cgroup usage to the budgets and the
/// responder, keeps the target table and metrics current, hands every event
/// to the sinks, and says when anything was lost. Runs until the source's
/// stream ends, so that on shutdown everything the source drained is handled.
public struct LivePipeline: Service {
    let input: AsyncStream<SourceOutput>
    /// Resolves each record's cgroup once, before anything else sees it.
    let resolver: RecordResolver
    let formatter: SampleFormatter
    let outputs: PipelineOutputs
    let settings: PipelineSettings
    /// Budgets and responses (nil: detection only).
    let responses: PipelineResponses?
    let logger: Logger
    /// How often the right-sizing figures are recomputed: they rest on days
    /// of history, so a minute is fresh, and the work (every cgroup's rings)
    /// stays off most of the pipeline's turns.
    static let recommendationIntervalNanoseconds: UInt64 = 60_000_000_000

    public init(
        input: AsyncStream<SourceOutput>, resolver: RecordResolver, formatter: SampleFormatter, outputs: PipelineOutputs,
        settings: PipelineSettings = PipelineSettings(), responses: PipelineResponses? = nil, logger: Logger
    ) {
        self.input = input
        self.resolver = resolver
        self.formatter = formatter
        self.outputs = outputs
        self.settings = settings
        self.responses = responses
        self.logger = logger
    }

    public func run() async throws {
        await handleInput()
        // The stream ends when the source stopped; the group shuts down in reverse
        // order, so returning before our turn would count as an unexpected end.
        // The responder restores on its own turn, before ours.
        try? await gracefulShutdown()
        finish()
    }

    /// Handles the source's output until its stream ends (the source stopped).
    public func handleInput() async {
        var resolver = resolver
        var formatter = formatter
        let profile = settings.detectorProfile
        var detection = LiveDetection(
            origin: formatter.origin, settings: TargetPolicy.builtIn.confirmationSettings(agentProfile: profile),
            nodeMemory: ProcessInfo.processInfo.physicalMemory)
        let epoch = formatter.clock.realtime(fromMonotonic: formatter.origin)
        var losses = LossLedger()
        var sampleLoss = SampleLossShare()
        var budgets = responses.map(BudgetFeed.init)
        var nextRecommendations: UInt64 = 0
        func publish(_ leaks: [LeakEvent]) {
            for leak in leaks {
                var event = AgentEvent(
                    leak: leak, epochNanoseconds: epoch, node: settings.node,
                    identity: resolver.identity(cgroupPath: leak.cgroup))
                if let ratio = sampleLoss.degradedRatio, case .leak(var details) = event.details, leak.kind != .cleared {
                    details.samplesLostRatio = ratio
                    event.details = .leak(details)
                }
                emit(event)
                budgets?.leak(event)
            }
        }
        // targets whose memory stopped moving send nothing: let them be judged on time
        var nextIdle: UInt64 = 0
        func idleIfDue() {
            let now = monotonicNanoseconds()
            guard now >= nextIdle else { return }
            nextIdle = now + UInt64(ConfirmationStage.idleIntervalNanoseconds)
            publish(detection.idle(monotonicNanoseconds: now))
        }
        for await output in input {
            switch output {
            case .attached:
                outputs.status?.markReady(.bpf)
                emit(agentEvent(.agentStarted, details: AgentDetails(version: MemwardenVersion.current)))
            case .records(let records):
                for record in records {
                    let resolved = resolver.resolve(record)
                    if let stdout = outputs.stdout {
                        switch record {
                        case .process(let process) where settings.samples:
                            stdout.submit(line: formatter.eventLine(process, cgroup: resolved.cgroup))
                        case .cgroup(let cgroup) where settings.samples:
                            stdout.submit(line: formatter.eventLine(cgroup, cgroup: resolved.cgroup))
                        case .verdict(let verdict) where settings.verdicts:
                            stdout.submit(line: formatter.verdictLine(verdict, cgroupPath: resolved.cgroup.path))
                        default: break
                        }
                    }
                    let leaks = detection.events(
                        for: resolved,
                        resolve: responses.map { responses in
                            { context in
                                responses.policy.resolve(for: resolver.identity(cgroupPath: context.cgroup))
                                    .confirmationSettings(agentProfile: profile)
                            }
                        })
                    publish(leaks)
                    feed(resolved, to: &budgets)
                    if case .cgroup(let cgroup) = record, cgroup.processCount == 0 { resolver.forget(id: cgroup.cgroupID) }
                }
                idleIfDue()
            case .counters(var counters):
                idleIfDue()
                counters.stdoutDrops = outputs.stdout?.statistics.dropped ?? 0
                let confirmation = detection.confirmation.statistics
                outputs.stdout?.submit(line: formatter.statsLine(counters, confirmation: confirmation))
                outputs.metrics?.record(kernelCounters: counters)
                outputs.metrics?.record(confirmation: confirmation)
                let lost = losses.grown(counters.lossTotals.merging(outputs.lossTotals()) { $0 + $1 })
                sampleLoss.update(counters, lost: lost)
                outputs.metrics?.record(samplesLostRatio: sampleLoss.ratio)
                if !lost.isEmpty {
                    emit(agentEvent(.agentEventsLost, severity: .warning, details: AgentDetails(lost: lost)))
                }
                if let board = outputs.recommendations, monotonicNanoseconds() >= nextRecommendations {
                    board.post(
                        LiveRecommendations.compute(
                            detection.confirmation, resolver: &resolver, table: outputs.targets?.table))
                    nextRecommendations = monotonicNanoseconds() + Self.recommendationIntervalNanoseconds
                }
            }
        }
    }

    /// The last event: agent.stopping.
    public func finish() {
        emit(agentEvent(.agentStopping, details: AgentDetails(version: MemwardenVersion.current)))
    }

    /// Cgroup usage to the budget evaluator and the target table; targets that
    /// went to the responder and out of the table.
    private func feed(_ resolved: ResolvedRecord, to budgets: inout BudgetFeed?) {
        let identity = resolved.cgroup.identity
        switch resolved.record {
        case .cgroup(let cgroup):
            guard !resolved.cgroup.path.isEmpty else { return }
            let limit = resolved.cgroup.limit
            if cgroup.processCount == 0 {
                let target = EventTarget(scope: .cgroup, identity: identity)
                budgets?.gone(target)
                outputs.targets?.gone(target)
            } else {
                let usage = cgroup.usage ?? cgroup.memory.rss
                let policy = budgets?.usage(
                    identity: identity, usage: usage, limit: limit, seconds: formatter.traceTime(cgroup.monotonicNanoseconds))
                outputs.targets?.cgroupSample(
                    identity: identity, usage: usage, limit: limit,
                    budget: policy.flatMap { BudgetEvaluator.resolve($0.budget, limit: limit) }, rule: policy?.rule)
            }
        case .process(let process) where process.kind == .exit:
            budgets?.gone(EventTarget(scope: .process, pid: process.pid, comm: process.comm, identity: identity))
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

    private func emit(_ event: AgentEvent) {
        outputs.events.submit(event)
    }
}

/// The share of the kernel's samples lost over a counters interval, which says how far
/// detection can be trusted: the detectors fill a gap with the last value, so a lost stretch
/// of growth makes a forecast late or a verdict missing.
struct SampleLossShare {
    private var lastSamples: UInt64 = 0
    /// Samples lost over the last interval, as a share of those produced (0 when none were).
    private(set) var ratio: Double = 0
    /// At or above this share lost, leak events say their forecast is of low confidence: a
    /// percent of samples is a second of growth in every hundred, where forecasts start to
    /// lean on gaps.
    static let degradedShare = 0.01

    /// The last interval's loss share when it is high enough to mark forecasts (nil: not).
    var degradedRatio: Double? { ratio >= Self.degradedShare ? ratio : nil }

    /// `lost`: what the loss ledger says grew over the interval, by place.
    mutating func update(_ counters: KernelCounters, lost: [String: UInt64]) {
        // samples the kernel wrote (counted only once reserved) and those it could not
        // write or userspace dropped behind it: a reload restarts the counters
        let samples = counters.processSamples + counters.cgroupSamples
        let produced = samples >= lastSamples ? samples - lastSamples : samples
        let lostSamples = lost["ring_buffer", default: 0] + lost["userspace", default: 0]
        let total = produced + lost["ring_buffer", default: 0]
        ratio = total == 0 ? 0 : min(1, Double(lostSamples) / Double(total))
        lastSamples = samples
    }
}

extension SampleFormatter {
    /// A kernel verdict change in the form `memwarden replay --verdicts` prints,
    /// on the trace's clock, so the two can be compared line for line.
    func verdictLine(_ record: VerdictRecord, cgroupPath: String) -> String {
        VerdictChange(
            timeNanoseconds: traceNanoseconds(record.monotonicNanoseconds),
            scope: record.pid == nil ? .cgroup : .process, pid: record.pid,
            cgroup: cgroupPath, verdict: DetectorVerdict(raw: record.raw)
        ).jsonLine()
    }
}
