import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import MemwardenTestSupport
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP receiver on 127.0.0.1 for the sinks' tests: it records every
/// request and answers from a script (status codes, held answers), then 200.
final class TestReceiver: Sendable {
    struct Received: Sendable {
        var path: String
        /// By lower-case name.
        var headers: [String: String]
        var body: String
    }

    enum Answer: Sendable {
        case status(Int)
        /// Answer only at `release()` or `stop()`: whatever the sink gets done
        /// meanwhile provably did not wait for this answer, however slow the machine.
        case held(Int)
    }

    private struct State {
        var received: [Received] = []
        var script: [Answer] = []
        var always: Answer?
    }

    private let state = Mutex(State())
    private let gate = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))
    private let running = Mutex<(group: ServiceGroup, task: Task<Void, any Error>)?>(nil)
    let logger = Logger(label: "test-receiver")

    init() {}

    var received: [Received] { state.withLock { $0.received } }

    /// The next answers, in order; afterwards `always` (or 200).
    func script(_ answers: [Answer], always: Answer? = nil) {
        state.withLock {
            $0.script = answers
            $0.always = always
        }
    }

    /// Starts listening (port 0: a free one), over TLS when given a
    /// configuration, and returns the bound port.
    func start(port: Int = 0, tls: TLSConfiguration? = nil) async throws -> Int {
        let router = Router()
        router.post("/**") { [self] request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let answer = self.state.withLock { s -> Answer in
                s.received.append(Received(path: request.uri.path, headers: headers, body: String(buffer: body)))
                return s.script.isEmpty ? (s.always ?? .status(200)) : s.script.removeFirst()
            }
            switch answer {
            case .status(let code):
                return Response(status: HTTPResponse.Status(code: code))
            case .held(let code):
                await self.held()
                return Response(status: HTTPResponse.Status(code: code))
            }
        }
        let bound = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router,
            server: try tls.map { try .tls(tlsConfiguration: $0) } ?? .http1(),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { channel in
                bound.continuation.yield(channel.localAddress?.port ?? 0)
                bound.continuation.finish()
            },
            logger: logger
        )
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        running.withLock { $0 = (group, task) }
        for await port in bound.stream { return port }
        throw TestFailure("the receiver did not start on port \(port): \(String(describing: await task.result))")
    }

    private func held() async {
        await withCheckedContinuation { continuation in
            let open = gate.withLock { gate in
                if !gate.open { gate.waiting.append(continuation) }
                return gate.open
            }
            if open { continuation.resume() }
        }
    }

    /// Answers every held request, now and from now on.
    func release() {
        let waiting = gate.withLock { gate in
            gate.open = true
            defer { gate.waiting = [] }
            return gate.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    /// Stops listening; what it received stays readable.
    func stop() async {
        // a held handler would keep the graceful shutdown waiting
        release()
        guard let (group, task) = running.withLock({ r in defer { r = nil }; return r }) else { return }
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// Runs services (sinks) in a ServiceGroup for a test, and shuts them down.
final class RunningServices: Sendable {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(_ services: [any Service], logger: Logger = Logger(label: "test")) {
        group = ServiceGroup(configuration: .init(services: services, logger: logger))
        let group = self.group
        task = Task { try await group.run() }
    }

    /// Graceful shutdown; returns how long until every service returned.
    @discardableResult
    func stop() async throws -> Duration {
        let start = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await task.value
        return ContinuousClock.now - start
    }
}
