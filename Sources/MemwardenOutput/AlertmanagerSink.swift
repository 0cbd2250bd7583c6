import AsyncHTTPClient
import Logging
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// Turns events into Alertmanager alerts (API v2, POST /api/v2/alerts):
/// `leak.suspected` fires `MemwardenLeakSuspected` and `leak.cleared`
/// resolves it; `budget.<tier>` fires `MemwardenBudget<Tier>` (one tier
/// alert per target at a time: a new tier resolves the other) and
/// `budget.recovered` resolves the tiers it left. Firing alerts are sent
/// again every `resendInterval` with an `endsAt` four intervals ahead, so
/// they resolve by themselves if the agent goes away; a resolved alert is
/// sent once with `endsAt` at the time it cleared.
///
/// An alert is one target's (labels: alertname, severity, node, scope,
/// cgroup, and namespace, pod, container, systemd_unit, comm where known;
/// never the pid, so a restarted process is the same alert). Several
/// processes of one program in one cgroup share an alert, which resolves
/// when the last of them clears. State, not a queue: `submit` updates the
/// alert book under a lock and this sink's Service posts what changed;
/// `queueSize` bounds the alerts held (new ones past it are dropped, counted).
public struct AlertmanagerSink: CountingSink, Service {
    public let name: String
    public let settings: AlertmanagerSettings
    private let book: Locked<AlertBook>
    private let counters = SinkCounters()
    private let delivery: HTTPDelivery
    private let endpoint: String
    private let flushTimeout: Duration
    /// How often the delivering task looks for changed alerts.
    private let tick: Duration
    private let logger: Logger

    public init(
        settings: AlertmanagerSettings, name: String = "alertmanager", flushTimeout: Duration = .seconds(5),
        tick: Duration = .milliseconds(200), logger: Logger
    ) throws(OutputConfigurationError) {
        guard settings.queueSize > 0 else {
            throw OutputConfigurationError(
                sink: name, field: "queue_size", value: "\(settings.queueSize)", problem: "must be at least 1")
        }
        guard settings.resendInterval > .zero else {
            throw OutputConfigurationError(
                sink: name, field: "resend_interval", value: "\(settings.resendInterval)", problem: "must be positive")
        }
        var base = settings.url
        while base.hasSuffix("/") { base.removeLast() }
        endpoint = base + "/api/v2/alerts"
        delivery = try HTTPDelivery(
            sink: name, url: endpoint, caFile: settings.caFile, bearerTokenFile: settings.bearerTokenFile)
        self.name = name
        self.settings = settings
        book = Locked(AlertBook(capacity: settings.queueSize))
        self.flushTimeout = flushTimeout
        self.tick = tick
        self.logger = logger
    }

    public func submit(_ event: AgentEvent) {
        let accepted = book.withLock { $0.apply(event) }
        if !accepted { counters.update { $0.droppedQueueFull += 1 } }
    }

    public var statistics: SinkStatistics { counters.snapshot(queueDepth: book.withLock { $0.pendingCount }) }

    /// The alerts as Alertmanager would list them now (firing and pending resolutions).
    public var alerts: [Alert] { book.withLock { Array($0.alerts.values) } }

    public func run() async throws {
        await delivery.withClient { client in await run(client: client) }
    }

