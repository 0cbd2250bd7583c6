import AsyncHTTPClient
import Foundation
import Logging
@testable import MemwardenModel
@testable import MemwardenOutput
import MemwardenTestSupport
import Testing

/// The Alertmanager sink against a real Alertmanager (Debian's
/// prometheus-alertmanager) started by the test.
@Suite(.enabled(if: OutputAccess.enabled(.alertmanager), OutputAccess.comment(.alertmanager)))
struct AlertmanagerSinkTests {
    static let config = """
        route:
          receiver: "null"
          group_wait: 1s
        receivers:
          - name: "null"
        """

    func startAlertmanager() throws -> ServerProcess {
        guard let path = OutputAccess.path(.alertmanager) else { throw TestFailure("prometheus-alertmanager is not installed") }
        return try ServerProcess(
            name: "alertmanager", executable: path,
            arguments: { directory, port in
                [
                    "--config.file=\(directory.file("alertmanager.yml"))", "--storage.path=\(directory.file("data"))",
                    "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address=", "--log.level=warn",
                ]
            }, files: ["alertmanager.yml": Self.config])
    }

    /// The alerts Alertmanager lists as active, by alertname.
    func activeAlerts(_ client: HTTPClient, _ server: ServerProcess) async throws -> [[String: Any]] {
        let alerts = try await client.json(server.baseURL + "/api/v2/alerts?active=true&silenced=true&inhibited=true")
        // "unprocessed": received, not yet through the silencer and inhibitor
        return (alerts as? [[String: Any]] ?? []).filter {
            ["active", "unprocessed"].contains(($0["status"] as? [String: Any])?["state"] as? String ?? "")
        }
    }

    @Test func leakAndBudgetAlertsFireAndResolve() async throws {
        let server = try startAlertmanager()
        defer { server.stop() }
        try await withHTTPClient { client in
            try await server.waitReady(path: "/-/ready", client: client)

            let sink = try AlertmanagerSink(
                settings: AlertmanagerSettings(url: server.baseURL + "/", timeout: .seconds(2), resendInterval: .seconds(1)),
                logger: Logger(label: "alertmanager-test"))
            let services = RunningServices([sink])
            let now = realtimeNanoseconds()
            let target = SampleEvents.processTarget()
            sink.submit(SampleEvents.make(.leakSuspected, target: target, time: now))
            sink.submit(SampleEvents.make(.budgetHigh, target: SampleEvents.cgroupTarget(), time: now))

            var listed: [[String: Any]] = []
            try await waitUntil("Alertmanager to list the leak and budget alerts", interval: .milliseconds(200)) {
                listed = try await activeAlerts(client, server)
                return listed.count == 2
            }
            let leak = try #require(listed.first { ($0["labels"] as? [String: String])?["alertname"] == "MemwardenLeakSuspected" })
            let labels = try #require(leak["labels"] as? [String: String])
            #expect(labels["severity"] == "warning")
            #expect(labels["namespace"] == "prod" && labels["pod"] == "shop-7d9f" && labels["container"] == "api")
            #expect(labels["node"] == "node-1" && labels["scope"] == "process" && labels["comm"] == "shop-api")
            #expect(labels["pid"] == nil, "the pid is no label")
            let annotations = try #require(leak["annotations"] as? [String: String])
            #expect(annotations["summary"]?.contains("prod/shop-7d9f") == true)
            #expect(annotations["description"]?.contains("confidence 0.88") == true)
            #expect((leak["startsAt"] as? String)?.hasPrefix(String(WallClock.rfc3339(epochNanoseconds: now).prefix(16))) == true)
            let budget = try #require(listed.first { ($0["labels"] as? [String: String])?["alertname"] == "MemwardenBudgetHigh" })
            #expect((budget["labels"] as? [String: String])?["scope"] == "cgroup")

            // a higher tier replaces the lower one; the leak clears
            sink.submit(SampleEvents.make(.budgetCritical, target: SampleEvents.cgroupTarget(), time: realtimeNanoseconds()))
            sink.submit(SampleEvents.make(.leakCleared, target: target, time: realtimeNanoseconds()))
            try await waitUntil("only MemwardenBudgetCritical active", interval: .milliseconds(200)) {
                listed = try await activeAlerts(client, server)
                return listed.compactMap { ($0["labels"] as? [String: String])?["alertname"] } == ["MemwardenBudgetCritical"]
            }
            #expect((listed[0]["labels"] as? [String: String])?["severity"] == "critical")

            // firing alerts are sent again while they fire
            let delivered = sink.statistics.delivered
            try await waitUntil("a resend of the firing alert") { sink.statistics.delivered > delivered }

            sink.submit(SampleEvents.make(.budgetRecovered, target: SampleEvents.cgroupTarget(), time: realtimeNanoseconds()))
            try await waitUntil("no active alert after budget.recovered", interval: .milliseconds(200)) {
                try await activeAlerts(client, server).isEmpty
            }
            try await services.stop()
            #expect(sink.alerts.isEmpty, "resolved alerts are forgotten once sent")
            #expect(sink.statistics.dropped == 0)
        }
    }
}

