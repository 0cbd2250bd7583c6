import CoreMetrics
import MemwardenModel
import Prometheus
import Synchronization

/// The agent's Prometheus metrics (docs/metrics.md), in one registry that
/// /metrics renders. Per-target series are labelled by cgroup and identity,
/// never by pid, and at most `maxTargets` targets get series: the rest are
/// counted in `memwarden_metrics_targets_omitted`, so a node with thousands
/// of short-lived processes cannot blow up the scraper.
///
/// The pipeline calls `record(kernelCounters:)` at each counter reading,
/// `update(_:)` / `removeTarget(key:)` as targets change, and submits every
/// event here too (an EventSink: events emitted, policy reloads). Sinks that
/// count what they do are read at each scrape (`track(sink:)`).
public final class AgentMetrics: EventSink, Sendable {
    public let name = "metrics"
    public let registry: PrometheusCollectorRegistry
    public let maxTargets: Int

    private struct State {
        var kernel = KernelCounters()
        var confirmationEvicted: UInt64 = 0
        var targets: [String: TargetSeries] = [:]
        var omitted: Set<String> = []
        var sinks: [any CountingSink] = []
        var sinkSeen: [String: SinkStatistics] = [:]
    }

    private let state = Mutex(State())

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), maxTargets: Int = 1000) {
        self.registry = registry
        self.maxTargets = max(0, maxTargets)
        gauge(Self.buildInfo, [("version", MemwardenVersion.current)]).set(1.0)
        gauge(Self.targetsOmitted).set(0.0)
        for type in AgentEvent.EventType.allCases { _ = counter(Self.eventsEmitted, [("type", type.rawValue)]) }
        _ = counter(Self.policyReloads)
        _ = counter(Self.policyReloadErrors)
    }

    /// Routes swift-metrics (libraries' own metrics) into the same registry.
    /// Once per process: swift-metrics has one global factory.
    public func bootstrapSwiftMetrics() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    // MARK: kernel counters

    /// The kernel program's counters (totals since it was loaded): the
    /// counters advance by the difference to the last reading.
    public func record(kernelCounters now: KernelCounters) {
        let last = state.withLock { s in
            let last = s.kernel
            s.kernel = now
            return last
        }
        func delta(_ path: KeyPath<KernelCounters, UInt64>) -> Int64 {
            let (a, b) = (now[keyPath: path], last[keyPath: path])
            // a reload restarts the counters: the new total is all new
            return Int64(clamping: a >= b ? a - b : a)
        }
        counter(Self.kernelEvents).increment(by: delta(\.events))
        counter(Self.kernelCoalesced).increment(by: delta(\.coalesced))
        counter(Self.kernelSamples, [("scope", "process")]).increment(by: delta(\.processSamples))
        counter(Self.kernelSamples, [("scope", "cgroup")]).increment(by: delta(\.cgroupSamples))
        counter(Self.kernelUnattributed).increment(by: delta(\.unattributed))
        counter(Self.kernelExecs).increment(by: delta(\.execs))
        counter(Self.kernelExits).increment(by: delta(\.exits))
        counter(Self.kernelVerdicts).increment(by: delta(\.verdicts))
        counter(Self.kernelMapFull).increment(by: delta(\.mapFull))
        counter(Self.mapEvictions, [("map", "process")]).increment(by: delta(\.processEvictions))
        counter(Self.mapEvictions, [("map", "cgroup")]).increment(by: delta(\.cgroupEvictions))
        counter(Self.eventsLost, [("stage", "ring_buffer")]).increment(by: delta(\.ringBufferDrops))
        counter(Self.eventsLost, [("stage", "userspace")]).increment(by: delta(\.userspaceDrops))
        counter(Self.eventsLost, [("stage", "stdout")]).increment(by: delta(\.stdoutDrops))
        gauge(Self.kernelTracked, [("map", "process")]).set(Double(now.processesTracked))
        gauge(Self.kernelTracked, [("map", "cgroup")]).set(Double(now.cgroupsTracked))
    }

    /// The share of the kernel's samples lost over the last stats interval.
    public func record(samplesLostRatio: Double) {
        gauge(Self.samplesLostRatio).set(samplesLostRatio)
    }

    /// The detection confirmation stage's state (its evictions advance by
    /// the difference to the last reading, like the kernel's counters).
    public func record(confirmation now: ConfirmationStatistics) {
        let last = state.withLock { s in
            let last = s.confirmationEvicted
            s.confirmationEvicted = now.evicted
            return last
        }
        counter(Self.confirmationEvictions).increment(by: Int64(clamping: now.evicted >= last ? now.evicted - last : now.evicted))
        gauge(Self.confirmationTargets, [("state", "tracked")]).set(Double(now.targets))
        gauge(Self.confirmationTargets, [("state", "suspected")]).set(Double(now.suspected))
        gauge(Self.confirmationHistoryBytes).set(Double(now.historyBytes))
    }

    // MARK: targets

    /// Sets a target's series (creating them while under the cap).
    public func update(_ target: TargetSnapshot) {
        let key = target.key
        let series: TargetSeries? = state.withLock { s in
            if let existing = s.targets[key] { return existing }
            guard s.targets.count < maxTargets else {
                s.omitted.insert(key)
                return nil
            }
            s.omitted.remove(key)
            let created = TargetSeries(registry: registry, labels: Self.labels(target))
            s.targets[key] = created
            return created
        }
        gauge(Self.targetsOmitted).set(Double(state.withLock { $0.omitted.count }))
        guard let series else { return }
        series.set(target, registry: registry)
    }

    /// Drops a target's series (it exited, its cgroup went away).
    public func removeTarget(key: String) {
        let series = state.withLock { s in
            s.omitted.remove(key)
            return s.targets.removeValue(forKey: key)
        }
        series?.remove(registry: registry)
        gauge(Self.targetsOmitted).set(Double(state.withLock { $0.omitted.count }))
    }

    public var labelledTargets: Int { state.withLock { $0.targets.count } }
    public var omittedTargets: Int { state.withLock { $0.omitted.count } }

    static func labels(_ target: TargetSnapshot) -> [(String, String)] {
        let identity = target.identity
        return [
            ("scope", target.scope.rawValue),
            ("cgroup", identity.cgroup),
            ("namespace", identity.pod?.namespace ?? ""),
            ("pod", identity.pod?.name ?? ""),
            ("container", identity.pod?.container ?? ""),
            ("systemd_unit", identity.systemdUnit ?? ""),
            ("comm", target.scope == .process ? target.comm ?? "" : ""),
        ]
    }

    // MARK: events, sinks, policy

    /// Counts an emitted event; policy.reloaded / policy.rejected also count
    /// as a reload and a reload error.
    public func submit(_ event: AgentEvent) {
        counter(Self.eventsEmitted, [("type", event.type.rawValue)]).increment()
        switch event.type {
        case .policyReloaded: policyReloaded(success: true)
        case .policyRejected: policyReloaded(success: false)
        default: break
        }
    }

    public func policyReloaded(success: Bool) {
        counter(success ? Self.policyReloads : Self.policyReloadErrors).increment()
    }

    /// Exports a sink's delivered, dropped and failed counts and its queue
    /// depth, read at every scrape.
    public func track(sink: any CountingSink) {
        state.withLock { $0.sinks.append(sink) }
        refreshSinks()
    }

    /// Copies the tracked sinks' statistics into the registry.
    public func refreshSinks() {
        let sinks = state.withLock { $0.sinks }
        for sink in sinks {
            let now = sink.statistics
            let last = state.withLock { s in
                let last = s.sinkSeen[sink.name] ?? SinkStatistics()
                s.sinkSeen[sink.name] = now
                return last
            }
            let label = ("sink", sink.name)
            counter(Self.sinkDelivered, [label]).increment(by: Int64(clamping: now.delivered &- last.delivered))
            counter(Self.sinkFailures, [label]).increment(by: Int64(clamping: now.failedAttempts &- last.failedAttempts))
            let before = Dictionary(uniqueKeysWithValues: last.droppedByReason.map { ($0.reason, $0.count) })
            for (reason, count) in now.droppedByReason {
                counter(Self.sinkDropped, [label, ("reason", reason)]).increment(by: Int64(clamping: count &- (before[reason] ?? 0)))
            }
            gauge(Self.sinkQueueDepth, [label]).set(Double(now.queueDepth))
        }
    }

    /// The Prometheus text exposition, sinks refreshed first.
    public func exposition() -> [UInt8] {
        refreshSinks()
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }

    // MARK: names (docs/metrics.md)

    struct Name: Sendable {
        let name: String
        let help: String
        init(_ name: String, _ help: String) {
            self.name = name
            self.help = help
        }
        var descriptor: MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help) }
    }

    static let buildInfo = Name("memwarden_build_info", "Always 1; the agent's version as a label.")
    static let kernelEvents = Name("memwarden_kernel_events_total", "kmem:rss_stat events the BPF program ran on.")
    static let kernelCoalesced = Name(
        "memwarden_kernel_events_coalesced_total", "Events absorbed in the kernel by coalescing (no record sent).")
    static let kernelSamples = Name("memwarden_kernel_samples_total", "Coalesced samples the kernel sent, by scope.")
    static let kernelUnattributed = Name(
        "memwarden_kernel_unattributed_total", "curr=0 events whose mm had no known owner (dropped, never misattributed).")
    static let kernelExecs = Name("memwarden_kernel_execs_total", "exec events seen.")
    static let kernelExits = Name("memwarden_kernel_exits_total", "Thread-group exits seen.")
    static let kernelVerdicts = Name("memwarden_kernel_verdicts_total", "Detector verdict changes the kernel reported.")
    static let kernelMapFull = Name("memwarden_kernel_map_full_total", "BPF map inserts that failed.")
    static let mapEvictions = Name("memwarden_kernel_map_evictions_total", "States the LRU maps evicted to make room, by map.")
    static let kernelTracked = Name("memwarden_kernel_tracked", "Processes and cgroups the kernel program tracks, by map.")
    static let confirmationTargets = Name(
        "memwarden_confirmation_targets", "Targets the detection confirmation stage keeps history for, by state.")
    static let confirmationHistoryBytes = Name(
        "memwarden_confirmation_history_bytes", "Memory the confirmation stage's target histories take.")
    static let confirmationEvictions = Name(
        "memwarden_confirmation_evictions_total", "Targets the confirmation stage dropped to stay within its bound.")
    static let eventsLost = Name(
        "memwarden_events_lost_total", "Records or lines lost, by stage (ring_buffer, userspace, stdout).")
    static let eventsEmitted = Name("memwarden_events_emitted_total", "Agent events emitted, by type.")
    static let sinkDelivered = Name("memwarden_sink_delivered_total", "Events (alerts for alertmanager) delivered, by sink.")
    static let sinkDropped = Name("memwarden_sink_dropped_total", "Events a sink dropped, by sink and reason.")
    static let sinkFailures = Name("memwarden_sink_failures_total", "Failed delivery attempts, by sink.")
    static let sinkQueueDepth = Name("memwarden_sink_queue_depth", "Events waiting in a sink's queue.")
    static let policyReloads = Name("memwarden_policy_reloads_total", "Policy files loaded successfully.")
    static let policyReloadErrors = Name("memwarden_policy_reload_errors_total", "Policy files rejected (the last good one stays).")
    static let targetsOmitted = Name(
        "memwarden_metrics_targets_omitted", "Tracked targets without per-target series (over the cap).")
    static let targetMemory = Name("memwarden_target_memory_bytes", "Resident memory (process) or usage (cgroup).")
    static let targetLimit = Name("memwarden_target_limit_bytes", "The effective memory limit of the target's cgroup.")
    static let targetBudget = Name("memwarden_target_budget_bytes", "The policy's memory budget for the target.")
    static let targetBudgetShare = Name("memwarden_target_budget_share_ratio", "Usage as a share of the budget.")
    static let targetBudgetTier = Name(
        "memwarden_target_budget_tier", "Budget tier reached: 0 none, 1 warning, 2 high, 3 critical, 4 emergency.")
    static let targetGrowth = Name("memwarden_target_growth_bytes_per_second", "Growth rate from the detectors' trend.")
    static let samplesLostRatio = Name(
        "memwarden_samples_lost_ratio",
        "Share of the kernel's samples lost (ring buffer full, pipeline behind) over the last stats interval.")
    static let targetConfidence = Name("memwarden_target_leak_confidence_ratio", "Leak confidence, 0 to 1.")
    static let targetSuspected = Name("memwarden_target_leak_suspected", "1 while a leak is suspected, else 0.")
    static let targetForecast = Name(
        "memwarden_target_forecast_seconds", "Seconds until the limit or the budget (the sooner) at the current growth.")
    static let targetThrottled = Name("memwarden_target_throttled", "1 while the responder holds memory.high down.")
    static let targetGrowthCap = Name(
        "memwarden_target_growth_cap_bytes_per_second",
        "While a growth cap holds the target: the rate memory.high may rise by (memory that cannot be reclaimed).")

    /// Every metric name, for docs and tests.
    static let all: [Name] = [
        buildInfo, kernelEvents, kernelCoalesced, kernelSamples, kernelUnattributed, kernelExecs, kernelExits,
        kernelVerdicts, kernelMapFull, mapEvictions, kernelTracked, confirmationTargets, confirmationHistoryBytes,
        confirmationEvictions, eventsLost, samplesLostRatio, eventsEmitted, sinkDelivered,
        sinkDropped, sinkFailures, sinkQueueDepth, policyReloads, policyReloadErrors, targetsOmitted, targetMemory,
        targetLimit, targetBudget, targetBudgetShare, targetBudgetTier, targetGrowth, targetConfidence,
        targetSuspected, targetForecast, targetThrottled, targetGrowthCap,
    ]

    public static var metricNames: [String] { all.map(\.name) }

    private func counter(_ name: Name, _ labels: [(String, String)] = []) -> Prometheus.Counter {
        registry.makeCounter(descriptor: name.descriptor, labels: labels)
    }

    private func gauge(_ name: Name, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: name.descriptor, labels: labels)
    }
}