    private func run(client: HTTPClient) async {
        let backoff = Backoff(initial: .milliseconds(500), maximum: settings.resendInterval)
        var failures = 0
        var retryAt = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if ContinuousClock.now >= retryAt {
                switch await send(client: client, due: realtimeNanoseconds(), timeout: settings.timeout) {
                case .delivered, nil:
                    failures = 0
                case .retryable, .rejected:
                    retryAt = ContinuousClock.now.advanced(by: backoff.delay(retry: failures))
                    failures += 1
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: tick) }
        }
        // one last post of what changed (resolutions, new alerts), bounded in time
        if await send(client: client, due: nil, timeout: min(settings.timeout, flushTimeout)) != .delivered {
            let pending = book.withLock { $0.pendingCount }
            if pending > 0 { counters.update { $0.droppedAtShutdown += UInt64(pending) } }
        }
    }

    /// Posts the alerts that changed, and (`now` given) the firing ones due
    /// for a resend. nil when there was nothing to send.
    private func send(client: HTTPClient, due now: UInt64?, timeout: Duration) async -> DeliveryOutcome? {
        let resend = UInt64(settings.resendInterval.seconds * 1e9)
        let wall = realtimeNanoseconds()
        let batch = book.withLock { $0.due(now: now, resendNanoseconds: resend) }
        guard !batch.isEmpty else { return nil }
        let body = Array(AlertBook.json(batch, now: wall, holdNanoseconds: 4 * resend).utf8)
        let outcome = await delivery.post(client: client, url: endpoint, body: body, timeout: timeout, logger: logger)
        switch outcome {
        case .delivered:
            book.withLock { $0.sent(batch, at: wall) }
            counters.update { $0.delivered += UInt64(batch.count) }
        case .rejected(let reason):
            // Alertmanager refuses a malformed batch for good: drop it rather than resend it forever
            logger.warning("alertmanager: alerts rejected", metadata: ["reason": "\(reason)", "alerts": "\(batch.count)"])
            book.withLock { $0.sent(batch, at: wall) }
            counters.update {
                $0.failedAttempts += 1
                $0.droppedRejected += UInt64(batch.count)
            }
        case .retryable(let reason):
            logger.debug("alertmanager: post failed", metadata: ["reason": "\(reason)"])
            counters.update { $0.failedAttempts += 1 }
        }
        return outcome
    }
}

extension AlertmanagerSink {
    /// One alert as Alertmanager sees it.
    public struct Alert: Sendable, Hashable {
        public var labels: [String: String]
        public var annotations: [String: String]
        /// Wall-clock nanoseconds.
        public var startsAt: UInt64
        /// Set once resolved: the time it cleared.
        public var resolvedAt: UInt64?
        /// The targets (EventTarget.key) that keep it firing.
        var members: Set<String>
        /// Changed since it was last sent.
        var dirty = true
        var lastSent: UInt64?

        /// The labels in a stable order, as one string: the alert's identity.
        public var fingerprint: String {
            labels.keys.sorted().map { "\($0)=\(labels[$0]!)" }.joined(separator: ",")
        }
    }
}

/// The alerts of one sink, keyed by fingerprint.
struct AlertBook: Sendable {
    typealias Alert = AlertmanagerSink.Alert
    let capacity: Int
    var alerts: [String: Alert] = [:]

    init(capacity: Int) {
        self.capacity = capacity
    }

    var pendingCount: Int { alerts.values.count(where: \.dirty) }

    static let leakAlert = "MemwardenLeakSuspected"

    static func budgetAlert(_ tier: BudgetTier) -> String {
        "MemwardenBudget" + tier.rawValue.prefix(1).uppercased() + tier.rawValue.dropFirst()
    }

    /// A fixed severity per alert name: resolving events (severity info)
    /// must find the alert they resolve.
    static func severity(_ alertname: String) -> String {
        switch alertname {
        case budgetAlert(.critical), budgetAlert(.emergency): "critical"
        default: "warning"
        }
    }

