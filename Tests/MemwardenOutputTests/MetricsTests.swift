import AsyncHTTPClient
import Foundation
import Logging
import MemwardenAgent
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import Testing

/// The exposition's samples: "name{labels}" → value.
func samples(_ exposition: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        result[String(line[..<space])] = value
    }
    return result
}

func target(pid: Int32? = nil, cgroup: String, usage: UInt64 = 1 << 20) -> TargetSnapshot {
    TargetSnapshot(
        scope: pid == nil ? .cgroup : .process, pid: pid, comm: pid == nil ? nil : "worker",
        identity: TargetIdentity(cgroup: cgroup), usageBytes: usage)
}

@Suite struct AgentMetricsTests {
    @Test func kernelCountersAdvanceByTheirDifference() {
        let metrics = AgentMetrics()
        var counters = KernelCounters()
        counters.events = 1000
        counters.coalesced = 900
        counters.ringBufferDrops = 2
        counters.processesTracked = 12
        metrics.record(kernelCounters: counters)
        counters.events = 1500
        counters.ringBufferDrops = 5
        metrics.record(kernelCounters: counters)
        let values = samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values["memwarden_kernel_events_total"] == 1500)
        #expect(values["memwarden_kernel_events_coalesced_total"] == 900)
        #expect(values[#"memwarden_events_lost_total{stage="ring_buffer"}"#] == 5)
        #expect(values[#"memwarden_kernel_tracked{map="process"}"#] == 12)
    }

    @Test func confirmationStageStateIsExported() {
        let metrics = AgentMetrics()
        metrics.record(confirmation: ConfirmationStatistics(targets: 40, suspected: 2, historyBytes: 300_000, evicted: 7))
        metrics.record(confirmation: ConfirmationStatistics(targets: 41, suspected: 1, historyBytes: 307_500, evicted: 9))
        let values = samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values[#"memwarden_confirmation_targets{state="tracked"}"#] == 41)
        #expect(values[#"memwarden_confirmation_targets{state="suspected"}"#] == 1)
        #expect(values["memwarden_confirmation_history_bytes"] == 307_500)
        #expect(values["memwarden_confirmation_evictions_total"] == 9)
    }

    @Test func targetSeriesAreLabelledByIdentityNeverByPid() {
        let metrics = AgentMetrics()
        var snapshot = TargetSnapshot(
            scope: .process, pid: 4242, comm: "shop-api", identity: SampleEvents.containerIdentity, usageBytes: 300 << 20,
            limitBytes: 512 << 20, budgetBytes: 400 << 20, tier: .high, verdict: .leakSuspected, confidence: 0.875,
            growthBytesPerSecond: 1 << 20, secondsToLimit: 212)
        metrics.update(snapshot)
        var text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(!text.contains("4242"), "no pid anywhere")
        let line = text.split(separator: "\n").first { $0.hasPrefix("memwarden_target_memory_bytes{") }
        #expect(line?.contains(#"namespace="prod""#) == true && line?.contains(#"pod="shop-7d9f""#) == true)
        #expect(line?.contains(#"container="api""#) == true && line?.contains(#"comm="shop-api""#) == true)
        let values = samples(text)
        func value(_ name: String) -> Double? { values.first { $0.key.hasPrefix(name + "{") }?.value }
        #expect(value("memwarden_target_memory_bytes") == Double(300 << 20))
        #expect(value("memwarden_target_limit_bytes") == Double(512 << 20))
        #expect(value("memwarden_target_budget_bytes") == Double(400 << 20))
        #expect(value("memwarden_target_budget_share_ratio") == 0.75)
        #expect(value("memwarden_target_budget_tier") == 2)
        #expect(value("memwarden_target_leak_confidence_ratio") == 0.875)
        #expect(value("memwarden_target_leak_suspected") == 1)
        #expect(value("memwarden_target_forecast_seconds") == 212)

        #expect(!text.contains("memwarden_target_growth_cap_bytes_per_second{"), "no cap, no series")
        snapshot.throttled = true
        snapshot.growthCapBytesPerSecond = 128 << 10
        metrics.update(snapshot)
        #expect(samples(String(decoding: metrics.exposition(), as: UTF8.self)).first {
            $0.key.hasPrefix("memwarden_target_growth_cap_bytes_per_second{")
        }?.value == 131_072)

        // a value that went away takes its series with it; removal takes all
        snapshot.secondsToLimit = nil
        snapshot.growthCapBytesPerSecond = nil
        metrics.update(snapshot)
        text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(!text.contains("memwarden_target_forecast_seconds{"))
        #expect(!text.contains("memwarden_target_growth_cap_bytes_per_second{"))
        metrics.removeTarget(key: snapshot.key)
        text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(!text.contains("memwarden_target_"))
    }

    @Test func aGrowthCapReachesTheTargetTableAndItsSeriesEndsWithTheRestore() {
        let metrics = AgentMetrics()
        let observer = TargetObserver(table: TargetTable(), metrics: metrics)
        let identity = TargetIdentity(cgroup: "/kubepods/pod1/leaker")
        observer.cgroupSample(identity: identity, usage: 330 << 20, limit: 384 << 20, budget: 384 << 20, rule: "leaky")
        func response(_ type: AgentEvent.EventType, _ details: ResponseDetails) -> AgentEvent {
            AgentEvent(
                type: type, severity: .warning, epochNanoseconds: SampleEvents.time,
                target: EventTarget(scope: .cgroup, identity: identity), details: .response(details))
        }
        observer.submit(
            response(
                .responseThrottle,
                ResponseDetails(
                    mode: .throttle, rule: "leaky", memoryHighAfter: (330 << 20) + 4096, reason: "growth_cap",
                    growthCap: GrowthCapDetails(rateBytesPerSecond: 128 << 10, allowanceBytes: 0))))
        let row = observer.table.snapshots().first
        #expect(row?.throttled == true && row?.growthCapBytesPerSecond == 128 << 10)
        func capSeries() -> Double? {
            samples(String(decoding: metrics.exposition(), as: UTF8.self)).first {
                $0.key.hasPrefix("memwarden_target_growth_cap_bytes_per_second{")
            }?.value
        }
        #expect(capSeries() == 131_072)

        observer.submit(response(.responseRestore, ResponseDetails(mode: .throttle, rule: "leaky", reason: "leak_cleared")))
        #expect(observer.table.snapshots().first?.growthCapBytesPerSecond == nil)
        #expect(capSeries() == nil)
    }

    @Test func labelledTargetsAreCappedAndTheRestCounted() {
        let metrics = AgentMetrics(maxTargets: 3)
        for i in 0..<10 { metrics.update(target(cgroup: "/app-\(i)")) }
        #expect(metrics.labelledTargets == 3 && metrics.omittedTargets == 7)
        var values = samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values["memwarden_metrics_targets_omitted"] == 7)
        #expect(values.keys.count { $0.hasPrefix("memwarden_target_memory_bytes{") } == 3)
        // room again: an omitted target gets its series at its next update
        metrics.removeTarget(key: target(cgroup: "/app-0").key)
        metrics.update(target(cgroup: "/app-9"))
        values = samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values["memwarden_metrics_targets_omitted"] == 6)
        #expect(values.keys.contains { $0.contains(#"cgroup="/app-9""#) })
    }

    @Test func eventsSinksAndPolicyAreCounted() async throws {
        let metrics = AgentMetrics()
        metrics.submit(SampleEvents.make(.leakSuspected))
        metrics.submit(SampleEvents.make(.leakSuspected))
        metrics.submit(SampleEvents.make(.policyReloaded))
        metrics.submit(SampleEvents.make(.policyRejected))
        let port = try freePort()
        let sink = try WebhookSink(
            settings: WebhookSettings(url: "http://127.0.0.1:\(port)", queueSize: 2), logger: Logger(label: "t"))
        metrics.track(sink: sink)
        for _ in 0..<5 { sink.submit(SampleEvents.make(.agentStarted)) }
        let values = samples(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(values[#"memwarden_events_emitted_total{type="leak.suspected"}"#] == 2)
        #expect(values[#"memwarden_events_emitted_total{type="budget.high"}"#] == 0)
        #expect(values["memwarden_policy_reloads_total"] == 1)
        #expect(values["memwarden_policy_reload_errors_total"] == 1)
        #expect(values[#"memwarden_sink_dropped_total{sink="webhook",reason="queue_full"}"#] == 3)
        #expect(values[#"memwarden_sink_queue_depth{sink="webhook"}"#] == 2)
    }

    /// docs/metrics.md documents every metric the agent exports.
    @Test func everyMetricIsDocumented() throws {
        let doc = try String(contentsOfFile: repositoryFile("docs/metrics.md"), encoding: .utf8)
        for name in AgentMetrics.metricNames {
            #expect(doc.contains("`\(name)`"), "\(name) is not in docs/metrics.md")
        }
    }
}

/// A real Prometheus scrapes a real HTTPServer's /metrics.
@Suite(.enabled(if: OutputAccess.enabled(.prometheus), OutputAccess.comment(.prometheus)))
struct PrometheusScrapeTests {
    @Test func prometheusScrapesTheAgent() async throws {
        let server = try await RunningHTTPServer()
        let agentPort = Int(server.baseURL.split(separator: ":").last!)!
        server.metrics.update(
            TargetSnapshot(
                scope: .cgroup, identity: SampleEvents.containerIdentity, usageBytes: 300 << 20, limitBytes: 512 << 20,
                verdict: .leakSuspected, confidence: 0.9, growthBytesPerSecond: 1 << 20, secondsToLimit: 212))
        var counters = KernelCounters()
        counters.events = 123_456
        server.metrics.record(kernelCounters: counters)

        guard let path = OutputAccess.path(.prometheus) else { throw TestFailure("prometheus is not installed") }
        let config = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files:
              - \(repositoryFile("deploy/prometheus/memwarden-rules.yaml"))
            scrape_configs:
              - job_name: memwarden
                static_configs:
                  - targets: ["127.0.0.1:\(agentPort)"]
            """
        let prometheus = try ServerProcess(
            name: "prometheus", executable: path,
            arguments: { directory, port in
                [
                    "--config.file=\(directory.file("prometheus.yml"))", "--storage.tsdb.path=\(directory.file("data"))",
                    "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
                ]
            }, files: ["prometheus.yml": config])
        defer { prometheus.stop() }
        try await withHTTPClient { client in
            try await prometheus.waitReady(path: "/-/ready", client: client)

            func query(_ expression: String) async throws -> [[String: Any]] {
                let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let answer = try #require(try await client.json(prometheus.baseURL + "/api/v1/query?query=\(encoded)") as? [String: Any])
                return ((answer["data"] as? [String: Any])?["result"] as? [[String: Any]]) ?? []
            }
            var result: [[String: Any]] = []
            try await waitUntil("Prometheus to have scraped memwarden_target_memory_bytes", interval: .milliseconds(250)) {
                result = try await query("memwarden_target_memory_bytes")
                return !result.isEmpty
            }
            let metric = try #require(result.first?["metric"] as? [String: String])
            #expect(metric["pod"] == "shop-7d9f" && metric["namespace"] == "prod" && metric["scope"] == "cgroup")
            #expect((result.first?["value"] as? [Any])?.last as? String == String(300 << 20))
            let events = try await query("memwarden_kernel_events_total")
            #expect((events.first?["value"] as? [Any])?.last as? String == "123456")
            let up = try await query(#"up{job="memwarden"}"#)
            #expect((up.first?["value"] as? [Any])?.last as? String == "1")

            // the shipped rules load into this Prometheus, and the leak rule goes pending on the suspected series
            try await waitUntil("the MemwardenMemoryLeak rule to be pending or firing", interval: .milliseconds(250)) {
                let alerts = try #require(try await client.json(prometheus.baseURL + "/api/v1/alerts") as? [String: Any])
                let list = ((alerts["data"] as? [String: Any])?["alerts"] as? [[String: Any]]) ?? []
                return list.contains { ($0["labels"] as? [String: String])?["alertname"] == "MemwardenMemoryLeak" }
            }
        }
        try await server.services.stop()
    }
}

@Suite struct OutputSinksTests {
    @Test func fansOutAndReportsLossesOnce() throws {
        let port = try freePort()
        let recent = RecentEvents(capacity: 10)
        let outputs = try OutputSinks(
            settings: OutputSettings(stdout: false, webhook: WebhookSettings(url: "http://127.0.0.1:\(port)", queueSize: 1)),
            extra: [recent], logger: Logger(label: "t"))
        #expect(outputs.services.count == 1 && outputs.webhook != nil && outputs.stdout == nil)
        for type in [AgentEvent.EventType.leakSuspected, .budgetHigh, .leakCleared] { outputs.submit(SampleEvents.make(type)) }
        #expect(recent.lines().count == 3)
        #expect(outputs.lossTotals() == ["sink.webhook": 2])
        var ledger = LossLedger()
        #expect(ledger.grown(outputs.lossTotals()) == ["sink.webhook": 2])
        #expect(ledger.grown(outputs.lossTotals()).isEmpty, "reported once")
    }

    @Test func stdoutsLostLinesKeepTheirKeyAndTheOtherSinksAreNamedSinkDot() throws {
        let outputs = try OutputSinks(
            settings: OutputSettings(stdout: true, webhook: WebhookSettings(url: "http://127.0.0.1:\(try freePort())")),
            logger: Logger(label: "t"))
        #expect(outputs.lossTotals() == ["stdout": 0, "sink.webhook": 0])
    }

    @Test func aBadSinkSettingStopsTheStart() {
        #expect(throws: OutputConfigurationError.self) {
            try OutputSinks(
                settings: OutputSettings(alertmanager: AlertmanagerSettings(url: "alertmanager:9093")), logger: Logger(label: "t"))
        }
    }
}
