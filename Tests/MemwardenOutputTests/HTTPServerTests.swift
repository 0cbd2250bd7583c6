import AsyncHTTPClient
import Foundation
import Logging
import MemwardenAgent
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import NIOCore
import Testing

/// Starts an HTTPServer on a free port and returns it with its base URL.
struct RunningHTTPServer {
    let services: RunningServices
    let baseURL: String
    let status: AgentStatus
    let targets: TargetTable
    let events: RecentEvents
    let metrics: AgentMetrics

    init(
        listen: String = "127.0.0.1:0", endpoints: HTTPServer.Endpoints = .all, inCluster: Bool = false, maxTargets: Int = 1000,
        idleTimeout: TimeAmount = HTTPServer.idleTimeout
    ) async throws {
        status = AgentStatus(inCluster: inCluster)
        targets = TargetTable()
        events = RecentEvents(capacity: 50)
        metrics = AgentMetrics(maxTargets: maxTargets)
        let bound = AsyncStream<Int>.makeStream()
        let server = try HTTPServer(
            listen: listen, endpoints: endpoints, status: status, targets: targets, events: events, metrics: metrics,
            logger: Logger(label: "http-test"), idleTimeout: idleTimeout, onListening: { port in bound.continuation.yield(port) })
        services = RunningServices([server])
        var port = 0
        for await p in bound.stream {
            port = p
            break
        }
        guard port > 0 else { throw TestFailure("the HTTP server did not start") }
        baseURL = "http://127.0.0.1:\(port)"
    }
}

@Suite struct HTTPServerTests {
    @Test(
        "listen addresses", arguments: [
            ("127.0.0.1:9808", "127.0.0.1", 9808), ("0.0.0.0:1", "0.0.0.0", 1), ("[::]:9808", "::", 9808),
            (":9808", "0.0.0.0", 9808), ("[::1]:0", "::1", 0),
        ])
    func parsesListen(text: String, host: String, port: Int) throws {
        let parsed = try HTTPServer.parse(listen: text)
        #expect(parsed.host == host && parsed.port == port)
    }

    @Test("bad listen addresses", arguments: ["9808", "localhost", "1.2.3.4:99999", "::1:80", "[::1]80", "a b:1", "host:"])
    func rejectsListen(text: String) {
        #expect(throws: ListenAddressError.self) { try HTTPServer.parse(listen: text) }
    }

    @Test("the metrics server (--metrics-listen) answers /metrics and the probes, never the API")
    func healthEndpointsOnly() async throws {
        try await withHTTPClient { client in
            let server = try await RunningHTTPServer(endpoints: .health)
            server.status.markReady(.bpf)
            server.status.markReady(.policy)
            #expect(try await client.get(server.baseURL + "/healthz").status == 200)
            #expect(try await client.get(server.baseURL + "/readyz").status == 200)
            #expect(try await client.get(server.baseURL + "/metrics").body.contains("memwarden_"))
            for path in ["/api/v1/targets", "/api/v1/events"] {
                #expect(try await client.get(server.baseURL + path).status == 404, "\(path)")
            }
            try await server.services.stop()
        }
    }

    @Test("a connection that sends nothing is closed after the idle timeout")
    func idleConnectionsAreClosed() async throws {
        let server = try await RunningHTTPServer(idleTimeout: .milliseconds(200))
        let port = try #require(Int(server.baseURL.split(separator: ":").last ?? ""))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        // the deadline: a read that gets nothing for 10 s fails instead of waiting for ever
        var deadline = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        var byte: UInt8 = 0
        let read = recv(fd, &byte, 1, 0)
        #expect(read == 0, "waited for the server to close the idle connection: recv returned \(read), errno \(errno)")
        try await server.services.stop()
    }