    /// Applies an event; false when a new alert did not fit.
    mutating func apply(_ event: AgentEvent) -> Bool {
        guard let target = event.target else { return true }
        let time = event.epochNanoseconds
        switch (event.type, event.details) {
        case (.leakSuspected, .leak(let leak)), (.leakUpdated, .leak(let leak)):
            return fire(Self.leakAlert, event: event, target: target, annotations: Self.annotations(leak, event: event))
        case (.leakCleared, _):
            resolve(Self.leakAlert, event: event, target: target, at: time)
        case (.budgetWarning, .budget(let budget)), (.budgetHigh, .budget(let budget)),
            (.budgetCritical, .budget(let budget)), (.budgetEmergency, .budget(let budget)):
            for tier in BudgetTier.allCases where tier != budget.tier {
                resolve(Self.budgetAlert(tier), event: event, target: target, at: time)
            }
            return fire(
                Self.budgetAlert(budget.tier), event: event, target: target,
                annotations: Self.annotations(budget, event: event))
        case (.budgetRecovered, .budget(let budget)):
            for tier in BudgetTier.allCases where tier >= budget.tier {
                resolve(Self.budgetAlert(tier), event: event, target: target, at: time)
            }
        default:
            break
        }
        return true
    }

    private mutating func fire(_ alertname: String, event: AgentEvent, target: EventTarget, annotations: [String: String]) -> Bool {
        let labels = Self.labels(alertname, event: event, target: target)
        let key = Alert(labels: labels, annotations: [:], startsAt: 0, members: []).fingerprint
        if var alert = alerts[key] {
            if alert.resolvedAt != nil {
                alert.resolvedAt = nil
                alert.startsAt = event.epochNanoseconds
                alert.members = []
            }
            alert.members.insert(target.key)
            alert.annotations = annotations
            alert.dirty = true
            alerts[key] = alert
            return true
        }
        guard alerts.count < capacity else { return false }
        alerts[key] = Alert(
            labels: labels, annotations: annotations, startsAt: event.epochNanoseconds, members: [target.key])
        return true
    }

    private mutating func resolve(_ alertname: String, event: AgentEvent, target: EventTarget, at time: UInt64) {
        let key = Alert(labels: Self.labels(alertname, event: event, target: target), annotations: [:], startsAt: 0, members: [])
            .fingerprint
        guard var alert = alerts[key], alert.resolvedAt == nil else { return }
        alert.members.remove(target.key)
        guard alert.members.isEmpty else {
            alerts[key] = alert
            return
        }
        alert.resolvedAt = max(time, alert.startsAt)
        alert.dirty = true
        alerts[key] = alert
    }

    static func labels(_ alertname: String, event: AgentEvent, target: EventTarget) -> [String: String] {
        var labels = ["alertname": alertname, "severity": severity(alertname), "scope": target.scope.rawValue]
        let identity = target.identity
        labels["cgroup"] = identity.cgroup.isEmpty ? "unknown" : identity.cgroup
        if let node = event.node { labels["node"] = node }
        if let pod = identity.pod {
            labels["namespace"] = pod.namespace
            labels["pod"] = pod.name
            if let container = pod.container { labels["container"] = container }
        }
        if let unit = identity.systemdUnit { labels["systemd_unit"] = unit }
        if target.scope == .process, let comm = target.comm { labels["comm"] = comm }
        return labels
    }

    static func subject(_ event: AgentEvent, _ target: EventTarget) -> String {
        let identity = target.identity
        var who: String
        if let pod = identity.pod {
            who = "\(pod.namespace)/\(pod.name)" + (pod.container.map { " container \($0)" } ?? "")
        } else if let unit = identity.systemdUnit {
            who = unit
        } else {
            who = "cgroup \(identity.cgroup.isEmpty ? "(unknown)" : identity.cgroup)"
        }
        if target.scope == .process {
            who = "process \(target.comm ?? "?") (pid \(target.pid.map(String.init) ?? "?")) in " + who
        }
        return who + (event.node.map { " on \($0)" } ?? "")
    }

