import Logging
import MemwardenModel
import MemwardenOutput
import ServiceLifecycle

/// Everything downstream of the assessor in one value, for Agent.swift to
/// wire: the configured sinks, the recent-events ring, the metrics, the
/// readiness flags, the target table and the HTTP server. The pipeline
/// submits events and target snapshots here; `services` go into the
/// ServiceGroup ahead of the pipeline's stages (the group shuts down in
/// reverse order, so the sinks flush after the last event was submitted).
public final class AgentOutputs: EventSink, Sendable {
    public let name = "outputs"
    public let sinks: OutputSinks
    public let recent: RecentEvents
    public let metrics: AgentMetrics
    public let status: AgentStatus
    public let targets: TargetTable
    /// The right-sizing figures the pipeline posts (/api/v1/recommendations).
    public let recommendations: RecommendationBoard
    public let server: HTTPServer?
    /// `--metrics-listen`: /metrics and the probes only.
    public let metricsServer: HTTPServer?
    public let node: String?

    /// - Parameters:
    ///   - listen: `--listen` (nil: no HTTP server).
    ///   - metricsListen: `--metrics-listen` (nil: none).
    ///   - inCluster: readiness then waits for the pod metadata too.
    public init(
        settings: OutputSettings, listen: String?, metricsListen: String? = nil, inCluster: Bool, node: String?,
        maxMetricTargets: Int = 1000, recentEvents: Int = 1000, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in },
        onMetricsListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws {
        let recent = RecentEvents(capacity: recentEvents)
        let metrics = AgentMetrics(maxTargets: maxMetricTargets)
        let status = AgentStatus(inCluster: inCluster)
        let targets = TargetTable()
        let recommendations = RecommendationBoard()
        self.recommendations = recommendations
        let sinks = try OutputSinks(settings: settings, extra: [recent, metrics], logger: logger)
        for sink in sinks.counting { metrics.track(sink: sink) }
        server = try listen.map {
            try HTTPServer(
                listen: $0, status: status, targets: targets, events: recent, metrics: metrics, logger: logger,
                recommendations: recommendations, onListening: onListening)
        }
        metricsServer = try metricsListen.map {
            try HTTPServer(
                listen: $0, endpoints: .health, status: status, targets: targets, events: recent, metrics: metrics,
                logger: logger, onListening: onMetricsListening)
        }
        (self.recent, self.metrics, self.status, self.targets, self.sinks, self.node) = (
            recent, metrics, status, targets, sinks, node
        )
    }

    /// The delivering Services: the sinks and the HTTP server.
    public var services: [any Service] {
        sinks.services + servers
    }

    /// The HTTP servers configured (the API's, the metrics').
    public var servers: [any Service] {
        [server, metricsServer].compactMap { $0 }
    }

    public func submit(_ event: AgentEvent) {
        sinks.submit(event)
    }

    /// A target's current state, for /api/v1/targets and its metrics.
    public func update(_ target: TargetSnapshot) {
        targets.upsert(target)
        metrics.update(target)
    }

    /// The target went away (process exit, cgroup removed).
    public func removeTarget(key: String) {
        targets.remove(key: key)
        metrics.removeTarget(key: key)
    }

    public func record(kernelCounters: KernelCounters) {
        metrics.record(kernelCounters: kernelCounters)
    }
}