    @Test func healthReadinessTargetsAndEvents() async throws {
        try await withHTTPClient { client in
            let server = try await RunningHTTPServer(inCluster: true)

            let health = try await client.get(server.baseURL + "/healthz")
            #expect(health.status == 200 && health.contentType == "application/json")
            #expect(try jsonObject(health.body)["status"] as? String == "ok")

            // not ready: 503 naming every check that does not pass
            server.status.markReady(.bpf)
            server.status.markNotReady(.policy, reason: "policy.yaml:3:1: rules: expected a list")
            var ready = try await client.get(server.baseURL + "/readyz")
            #expect(ready.status == 503)
            let missing = try #require(try jsonObject(ready.body)["not_ready"] as? [String: String])
            #expect(missing == ["policy": "policy.yaml:3:1: rules: expected a list", "pod_metadata": "not started yet"])
            server.status.markReady(.policy)
            server.status.markReady(.podMetadata)
            ready = try await client.get(server.baseURL + "/readyz")
            #expect(ready.status == 200)
            #expect(try jsonObject(ready.body)["status"] as? String == "ready")

            // targets, as the pipeline upserts them
            let leaking = TargetSnapshot(
                scope: .process, pid: 4242, comm: "shop-api", identity: SampleEvents.containerIdentity, usageBytes: 300 << 20,
                limitBytes: 512 << 20, budgetBytes: 400 << 20, rule: "shop", tier: .warning, verdict: .leakSuspected,
                confidence: 0.875, growthBytesPerSecond: 1 << 20, secondsToLimit: 212, secondsToBudget: 100, throttled: false,
                suspectedSince: SampleEvents.time)
            let quiet = TargetSnapshot(scope: .cgroup, identity: SampleEvents.unitIdentity, usageBytes: 50 << 20)
            server.targets.upsert(quiet)
            server.targets.upsert(leaking)
            let all = try #require(try await client.json(server.baseURL + "/api/v1/targets") as? [String: Any])
            #expect(all["count"] as? Int == 2)
            let rows = try #require(all["targets"] as? [[String: Any]])
            #expect(rows.first?["pid"] as? Int == 4242, "suspected leaks first")
            #expect(rows.first?["verdict"] as? String == "leak_suspected")
            #expect(rows.first?["pod"] as? String == "shop-7d9f" && rows.first?["namespace"] as? String == "prod")
            #expect(rows.first?["forecast_seconds"] as? Double == 100)
            #expect(rows.first?["budget_share"] as? Double == 0.75)
            #expect(rows.first?["tier"] as? String == "warning")
            #expect(rows.last?["systemd_unit"] as? String == "app.service")
            let cgroups = try #require(try await client.json(server.baseURL + "/api/v1/targets?scope=cgroup") as? [String: Any])
            #expect(cgroups["count"] as? Int == 1)
            let prod = try #require(try await client.json(server.baseURL + "/api/v1/targets?namespace=prod") as? [String: Any])
            #expect(prod["count"] as? Int == 1)
            #expect(try await client.get(server.baseURL + "/api/v1/targets?scope=pod").status == 400)
            server.targets.remove(key: leaking.key)
            let after = try #require(try await client.json(server.baseURL + "/api/v1/targets") as? [String: Any])
            #expect(after["count"] as? Int == 1)

            // recent events, filtered by time in both forms
            for (i, type) in AgentEvent.EventType.allCases.enumerated() {
                server.events.submit(SampleEvents.make(type, time: SampleEvents.time + UInt64(i) * 1_000_000_000))
            }
            let allEvents = try #require(try await client.json(server.baseURL + "/api/v1/events") as? [String: Any])
            #expect(allEvents["count"] as? Int == AgentEvent.EventType.allCases.count)
            let since = SampleEvents.time + 10 * 1_000_000_000
            let rfc = WallClock.rfc3339(epochNanoseconds: since)
            for query in ["since=\(rfc)", "since=\(since / 1_000_000_000)", "since=\(Double(since - 500_000_000) / 1e9)"] {
                let recent = try #require(try await client.json(server.baseURL + "/api/v1/events?\(query)") as? [String: Any])
                let types = (recent["events"] as? [[String: Any]])?.compactMap { $0["type"] as? String }
                #expect(types == AgentEvent.EventType.allCases.dropFirst(10).map(\.rawValue), "\(query)")
            }
            let limited = try #require(try await client.json(server.baseURL + "/api/v1/events?limit=2") as? [String: Any])
            #expect((limited["events"] as? [[String: Any]])?.compactMap { $0["type"] as? String } == ["agent.stopping", "agent.events_lost"])
            let bad = try await client.get(server.baseURL + "/api/v1/events?since=yesterday")
            #expect(bad.status == 400 && bad.body.contains("since='yesterday'"))

            try await server.services.stop()
        }
    }

    @Test func theEventRingKeepsTheNewest() {
        let ring = RecentEvents(capacity: 3)
        for i in 0..<5 { ring.submit(SampleEvents.make(.agentStarted, time: UInt64(i + 1) * 1_000_000_000)) }
        let times = ring.lines().compactMap { try? jsonObject($0)["time"] as? String }
        #expect(times == (3...5).map { WallClock.rfc3339(epochNanoseconds: UInt64($0) * 1_000_000_000) })
    }
}

@Suite struct AgentOutputsTests {
    @Test func wiresSinksTargetsMetricsAndTheServer() async throws {
        let receiver = TestReceiver()
        let hookPort = try await receiver.start()
        let bound = AsyncStream<Int>.makeStream()
        let outputs = try AgentOutputs(
            settings: OutputSettings(stdout: false, webhook: WebhookSettings(url: "http://127.0.0.1:\(hookPort)/h", queueSize: 1)),
            listen: "127.0.0.1:0", inCluster: false, node: "node-1", logger: Logger(label: "outputs-test"),
            onListening: { bound.continuation.yield($0) })
        #expect(outputs.services.count == 2)
        // before the services run: the webhook queue holds one event, the second pushes the first out
        outputs.submit(SampleEvents.make(.leakSuspected))
        outputs.submit(SampleEvents.make(.budgetHigh))
        #expect(outputs.sinks.lossTotals() == ["sink.webhook": 1])

        outputs.update(TargetSnapshot(scope: .cgroup, identity: SampleEvents.containerIdentity, usageBytes: 42 << 20))
        let services = RunningServices(outputs.services)
        var port = 0
        for await p in bound.stream {
            port = p
            break
        }
        try await waitUntil("the queued event delivered") { receiver.received.count == 1 }
        try await withHTTPClient { client in
            let base = "http://127.0.0.1:\(port)"
            let targets = try #require(try await client.json(base + "/api/v1/targets") as? [String: Any])
            #expect(targets["count"] as? Int == 1)
            let events = try #require(try await client.json(base + "/api/v1/events") as? [String: Any])
            #expect(events["count"] as? Int == 2)
            let text = try await client.get(base + "/metrics").body
            #expect(text.contains(#"memwarden_sink_dropped_total{sink="webhook",reason="queue_full"} 1"#))
            #expect(text.contains(#"memwarden_events_emitted_total{type="budget.high"} 1"#))
            #expect(text.contains("memwarden_target_memory_bytes{"))
            outputs.removeTarget(key: TargetSnapshot(scope: .cgroup, identity: SampleEvents.containerIdentity, usageBytes: 0).key)
            let after = try #require(try await client.json(base + "/api/v1/targets") as? [String: Any])
            #expect(after["count"] as? Int == 0)
            #expect(try await !client.get(base + "/metrics").body.contains("memwarden_target_memory_bytes{"))
        }
        try await services.stop()
        await receiver.stop()
        #expect(receiver.received.first?.headers["x-memwarden-event"] == "budget.high", "the newest event was kept")
    }
}
