import Logging
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import Testing

/// Full queues and the metrics' target cap: what is kept and what is counted.
/// (What they cost is `memwarden bench pipeline`'s table, BENCHMARKS.md.)
@Suite struct OutputCostTests {
    @Test func submitCostsMicrosecondsEvenWithTheQueueFull() throws {
        let port = try freePort()
        let sink = try WebhookSink(settings: WebhookSettings(url: "http://127.0.0.1:\(port)", queueSize: 1000), logger: Logger(label: "t"))
        let stdout = StdoutSink(writer: LineWriter(fd: -1), capacity: 1000, logger: Logger(label: "t"))
        let event = SampleEvents.make(.leakSuspected)
        let count = 100_000
        for (name, submit) in [("webhook", sink.submit), ("stdout", stdout.submit)] as [(String, (AgentEvent) -> Void)] {
            for _ in 0..<count { submit(event) }
            _ = name
        }
        #expect(sink.statistics.droppedQueueFull == UInt64(count - 1000))
        #expect(stdout.statistics.droppedQueueFull == UInt64(count - 1000))
    }

    @Test func metricsExpositionWithTheFullTargetCap() {
        let metrics = AgentMetrics(maxTargets: 1000)
        for i in 0..<1500 {
            metrics.update(
                TargetSnapshot(
                    scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/burstable/pod\(i)/container"),
                    usageBytes: UInt64(i) << 20, limitBytes: 1 << 30, budgetBytes: 800 << 20, tier: .warning,
                    confidence: 0.5, growthBytesPerSecond: 4096, secondsToLimit: 600))
        }
        for i in 0..<1000 {
            metrics.update(
                TargetSnapshot(
                    scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/burstable/pod\(i)/container"),
                    usageBytes: UInt64(i + 1) << 20, limitBytes: 1 << 30, budgetBytes: 800 << 20, tier: .warning,
                    confidence: 0.5, growthBytesPerSecond: 4096, secondsToLimit: 600))
        }
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(metrics.labelledTargets == 1000 && metrics.omittedTargets == 500)
        #expect(text.contains("memwarden_metrics_targets_omitted 500"), "the omitted targets are counted on /metrics")
    }
}
