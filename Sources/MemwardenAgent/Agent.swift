import Logging
import MemwardenIdentity
import MemwardenKernel
import MemwardenKubernetes
import MemwardenModel
import MemwardenOutput
import MemwardenPolicy
import MemwardenResponse
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Wires the agent's long-running parts into one ServiceGroup that owns
/// SIGTERM/SIGINT: on either, the source detaches from the kernel, everything
/// it drained is written, and the group ends.
public enum Agent {
    public enum Output: Sendable {
        /// Events to the sinks, budgets and responses, the HTTP API (`memwarden run`).
        case events(PipelineSettings, RunSetup)
        /// A trace file (`memwarden record`), and optionally the kernel's verdicts.
        case trace(LineWriter, TraceFilter, verdicts: LineWriter?)
    }

    /// What `run` needs besides the kernel and the pipeline's settings.
    public struct RunSetup: Sendable {
        public var policy: PolicyStore
        /// Where the store's reload events go; connected here to the sinks.
        public var policyEvents: EventRelay
        /// The sinks (the policy's `outputs` section with the flags' overrides).
        public var outputs: OutputSettings
        /// ADDR:PORT of the HTTP API (nil: none).
        public var listen: String?
        /// ADDR:PORT of a second server with /metrics and the probes only (nil: none).
        public var metricsListen: String?
        public var stateFile: String
        public var dryRun: Bool
        /// The API server to learn pod metadata from (nil: not in a cluster).
        public var kubernetes: KubernetesConfiguration?
        /// The cgroup subtrees a throttle may write under (empty: all).
        public var writableCgroups: [String]

        public init(
            policy: PolicyStore, policyEvents: EventRelay, outputs: OutputSettings, listen: String?, stateFile: String,
            dryRun: Bool, kubernetes: KubernetesConfiguration? = nil, writableCgroups: [String] = [],
            metricsListen: String? = nil
        ) {
            self.metricsListen = metricsListen
            self.kubernetes = kubernetes
            self.writableCgroups = writableCgroups
            self.policy = policy
            self.policyEvents = policyEvents
            self.outputs = outputs
            self.listen = listen
            self.stateFile = stateFile
            self.dryRun = dryRun
        }
    }

