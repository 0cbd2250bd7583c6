import Crypto
import Foundation
import Logging
import MemwardenAgent
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import NIOSSL
import Testing

/// The webhook sink against real HTTP receivers on 127.0.0.1.
@Suite struct WebhookSinkTests {
    let logger = Logger(label: "webhook-test")

    func settings(port: Int, _ change: (inout WebhookSettings) -> Void = { _ in }) -> WebhookSettings {
        var settings = WebhookSettings(
            url: "http://127.0.0.1:\(port)/hook", timeout: .seconds(2), maxRetries: 5, initialBackoff: .milliseconds(20),
            maxBackoff: .milliseconds(100), queueSize: 100)
        change(&settings)
        return settings
    }

    @Test func deliversEventsInOrderWithTokenAndSignature() async throws {
        let directory = try TemporaryDirectory("webhook")
        defer { directory.remove() }
        try directory.write("token", "first-token\n")
        try directory.write("key", "s3cret-key\n")
        let receiver = TestReceiver()
        let port = try await receiver.start()
        let sink = try WebhookSink(
            settings: settings(port: port) {
                $0.bearerTokenFile = directory.file("token")
                $0.hmacSecretFile = directory.file("key")
            }, logger: logger)
        let services = RunningServices([sink])
        let events = [AgentEvent.EventType.leakSuspected, .budgetHigh, .leakCleared].map { SampleEvents.make($0) }
        for event in events.prefix(2) { sink.submit(event) }
        try await waitUntil("2 webhook posts") { receiver.received.count == 2 }
        // a rotated token is used from the next request on, without a restart
        try directory.write("token", "second-token")
        sink.submit(events[2])
        try await waitUntil("3 webhook posts") { receiver.received.count == 3 }
        try await services.stop()
        await receiver.stop()

        let received = receiver.received
        #expect(received.map(\.body) == events.map { $0.jsonLine() })
        #expect(received.allSatisfy { $0.path == "/hook" && $0.headers["content-type"] == "application/json" })
        #expect(received.map { $0.headers["x-memwarden-event"] } == events.map { $0.type.rawValue })
        #expect(received.map { $0.headers["authorization"] } == ["Bearer first-token", "Bearer first-token", "Bearer second-token"])
        // the receiver checks the signature with the shared key, as a real one would
        // over "<timestamp>.<body>", the timestamp recent (a receiver refuses old ones: no replay)
        for request in received {
            let timestamp = try #require(request.headers["x-memwarden-timestamp"].flatMap { Int64($0) })
            #expect(abs(Double(timestamp) - Date().timeIntervalSince1970) < 300, "timestamp \(timestamp)")
            let message = Array("\(timestamp).".utf8) + Array(request.body.utf8)
            let expected = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array("s3cret-key".utf8)))
            let hex = expected.map { String(format: "%02x", $0) }.joined()
            #expect(request.headers["x-memwarden-signature"] == "sha256=" + hex)
        }
        let stats = sink.statistics
        #expect(stats.delivered == 3 && stats.dropped == 0 && stats.failedAttempts == 0 && stats.queueDepth == 0)
    }

    @Test func retriesServerErrorsThenDelivers() async throws {
        let receiver = TestReceiver()
        receiver.script([.status(500), .status(503)])
        let port = try await receiver.start()
        let sink = try WebhookSink(settings: settings(port: port), logger: logger)
        let services = RunningServices([sink])
        sink.submit(SampleEvents.make(.leakSuspected))
        try await waitUntil("the event delivered after two failures") { sink.statistics.delivered == 1 }
        try await services.stop()
        await receiver.stop()
        #expect(receiver.received.count == 3)
        #expect(Set(receiver.received.map(\.body)).count == 1, "the same event each time")
        #expect(sink.statistics.failedAttempts == 2)
        #expect(sink.statistics.dropped == 0)
    }

    @Test func aSlowReceiverTimesOutAndIsRetried() async throws {
        let receiver = TestReceiver()
        // the first answer comes only at stop(): a delivery before that is a second attempt
        // that did not wait for it, which no stopwatch on a loaded machine could tell
        receiver.script([.held(200)])
        let port = try await receiver.start()
        let sink = try WebhookSink(settings: settings(port: port) { $0.timeout = .milliseconds(300) }, logger: logger)
        let services = RunningServices([sink])
        sink.submit(SampleEvents.make(.budgetCritical))
        try await waitUntil("delivery by a second attempt while the first answer is held") { sink.statistics.delivered == 1 }
        try await services.stop()
        await receiver.stop()
        #expect(sink.statistics.failedAttempts == 1)
        #expect(receiver.received.count == 2)
    }

    @Test func rejectedEventsAreNotRetriedAndRetriesEnd() async throws {
        let receiver = TestReceiver()
        receiver.script([.status(400)], always: .status(503))
        let port = try await receiver.start()
        let sink = try WebhookSink(settings: settings(port: port) { $0.maxRetries = 2 }, logger: logger)
        let services = RunningServices([sink])
        sink.submit(SampleEvents.make(.leakSuspected))
        sink.submit(SampleEvents.make(.leakCleared))
        try await waitUntil("both events given up") { sink.statistics.dropped == 2 }
        try await services.stop()
        await receiver.stop()
        let stats = sink.statistics
        #expect(stats.droppedRejected == 1, "a 400 is final")
        #expect(stats.droppedRetriesExhausted == 1, "503 three times (1 + 2 retries)")
        #expect(receiver.received.count == 1 + 3)
        #expect(stats.failedAttempts == 4)
    }

    @Test func aReceiverDownForAWhileKeepsTheQueueBoundedAndDeliveryResumes() async throws {
        let receiver = TestReceiver()
        let port = try await receiver.start()
        await receiver.stop()  // now nothing listens on the port
        let sink = try WebhookSink(
            settings: settings(port: port) {
                $0.queueSize = 10
                $0.maxRetries = 1000
                $0.timeout = .milliseconds(500)
            }, logger: logger)
        let services = RunningServices([sink])
        let submitted = 60
        let events = (0..<submitted).map { i in
            var event = SampleEvents.make(.budgetWarning, time: SampleEvents.time + UInt64(i) * 1_000_000)
            event.t = Double(i)
            return event
        }
        // behind 1000 retries of a dead receiver, a submit that waited for it would never return
        try await waitForReturn("\(submitted) submits to return while the receiver is down") {
            for event in events {
                sink.submit(event)
                #expect(sink.statistics.queueDepth <= 10)
            }
        }
        try await waitUntil("failed attempts against the dead receiver") { sink.statistics.failedAttempts >= 3 }
        #expect(sink.statistics.droppedQueueFull >= UInt64(submitted - 10 - 1))
        #expect(sink.statistics.delivered == 0)

        // the receiver comes back on the same port
        let back = TestReceiver()
        _ = try await back.start(port: port)
        try await waitUntil("the queue delivered once the receiver is back") {
            let s = sink.statistics
            return s.queueDepth == 0 && s.delivered + s.dropped == UInt64(submitted)
        }
        try await services.stop()
        await back.stop()
        let bodies = back.received.map(\.body)
        #expect(bodies.last == events.last!.jsonLine(), "the newest event got through")
        #expect(bodies.count == Int(sink.statistics.delivered))
        // the queue kept the 10 newest; the one event in flight when the queue
        // overflowed (being retried) may arrive before them
        let queued = min(bodies.count, 10)
        #expect(Array(bodies.suffix(queued)) == events.suffix(queued).map { $0.jsonLine() }, "the newest events, in order")
        #expect(bodies.count <= queued + 1, "at most the one in-flight event besides the queue")
        if bodies.count == queued + 1 {
            let order = events.map { $0.jsonLine() }
            let inFlight = order.firstIndex(of: bodies[0]) ?? order.count
            #expect(inFlight < order.count - queued, "the in-flight event is older than the queued ones")
        }
    }

    @Test func shutdownFlushesWhatIsQueuedWithinItsTime() async throws {
        let receiver = TestReceiver()
        let port = try await receiver.start()
        let sink = try WebhookSink(settings: settings(port: port), flushTimeout: .seconds(5), logger: logger)
        let services = RunningServices([sink])
        for type in AgentEvent.EventType.allCases { sink.submit(SampleEvents.make(type)) }
        try await services.stop()
        await receiver.stop()
        #expect(receiver.received.count == AgentEvent.EventType.allCases.count)
        #expect(sink.statistics.delivered == UInt64(AgentEvent.EventType.allCases.count))
    }

    @Test func shutdownGivesUpOnADeadReceiverInBoundedTime() async throws {
        let port = try freePort()
        let sink = try WebhookSink(
            settings: settings(port: port) { $0.maxRetries = 1000 }, flushTimeout: .milliseconds(800), logger: logger)
        let services = RunningServices([sink])
        for _ in 0..<5 { sink.submit(SampleEvents.make(.leakSuspected)) }
        try await waitUntil("a failed attempt") { sink.statistics.failedAttempts >= 1 }
        // without the flush's time limit the 1000 retries of 5 events would take minutes, so a
        // return within the wait is the bound, and a busy machine cannot fail it as a stopwatch could
        try await waitForReturn("the shutdown to give up on the dead receiver (800 ms to flush)") {
            try await services.stop()
        }
        let stats = sink.statistics
        #expect(stats.droppedAtShutdown == 5 && stats.delivered == 0)
        sink.submit(SampleEvents.make(.leakCleared))
        #expect(sink.statistics.droppedAtShutdown == 6, "after shutdown, submissions are counted, not queued")
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it, made by openssl.
    static func makeCertificates(in directory: TemporaryDirectory) throws {
        let script = """
            set -e
            cd \(directory.path)
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \\
              -days 1 -subj /CN=memwarden-test-ca 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \\
              -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 \\
              -extfile server.ext 2>/dev/null
            """
        let result = try run("/bin/sh", ["-c", script])
        guard result.status == 0 else { throw TestFailure("openssl could not make test certificates: \(result.stderr)") }
    }

    @Test func tlsIsVerifiedAgainstTheCAFile() async throws {
        let directory = try TemporaryDirectory("webhook-tls")
        defer { directory.remove() }
        try Self.makeCertificates(in: directory)
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(directory.file("server.pem")).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: directory.file("server.key"), format: .pem)))
        let receiver = TestReceiver()
        let port = try await receiver.start(tls: tls)
        let url = "https://127.0.0.1:\(port)/hook"

        // with the CA file: delivered
        let trusting = try WebhookSink(
            settings: settings(port: port) {
                $0.url = url
                $0.caFile = directory.file("ca.pem")
            }, logger: logger)
        // without it, the system's roots do not know this CA: refused, never delivered
        let doubting = try WebhookSink(
            settings: settings(port: port) {
                $0.url = url
                $0.maxRetries = 0
            }, name: "webhook-untrusted", logger: logger)
        let services = RunningServices([trusting, doubting])
        trusting.submit(SampleEvents.make(.leakSuspected))
        doubting.submit(SampleEvents.make(.leakCleared))
        try await waitUntil("one delivery over TLS and one refusal") {
            trusting.statistics.delivered == 1 && doubting.statistics.dropped == 1
        }
        try await services.stop()
        await receiver.stop()
        #expect(receiver.received.map { $0.headers["x-memwarden-event"] } == ["leak.suspected"])
        #expect(doubting.statistics.droppedRetriesExhausted == 1 && doubting.statistics.delivered == 0)
    }

    @Test func aSlowSinkHoldsUpNeitherTheCallerNorTheOtherSinks() async throws {
        let slow = TestReceiver(), fast = TestReceiver()
        // held until released: the fast sink finishing first proves it did not wait for the slow one
        slow.script([], always: .held(200))
        let slowPort = try await slow.start(), fastPort = try await fast.start()
        let recent = RecentEvents(capacity: 100)
        let outputs = try OutputSinks(
            settings: OutputSettings(
                stdout: false, webhook: settings(port: slowPort) { $0.timeout = .seconds(60) },
                alertmanager: nil),
            extra: [recent], logger: logger)
        let other = try WebhookSink(settings: settings(port: fastPort), name: "webhook-2", logger: logger)
        let services = RunningServices(outputs.services + [other])
        // submitting to a sink whose receiver holds its answer returns, or it would never
        try await waitForReturn("submits to return while the slow receiver holds its answer") {
            for type in AgentEvent.EventType.allCases {
                let event = SampleEvents.make(type)
                outputs.submit(event)
                other.submit(event)
            }
        }
        #expect(recent.lines().count == AgentEvent.EventType.allCases.count)
        try await waitUntil("the fast receiver got every event while the slow one holds its first answer") {
            fast.received.count == AgentEvent.EventType.allCases.count
        }
        #expect(slow.received.count <= 1, "the slow receiver is still on its first request")
        slow.release()
        try await services.stop()
        await slow.stop()
        await fast.stop()
    }

    @Test func minimumSeverityFilters() async throws {
        let receiver = TestReceiver()
        let port = try await receiver.start()
        let sink = try WebhookSink(settings: settings(port: port) { $0.minSeverity = .critical }, logger: logger)
        let services = RunningServices([sink])
        for type in [AgentEvent.EventType.leakSuspected, .budgetCritical, .agentStarted, .budgetEmergency] {
            sink.submit(SampleEvents.make(type))
        }
        try await services.stop()
        await receiver.stop()
        #expect(receiver.received.compactMap { $0.headers["x-memwarden-event"] } == ["budget.critical", "budget.emergency"])
    }

    @Test(
        "bad settings name the field",
        arguments: [
            ("ftp://example", "url"), ("http://127.0.0.1:1/x|token", "bearer_token_file"),
            ("http://127.0.0.1:1/x|key", "hmac_secret_file"), ("http://127.0.0.1:1/x|ca", "ca_file"),
            ("http://127.0.0.1:1/x|queue", "queue_size"),
        ])
    func badSettings(input: String, field: String) throws {
        let parts = input.split(separator: "|").map(String.init)
        var settings = WebhookSettings(url: parts[0])
        switch parts.count > 1 ? parts[1] : "" {
        case "token": settings.bearerTokenFile = "/nonexistent/token"
        case "key": settings.hmacSecretFile = "/nonexistent/key"
        case "ca": settings.caFile = "/etc/hostname"
        case "queue": settings.queueSize = 0
        default: break
        }
        do {
            _ = try WebhookSink(settings: settings, logger: logger)
            Issue.record("accepted \(input)")
        } catch {
            #expect(error.field == field)
            #expect(error.description.contains("outputs.webhook.\(field)"))
        }
    }

    @Test func signatureMatchesOpenSSL() throws {
        let body = Array(#"{"type":"agent.started"}"#.utf8)
        let signature = WebhookSink.signature(body: body, timestamp: 1_764_000_000, key: Array("k".utf8))
        // HMAC-SHA256("k", "<timestamp>.<body>") as `openssl dgst -sha256 -hmac k` computes it (docs/events.md)
        let result = try run(
            "/usr/bin/openssl", ["dgst", "-sha256", "-hmac", "k"], input: "1764000000." + String(decoding: body, as: UTF8.self))
        let hex = result.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        #expect(signature == "sha256=" + hex)
    }
}

@Suite struct SinkPartsTests {

    @Test func backoffGrowsWithJitterAndStaysUnderTheCap() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1))
        for retry in 0..<8 {
            let base = min(Duration.seconds(1), .milliseconds(100) * (1 << retry))
            let low = backoff.delay(retry: retry, random: 0), high = backoff.delay(retry: retry, random: 1)
            #expect(abs((low - base / 2).inSeconds) < 1e-6 && abs((high - base).inSeconds) < 1e-6, "retry \(retry): \(low) … \(high)")
            let jittered = backoff.delay(retry: retry)
            #expect(jittered >= low && jittered <= high)
        }
    }
}