/// The Alertmanager sink's bookkeeping, and its behaviour with no Alertmanager at all.
@Suite struct AlertBookTests {
    @Test func alertsWaitForAnAlertmanagerThatIsDown() async throws {
        let port = try freePort()
        let sink = try AlertmanagerSink(
            settings: AlertmanagerSettings(url: "http://127.0.0.1:\(port)", timeout: .milliseconds(500), queueSize: 2),
            flushTimeout: .milliseconds(500), logger: Logger(label: "alertmanager-test"))
        let services = RunningServices([sink])
        for pid in Int32(100)..<105 {
            sink.submit(SampleEvents.make(.leakSuspected, target: SampleEvents.processTarget(SampleEvents.unitIdentity, pid: pid)))
        }
        // the same program in the same unit: one alert; a second unit's: another; a third does not fit
        sink.submit(SampleEvents.make(.leakSuspected, target: SampleEvents.cgroupTarget(SampleEvents.unitIdentity)))
        sink.submit(SampleEvents.make(.leakSuspected, target: SampleEvents.cgroupTarget()))
        try await waitUntil("failed posts") { sink.statistics.failedAttempts >= 1 }
        #expect(sink.alerts.count == 2)
        #expect(sink.statistics.droppedQueueFull == 1)
        #expect(sink.statistics.queueDepth == 2)
        // an Alertmanager that is down is retried until the flush's 500 ms are over, not forever
        try await waitForReturn("the shutdown to give up on the Alertmanager that is down (500 ms to flush)") {
            try await services.stop()
        }
        #expect(sink.statistics.droppedAtShutdown == 2)
    }

    @Test func alertOfSeveralProcessesResolvesWhenTheLastClears() {
        var book = AlertBook(capacity: 10)
        let a = SampleEvents.processTarget(pid: 1), b = SampleEvents.processTarget(pid: 2)
        let firedA = book.apply(SampleEvents.make(.leakSuspected, target: a))
        let firedB = book.apply(SampleEvents.make(.leakSuspected, target: b))
        #expect(firedA && firedB)
        #expect(book.alerts.count == 1)
        _ = book.apply(SampleEvents.make(.leakCleared, target: a))
        #expect(book.alerts.values.first?.resolvedAt == nil)
        _ = book.apply(SampleEvents.make(.leakCleared, target: b, time: SampleEvents.time + 5))
        #expect(book.alerts.values.first?.resolvedAt == SampleEvents.time + 5)
        let body = AlertBook.json(book.due(now: nil, resendNanoseconds: 1), now: 0, holdNanoseconds: 0)
        #expect(body.contains(#""endsAt":"\#(WallClock.rfc3339(epochNanoseconds: SampleEvents.time + 5))""#))
    }
}