/// The gauges of one labelled target. A value the target does not have
/// (no budget, no forecast) has no series rather than a made-up number.
private final class TargetSeries: Sendable {
    let labels: [(String, String)]
    let gauges: Mutex<[String: Prometheus.Gauge]> = Mutex([:])

    init(registry: PrometheusCollectorRegistry, labels: [(String, String)]) {
        self.labels = labels
    }

    func set(_ target: TargetSnapshot, registry: PrometheusCollectorRegistry) {
        typealias M = AgentMetrics
        let tier = target.tier.map { BudgetTier.allCases.firstIndex(of: $0)! + 1 } ?? 0
        // `{ Double($0) }`, not `.map(Double.init)`: on a UInt64 that picks
        // Double(bitPattern:), and 512 MiB comes out as 2.65e-315
        let values: [(M.Name, Double?)] = [
            (M.targetMemory, Double(target.usageBytes)),
            (M.targetLimit, target.limitBytes.map { Double($0) }),
            (M.targetBudget, target.budgetBytes.map { Double($0) }),
            (M.targetBudgetShare, target.budgetShare),
            (M.targetBudgetTier, target.budgetBytes == nil ? nil : Double(tier)),
            (M.targetGrowth, Double(target.growthBytesPerSecond)),
            (M.targetConfidence, target.confidence),
            (M.targetSuspected, target.verdict == .leakSuspected ? 1 : 0),
            (M.targetForecast, target.forecastSeconds),
            (M.targetThrottled, target.throttled ? 1 : 0),
            (M.targetGrowthCap, target.growthCapBytesPerSecond.map { Double($0) }),
        ]
        gauges.withLock { gauges in
            for (name, value) in values {
                if let value, value.isFinite {
                    let gauge = gauges[name.name] ?? registry.makeGauge(descriptor: name.descriptor, labels: labels)
                    gauges[name.name] = gauge
                    gauge.set(value)
                } else if let gauge = gauges.removeValue(forKey: name.name) {
                    registry.unregisterGauge(gauge)
                }
            }
        }
    }

    func remove(registry: PrometheusCollectorRegistry) {
        gauges.withLock { gauges in
            for gauge in gauges.values { registry.unregisterGauge(gauge) }
            gauges.removeAll()
        }
    }
}
