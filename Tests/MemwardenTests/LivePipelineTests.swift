import Foundation
import Logging
@testable import MemwardenAgent
import MemwardenIdentity
import MemwardenKernel
import MemwardenModel
import MemwardenOutput
import ServiceLifecycle
import Synchronization
import Testing

/// The live pipeline fed by hand: what it prints and what it hands to sinks.
struct LivePipelineTests {
    final class CollectingSink: EventSink, @unchecked Sendable {
        let name = "collect"
        private let lock = NSLock()
        private var collected: [AgentEvent] = []
        func submit(_ event: AgentEvent) { lock.withLock { collected.append(event) } }
        var events: [AgentEvent] { lock.withLock { collected } }
    }

    /// Runs the pipeline over `outputs`, with stdout's sink writing to a
    /// file, and returns the file's lines.
    static func run(
        _ outputs: [SourceOutput], sink: CollectingSink, settings: PipelineSettings, metrics: AgentMetrics? = nil,
        lossTotals: @escaping @Sendable () -> [String: UInt64] = { [:] }
    ) async throws -> [String] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try LineWriter.create(path: path)
        let logger = Logger(label: "test")
        let stdout = StdoutSink(writer: writer, logger: logger)
        let (stream, continuation) = AsyncStream.makeStream(of: SourceOutput.self)
        for output in outputs { continuation.yield(output) }
        continuation.finish()
        let pipeline = LivePipeline(
            input: stream, resolver: RecordResolver(hierarchy: nil), formatter: SampleFormatter(),
            outputs: PipelineOutputs(
                events: EventFanout([stdout, sink]), stdout: stdout, metrics: metrics, lossTotals: lossTotals),
            settings: settings,
            logger: logger)
        let group = ServiceGroup(services: [stdout], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await pipeline.handleInput()
            pipeline.finish()
            // the sink flushes what it holds on graceful shutdown
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        writer.close()
        return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test func announcesStartAndStopAndLossesToStdoutAndSinks() async throws {
        var lossy = KernelCounters()
        lossy.ringBufferDrops = 7
        var same = lossy
        same.events = 10
        let sink = CollectingSink()
        let lines = try await Self.run(
            [.attached, .counters(lossy), .counters(same)], sink: sink, settings: PipelineSettings(node: "node-1"))
        #expect(sink.events.map(\.type) == [.agentStarted, .agentEventsLost, .agentStopping])
        #expect(sink.events.allSatisfy { $0.node == "node-1" })
        let lost = try #require(sink.events.first { $0.type == .agentEventsLost })
        #expect(lost.details == .agent(AgentDetails(lost: ["ring_buffer": 7])), "lost is counted once, as the delta")
        // stdout: the same events, plus the two stats lines, in order
        let types = lines.compactMap { line in
            ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any])?["type"] as? String
        }
        #expect(types == ["agent.started", "stats", "agent.events_lost", "stats", "agent.stopping"])
        #expect(lines[2].contains(#""lost":{"ring_buffer":7}"#), "\(lines[2])")
    }

    @Test("one ledger: the kernel's, the sinks' and the responder's losses are each reported once, in the interval they grew")
    func everyLossReportedOnce() async throws {
        var counters = KernelCounters()
        counters.ringBufferDrops = 7
        // the sinks' and the responder's running totals at each counters reading
        let readings = Mutex<[[String: UInt64]]>([
            ["sink.webhook": 2, "responder": 0], ["sink.webhook": 2, "responder": 1], ["sink.webhook": 2, "responder": 1],
        ])
        let sink = CollectingSink()
        _ = try await Self.run(
            [.attached, .counters(counters), .counters(counters), .counters(counters)], sink: sink,
            settings: PipelineSettings(node: "n"),
            lossTotals: { readings.withLock { $0.isEmpty ? [:] : $0.removeFirst() } })
        let lost = sink.events.filter { $0.type == .agentEventsLost }.map(\.details)
        #expect(lost == [.agent(AgentDetails(lost: ["ring_buffer": 7, "sink.webhook": 2])), .agent(AgentDetails(lost: ["responder": 1]))])
    }

    @Test func aLossLedgerReportsGrowthOnceAndARestartedTotalAsNew() {
        var ledger = LossLedger()
        #expect(ledger.grown(["ring_buffer": 5, "map_full": 0]) == ["ring_buffer": 5])
        #expect(ledger.grown(["ring_buffer": 5]).isEmpty)
        #expect(ledger.grown(["ring_buffer": 9, "sink.webhook": 1]) == ["ring_buffer": 4, "sink.webhook": 1])
        // a reloaded program counts from zero again: its 3 are new
        #expect(ledger.grown(["ring_buffer": 3, "sink.webhook": 1]) == ["ring_buffer": 3])
    }

    @Test("the share of samples lost per stats interval: a metric, and what marks leak forecasts as low confidence")
    func samplesLostRatioPerInterval() async throws {
        // 93 samples written and 7 lost to a full ring, then 3 more lost by userspace of 200, then none lost
        var first = KernelCounters()
        (first.processSamples, first.cgroupSamples, first.ringBufferDrops) = (90, 3, 7)
        var second = first
        (second.processSamples, second.userspaceDrops) = (90 + 200, 3)
        var third = second
        third.processSamples += 50
        var ledger = LossLedger()
        var tracker = SampleLossShare()
        func update(_ counters: KernelCounters) { tracker.update(counters, lost: ledger.grown(counters.lossTotals)) }
        update(first)
        #expect(tracker.ratio == 0.07 && tracker.degradedRatio == 0.07)
        update(second)
        #expect(tracker.ratio == 0.015 && tracker.degradedRatio == 0.015)
        update(third)
        #expect(tracker.ratio == 0 && tracker.degradedRatio == nil)
        // below a percent lost: reported, not marking forecasts
        var fourth = third
        (fourth.processSamples, fourth.ringBufferDrops) = (third.processSamples + 995, 12)
        update(fourth)
        #expect(tracker.ratio == 0.005 && tracker.degradedRatio == nil)

        let metrics = AgentMetrics(maxTargets: 10)
        _ = try await Self.run(
            [.attached, .counters(first)], sink: CollectingSink(), settings: PipelineSettings(node: "n"), metrics: metrics)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains("memwarden_samples_lost_ratio 0.07"), "\(text.split(separator: "\n").filter { $0.contains("lost") })")
    }

    @Test func nodeNameComesFromTheFlagThenTheEnvironment() {
        #expect(NodeName.resolve("flag", environment: ["NODE_NAME": "env"]) == "flag")
        #expect(NodeName.resolve(nil, environment: ["NODE_NAME": "env"]) == "env")
        #expect(NodeName.resolve("", environment: [:]) != nil, "falls back to the host name")
    }
}
