import Logging
import ServiceLifecycle
import UnixSignals

/// Wires the agent's long-running parts into one ServiceGroup that owns
/// SIGTERM/SIGINT: on either, the source detaches from the kernel, everything
/// it drained is written, and the group ends.
public enum Agent {
    public enum Output: Sendable {
        /// JSON events and stats on stdout (`memwarden run`); with `verdicts`,
        /// each detector verdict change too.
        case events(verdicts: Bool)
        /// A trace file (`memwarden record`), and optionally the kernel's verdicts.
        case trace(LineWriter, TraceFilter, verdicts: LineWriter?)
    }

    public static func run(
        kernel: KernelConfiguration, output: Output, duration: Duration?, statsInterval: Duration = .seconds(5),
        logger: Logger
    ) async throws {
        // systemd (Type=notify): READY=1 once the program is attached; the watchdog service
        // below pings and sends STOPPING=1. No-ops outside systemd. Minimal wiring by the
        // packaging branch: the lead moves READY=1 to after the policy has loaded too.
        let systemd = SystemdNotifier(logger: logger)
        let source = BPFSource(configuration: kernel, statsInterval: statsInterval, logger: logger, onAttached: systemd.ready)
        let formatter = SampleFormatter(hierarchy: CgroupHierarchy.detect())
        if formatter.cgroups == nil {
            logger.warning("no memory cgroup hierarchy found: samples will name no cgroup")
        }
        let sink: any Service
        switch output {
        case .events(let verdicts):
            sink = EventPrinter(input: source.output, formatter: formatter, verdicts: verdicts, logger: logger)
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
        // last, so that graceful shutdown (reverse order) reaches it first: STOPPING=1 goes out
        // as shutdown begins
        services.append(.init(service: SystemdWatchdog(notifier: systemd)))
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