    static func annotations(_ leak: LeakDetails, event: AgentEvent) -> [String: String] {
        guard let target = event.target else { return [:] }
        var description = "Memory of \(subject(event, target)) grows like a leak: \(formatBytes(leak.growthBytesPerSecond))/s, "
            + "confidence \(JSONLine.format(leak.confidence, decimals: 2)), detectors \(leak.detectors.joined(separator: ", "))"
        if let seconds = leak.secondsToLimit {
            description += "; the limit is reached in about \(formatDuration(seconds))"
        }
        description += "."
        var annotations = [
            "summary": "Memory leak suspected: \(subject(event, target))",
            "description": description,
            "confidence": JSONLine.format(leak.confidence, decimals: 3),
            "growth_bytes_per_second": String(leak.growthBytesPerSecond),
        ]
        if let seconds = leak.secondsToLimit { annotations["seconds_to_limit"] = JSONLine.format(seconds, decimals: 0) }
        if let pid = target.pid { annotations["pid"] = String(pid) }
        return annotations
    }

    static func annotations(_ budget: BudgetDetails, event: AgentEvent) -> [String: String] {
        guard let target = event.target else { return [:] }
        let percent = JSONLine.format(budget.share * 100, decimals: 1)
        var description = "Memory of \(subject(event, target)) is at \(percent)% of its budget "
            + "(\(formatBytes(Int64(clamping: budget.usageBytes))) of \(formatBytes(Int64(clamping: budget.budgetBytes))), rule \(budget.rule))"
        if let seconds = budget.secondsToBudget { description += "; the budget is reached in about \(formatDuration(seconds))" }
        description += "."
        var annotations = [
            "summary": "Memory budget \(budget.tier.rawValue): \(subject(event, target)) at \(percent)%",
            "description": description,
            "budget_share": JSONLine.format(budget.share, decimals: 4),
            "rule": budget.rule,
        ]
        if let seconds = budget.secondsToBudget { annotations["seconds_to_budget"] = JSONLine.format(seconds, decimals: 0) }
        return annotations
    }

    /// The alerts to post: changed ones, and (with `now`) firing ones last
    /// sent a resend interval ago.
    func due(now: UInt64?, resendNanoseconds: UInt64) -> [Alert] {
        alerts.values.filter { alert in
            if alert.dirty { return true }
            guard let now, alert.resolvedAt == nil, let last = alert.lastSent else { return false }
            return now &- last >= resendNanoseconds
        }.sorted { $0.fingerprint < $1.fingerprint }
    }

    /// Marks a batch as sent: resolved alerts are forgotten, unless they
    /// fired again meanwhile (then they are dirty and stay).
    mutating func sent(_ batch: [Alert], at time: UInt64) {
        for sentAlert in batch {
            let key = sentAlert.fingerprint
            guard var alert = alerts[key] else { continue }
            // changed again while the post was under way: send the new state next time
            guard alert == sentAlert else { continue }
            if alert.resolvedAt != nil {
                alerts[key] = nil
            } else {
                alert.dirty = false
                alert.lastSent = time
                alerts[key] = alert
            }
        }
    }

    /// The request body: a JSON array of alerts.
    static func json(_ batch: [Alert], now: UInt64, holdNanoseconds: UInt64) -> String {
        var text = "["
        for (i, alert) in batch.enumerated() {
            if i > 0 { text += "," }
            var line = JSONLine()
            line.addRaw("labels", JSONLine.object(alert.labels))
            line.addRaw("annotations", JSONLine.object(alert.annotations))
            line.add("startsAt", WallClock.rfc3339(epochNanoseconds: alert.startsAt))
            line.add("endsAt", WallClock.rfc3339(epochNanoseconds: alert.resolvedAt ?? now + holdNanoseconds))
            text += line.finish()
        }
        return text + "]"
    }
}

func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return JSONLine.format(value, decimals: unit == 0 ? 0 : 1) + " " + units[unit]
}

func formatDuration(_ seconds: Double) -> String {
    if seconds < 120 { return JSONLine.format(seconds, decimals: 0) + " s" }
    if seconds < 7200 { return JSONLine.format(seconds / 60, decimals: 0) + " min" }
    if seconds < 172_800 { return JSONLine.format(seconds / 3600, decimals: 1) + " h" }
    return JSONLine.format(seconds / 86400, decimals: 1) + " days"
}
