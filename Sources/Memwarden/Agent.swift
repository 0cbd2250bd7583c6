import Logging
import ServiceLifecycle
import UnixSignals

/// Wires the agent's long-running parts into one ServiceGroup that owns
/// SIGTERM/SIGINT: on either, the source detaches from the kernel, everything
/// it drained is written, and the group ends.
public enum Agent {
    public enum Output: Sendable {
        /// Events (and on request the sample stream) on stdout and to the sinks (`memwarden run`).
        case events(PipelineSettings)
        /// A trace file (`memwarden record`), and optionally the kernel's verdicts.
        case trace(LineWriter, TraceFilter, verdicts: LineWriter?)
    }

    public static func run(
        kernel: KernelConfiguration, output: Output, duration: Duration?, statsInterval: Duration = .seconds(5),
        logger: Logger
    ) async throws {
        let source = BPFSource(configuration: kernel, statsInterval: statsInterval, logger: logger)
        let formatter = SampleFormatter(hierarchy: CgroupHierarchy.detect())
        if formatter.cgroups == nil {
            logger.warning("no memory cgroup hierarchy found: samples will name no cgroup")
        }
        let sink: any Service
        switch output {
        case .events(let settings):
            sink = LivePipeline(input: source.output, formatter: formatter, settings: settings, logger: logger)
        case .trace(let writer, let filter, let verdicts):
            sink = TraceRecorder(
                input: source.output, formatter: formatter, writer: writer, filter: filter, verdictWriter: verdicts,
                logger: logger)
        }
        // Graceful shutdown runs in reverse order: the timer, then the source (which
        // finishes its stream), then the sink once it has written everything.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: sink, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: source, successTerminationBehavior: .gracefullyShutdownGroup),
        ]
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
