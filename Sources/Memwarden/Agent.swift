import Logging
import ServiceLifecycle
import UnixSignals

/// Wires the agent's long-running parts into one ServiceGroup that owns
/// SIGTERM/SIGINT: on either, the source detaches from the kernel, everything
/// it drained is written, and the group ends.
public enum Agent {
    public enum Output: Sendable {
        /// Events (and on request the sample stream) on stdout and to the sinks
        /// (`memwarden run`), with budgets and responses when `responses` is set.
        case events(PipelineSettings, responses: ResponseSetup?)
        /// A trace file (`memwarden record`), and optionally the kernel's verdicts.
        case trace(LineWriter, TraceFilter, verdicts: LineWriter?)
    }

    /// What budgets and responses need besides the pipeline's settings.
    public struct ResponseSetup: Sendable {
        public var policy: PolicyStore
        /// Where the store's reload events go; connected here to the sinks.
        public var policyEvents: EventRelay
        public var stateFile: String
        public var dryRun: Bool

        public init(policy: PolicyStore, policyEvents: EventRelay, stateFile: String, dryRun: Bool) {
            self.policy = policy
            self.policyEvents = policyEvents
            self.stateFile = stateFile
            self.dryRun = dryRun
        }
    }

    public static func run(
        kernel: KernelConfiguration, output: Output, hostPaths: HostPaths = HostPaths(), duration: Duration?,
        statsInterval: Duration = .seconds(5), logger: Logger
    ) async throws {
        let source = BPFSource(configuration: kernel, statsInterval: statsInterval, logger: logger)
        let hierarchy = CgroupHierarchy.detect(hostPaths: hostPaths)
        let formatter = SampleFormatter(hierarchy: hierarchy, hostPaths: hostPaths)
        if formatter.cgroups == nil {
            logger.warning("no memory cgroup hierarchy found: samples will name no cgroup")
        }
        let sink: any Service
        var helpers: [any Service] = []
        switch output {
        case .events(let settings, let setup):
            let inbox = EventInbox()
            let fanout = EventFanout([inbox])
            var responses: PipelineResponses?
            if let setup {
                setup.policyEvents.connect(fanout)
                let responder = Responder(
                    configuration: ResponderConfiguration(
                        hierarchy: hierarchy, stateFile: ResponseStateFile(path: setup.stateFile), dryRun: setup.dryRun,
                        node: settings.node),
                    clock: { [origin = formatter.origin] in ClockReading.system(start: origin) }, logger: logger)
                let service = ResponderService(responder: responder, sink: fanout)
                let stage = ResponseStage(
                    responder: service, sink: fanout, node: settings.node,
                    clock: { [origin = formatter.origin] in ClockReading.system(start: origin) })
                responses = PipelineResponses(policy: setup.policy, stage: stage)
                // shutdown runs in reverse: the store stops, then the responder restores, then the pipeline prints it
                helpers = [service, setup.policy]
            }
            sink = LivePipeline(
                input: source.output, formatter: formatter, settings: settings, responses: responses, inbox: inbox,
                logger: logger)
        case .trace(let writer, let filter, let verdicts):
            sink = TraceRecorder(
                input: source.output, formatter: formatter, writer: writer, filter: filter, verdictWriter: verdicts,
                logger: logger)
        }
        // Graceful shutdown runs in reverse order: the timer, then the source (which
        // finishes its stream), then the sink once it has written everything.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: sink, successTerminationBehavior: .gracefullyShutdownGroup)
        ]
        services += helpers.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
        services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup))
        if let duration {
            services.append(.init(service: Countdown(duration: duration), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: configuration).run()
    }
}

/// Ends the group after a fixed time (`--duration`).
struct Countdown: Service {
    let duration: Duration

    func run() async throws {
        // a shutdown that comes first (a signal) cancels the sleep; either way the group ends
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    }
}