    public static func run(
        kernel: KernelConfiguration, output: Output, hostPaths: HostPaths = HostPaths(), duration: Duration?,
        statsInterval: Duration = .seconds(5), logger: Logger
    ) async throws {
        // systemd (Type=notify): READY=1 once the program is attached (the policy was
        // loaded before); the watchdog service pings and sends STOPPING=1. No-ops
        // outside systemd.
        let systemd = SystemdNotifier(logger: logger)
        // once attached, the loading work is done: its pages of the executable need not stay
        // resident; once the other services have started (the first counters), theirs neither
        let source = BPFSource(
            configuration: kernel, statsInterval: statsInterval, logger: logger,
            onAttached: {
                systemd.ready()
                StartupPages.release()
            },
            onSettled: { StartupPages.release() })
        let hierarchy = CgroupHierarchy.detect(hostPaths: hostPaths)
        // in a cluster: pod metadata from the API server's watch, for every identity
        var kubernetes: (client: KubernetesClient, pods: PodIndex)?
        if case .events(_, let setup) = output, let configuration = setup.kubernetes {
            kubernetes = (try KubernetesClient(configuration: configuration, logger: logger), PodIndex())
        }
        let resolver = RecordResolver(hierarchy: hierarchy, hostPaths: hostPaths, metadata: kubernetes?.pods)
        let formatter = SampleFormatter()
        if resolver.cgroups == nil {
            logger.warning("no memory cgroup hierarchy found: samples will name no cgroup")
        }
        // The parts of the one service list below, filled in per output.
        let pipeline: any Service
        var sinks: [any Service] = []
        var stages: [any Service] = []
        switch output {
        case .events(let settings, let setup):
            let outputs = try AgentOutputs(
                settings: setup.outputs, listen: setup.listen, metricsListen: setup.metricsListen, inCluster: kubernetes != nil,
                node: settings.node,
                logger: logger)
            let observer = TargetObserver(table: outputs.targets, metrics: outputs.metrics)
            var eventSinks: [any EventSink] = [outputs, observer]
            var clusterServices: [any Service] = []
            var kubernetesLosses: (@Sendable () -> UInt64)?
            if let kubernetes {
                clusterServices.append(PodWatcher(client: kubernetes.client, index: kubernetes.pods, logger: logger))
                clusterServices.append(PodSyncReadiness(pods: kubernetes.pods, status: outputs.status))
                if setup.outputs.kubernetes.events || setup.outputs.kubernetes.annotations {
                    let sink = KubernetesSink(
                        client: kubernetes.client, settings: .init(output: setup.outputs.kubernetes), logger: logger)
                    eventSinks.append(sink)
                    sinks.append(sink)
                    kubernetesLosses = { sink.statistics.lost }
                }
            }
            let events = EventFanout(eventSinks)
            setup.policyEvents.connect(events)
            outputs.status.markReady(.policy)
            let clock: @Sendable () -> ClockReading = { [origin = formatter.origin] in ClockReading.system(start: origin) }
            let responder = ResponderService(
                responder: Responder(
                    configuration: ResponderConfiguration(
                        hierarchy: hierarchy, stateFile: ResponseStateFile(path: setup.stateFile), dryRun: setup.dryRun,
                        node: settings.node, writableSubtrees: setup.writableCgroups),
                    clock: clock, logger: logger),
                sink: events)
            let stage = ResponseStage(responder: responder, sink: events, node: settings.node, clock: clock)
            pipeline = LivePipeline(
                input: source.output, resolver: resolver, formatter: formatter,
                outputs: PipelineOutputs(
                    events: events, stdout: outputs.sinks.stdout, metrics: outputs.metrics, targets: observer,
                    status: outputs.status,
                    lossTotals: { [kubernetesLosses] in
                        var totals = outputs.sinks.lossTotals()
                        if let kubernetesLosses { totals["sink.kubernetes"] = kubernetesLosses() }
                        totals["responder"] = responder.dropped
                        return totals
                    }, recommendations: outputs.recommendations),
                settings: settings, responses: PipelineResponses(policy: setup.policy, stage: stage), logger: logger)
            sinks = outputs.sinks.services + sinks
            stages = [responder, setup.policy] + outputs.servers + clusterServices
        case .trace(let writer, let filter, let verdicts):
            pipeline = TraceRecorder(
                input: source.output, resolver: resolver, formatter: formatter, writer: writer, filter: filter,
                verdictWriter: verdicts, logger: logger)
        }
        let countdown: [any Service] = duration.map { [Countdown(duration: $0)] } ?? []
        let watchdog = SystemdWatchdog(notifier: systemd)
        // Every service of the agent, in start order. Graceful shutdown runs the list backwards,
        // so each stops before what it feeds: the watchdog (STOPPING=1 goes out as shutdown
        // begins), the timer, the source (which finishes its stream), the pod watch, the HTTP API,
        // the policy store and the responder (which restores), the pipeline (which writes what the
        // stream held and says agent.stopping), and the sinks, which flush last.
        let services: [any Service] = sinks + [pipeline] + stages + [source] + countdown + [watchdog]
        var configuration = ServiceGroupConfiguration(
            services: services.map { service in
                // one that ends by itself ends the run, gracefully; the watchdog, which ends
                // only once shutdown has begun, keeps the group's default
                service is SystemdWatchdog
                    ? .init(service: service)
                    : .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)
            },
            logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        // The source loads the program inside the group, beside the other services: loading it
        // first lowered the peak by 6 MiB, but then the agent's own records came before the
        // pod watch had listed, the HTTP probes waited for the load, and the signals needed a
        // second owner (BENCHMARKS.md, Footprint).
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            try? await kubernetes?.client.shutdown()
            throw error
        }
        try await kubernetes?.client.shutdown()
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

/// /readyz waits for the pod metadata in a cluster: marks it ready once the
/// watch has listed this node's pods (and not ready while it relists).
struct PodSyncReadiness: Service {
    let pods: PodIndex
    let status: AgentStatus

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if pods.synced {
                    status.markReady(.podMetadata)
                } else {
                    status.markNotReady(.podMetadata, reason: "listing this node's pods from the API server")
                }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}
