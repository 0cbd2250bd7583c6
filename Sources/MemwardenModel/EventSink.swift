/// Where events go: stdout, a webhook, Alertmanager, Kubernetes. The one
/// rule of a sink: `submit` never blocks and never fails the caller. A sink
/// that talks to a network queues (bounded), delivers from its own Service,
/// and counts what it drops, so a slow or dead receiver never slows
/// detection or the other sinks.
public protocol EventSink: Sendable {
    /// Short and stable ("stdout", "webhook", "alertmanager", "kubernetes"):
    /// the `sink` label of its metrics and the key of its drops.
    var name: String { get }
    func submit(_ event: AgentEvent)
}
