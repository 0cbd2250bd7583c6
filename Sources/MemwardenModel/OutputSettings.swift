/// Where events go besides stdout, from the policy file's `outputs` section
/// (flags override). Values only: the sinks in Output/ act on them.
public struct OutputSettings: Sendable, Hashable {
    public var stdout: Bool
    public var webhook: WebhookSettings?
    public var alertmanager: AlertmanagerSettings?
    public var kubernetes: KubernetesOutputSettings

    public init(
        stdout: Bool = true, webhook: WebhookSettings? = nil, alertmanager: AlertmanagerSettings? = nil,
        kubernetes: KubernetesOutputSettings = KubernetesOutputSettings()
    ) {
        self.stdout = stdout
        self.webhook = webhook
        self.alertmanager = alertmanager
        self.kubernetes = kubernetes
    }
}

public struct WebhookSettings: Sendable, Hashable {
    public var url: String
    public var timeout: Duration
    /// Attempts after the first one, with exponential backoff and jitter.
    public var maxRetries: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Events waiting for delivery; when full the oldest is dropped (counted).
    public var queueSize: Int
    /// A file holding a bearer token (re-read when it changes).
    public var bearerTokenFile: String?
    /// A file holding the HMAC-SHA256 key; the signature goes in `X-Memwarden-Signature`.
    public var hmacSecretFile: String?
    /// PEM CA bundle to verify the receiver's certificate (else the system's).
    public var caFile: String?
    /// Only events at or above this severity.
    public var minSeverity: AgentEvent.Severity

    public init(
        url: String, timeout: Duration = .seconds(5), maxRetries: Int = 5, initialBackoff: Duration = .milliseconds(500),
        maxBackoff: Duration = .seconds(30), queueSize: Int = 1000, bearerTokenFile: String? = nil,
        hmacSecretFile: String? = nil, caFile: String? = nil, minSeverity: AgentEvent.Severity = .info
    ) {
        self.url = url
        self.timeout = timeout
        self.maxRetries = maxRetries
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.queueSize = queueSize
        self.bearerTokenFile = bearerTokenFile
        self.hmacSecretFile = hmacSecretFile
        self.caFile = caFile
        self.minSeverity = minSeverity
    }
}

public struct AlertmanagerSettings: Sendable, Hashable {
    /// Base URL, e.g. http://alertmanager:9093 (POST {url}/api/v2/alerts).
    public var url: String
    public var timeout: Duration
    /// Firing alerts are sent again at this interval (Alertmanager resolves
    /// an alert it has not heard of within its resolve_timeout).
    public var resendInterval: Duration
    public var queueSize: Int
    public var bearerTokenFile: String?
    public var caFile: String?

    public init(
        url: String, timeout: Duration = .seconds(5), resendInterval: Duration = .seconds(60), queueSize: Int = 1000,
        bearerTokenFile: String? = nil, caFile: String? = nil
    ) {
        self.url = url
        self.timeout = timeout
        self.resendInterval = resendInterval
        self.queueSize = queueSize
        self.bearerTokenFile = bearerTokenFile
        self.caFile = caFile
    }
}

public struct KubernetesOutputSettings: Sendable, Hashable {
    /// Kubernetes Events (events.k8s.io/v1) on the pod. Off by default.
    public var events: Bool
    /// Pod annotations (merge patch, memwarden.io/…). Off by default.
    public var annotations: Bool

    public init(events: Bool = false, annotations: Bool = false) {
        self.events = events
        self.annotations = annotations
    }
}
