import Logging
import MemwardenModel
import ServiceLifecycle

/// The sinks `OutputSettings` asks for, built once at start: submit an event
/// here and every sink gets it. Each network sink (and stdout's writer) is a
/// Service to add to the agent's ServiceGroup (`services`); the HTTP ring and
/// the metrics can join as extra sinks.
public final class OutputSinks: EventSink, Sendable {
    public let name = "outputs"
    public let stdout: StdoutSink?
    public let webhook: WebhookSink?
    public let alertmanager: AlertmanagerSink?
    /// Everything that receives events: the configured sinks and the extras.
    public let sinks: [any EventSink]

    public init(settings: OutputSettings, extra: [any EventSink] = [], logger: Logger) throws(OutputConfigurationError) {
        stdout = settings.stdout ? StdoutSink(logger: logger) : nil
        webhook = try settings.webhook.map { settings throws(OutputConfigurationError) in
            try WebhookSink(settings: settings, logger: logger)
        }
        alertmanager = try settings.alertmanager.map { settings throws(OutputConfigurationError) in
            try AlertmanagerSink(settings: settings, logger: logger)
        }
        var sinks: [any EventSink] = []
        if let stdout { sinks.append(stdout) }
        if let webhook { sinks.append(webhook) }
        if let alertmanager { sinks.append(alertmanager) }
        self.sinks = sinks + extra
    }

    /// The Services that deliver: add them to the ServiceGroup before the
    /// pipeline's stages, so they shut down after them (reverse order) and
    /// flush the last events.
    public var services: [any Service] {
        var services: [any Service] = []
        if let stdout { services.append(stdout) }
        if let webhook { services.append(webhook) }
        if let alertmanager { services.append(alertmanager) }
        return services
    }

    /// The sinks that count what they do (for AgentMetrics.track).
    public var counting: [any CountingSink] { sinks.compactMap { $0 as? any CountingSink } }

    public func submit(_ event: AgentEvent) {
        for sink in sinks { sink.submit(event) }
    }

    /// What each sink dropped so far, under its `lossKey`, for the agent's loss ledger.
    public func lossTotals() -> [String: UInt64] {
        Dictionary(counting.map { ($0.lossKey, $0.statistics.dropped) }) { $0 + $1 }
    }
}
