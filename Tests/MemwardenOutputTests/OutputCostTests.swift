import Logging
import Memwarden
import Testing

/// What the outputs cost the pipeline: `submit` is on the detection path,
/// /metrics on every scrape. Figures are printed for BENCHMARKS.md; the
/// bounds are loose (a shared 2-core machine) and catch only regressions by
/// orders of magnitude.
@Suite struct OutputCostTests {
    @Test func submitCostsMicrosecondsEvenWithTheQueueFull() throws {
        let port = try freePort()
        let sink = try WebhookSink(settings: WebhookSettings(url: "http://127.0.0.1:\(port)", queueSize: 1000), logger: Logger(label: "t"))
        let stdout = StdoutSink(writer: LineWriter(fd: -1), capacity: 1000, logger: Logger(label: "t"))
        let event = SampleEvents.make(.leakSuspected)
        let count = 100_000
        for (name, submit) in [("webhook", sink.submit), ("stdout", stdout.submit)] as [(String, (AgentEvent) -> Void)] {
            let start = ContinuousClock.now
            for _ in 0..<count { submit(event) }
            let perEvent = (ContinuousClock.now - start) / count
            print("cost: \(name) submit (queue full, nothing delivering): \(perEvent) per event")
            #expect(perEvent < .milliseconds(1))
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
        let updateStart = ContinuousClock.now
        for i in 0..<1000 {
            metrics.update(
                TargetSnapshot(
                    scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/burstable/pod\(i)/container"),
                    usageBytes: UInt64(i + 1) << 20, limitBytes: 1 << 30, budgetBytes: 800 << 20, tier: .warning,
                    confidence: 0.5, growthBytesPerSecond: 4096, secondsToLimit: 600))
        }
        let perUpdate = (ContinuousClock.now - updateStart) / 1000
        let start = ContinuousClock.now
        let bytes = metrics.exposition()
        let took = ContinuousClock.now - start
        print("cost: /metrics with 1000 labelled targets (500 omitted): \(bytes.count) bytes in \(took); update \(perUpdate) per target")
        #expect(metrics.labelledTargets == 1000 && metrics.omittedTargets == 500)
        #expect(took < .seconds(2))
        #expect(perUpdate < .milliseconds(1))
    }
}
