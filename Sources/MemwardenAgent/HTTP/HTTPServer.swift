import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import MemwardenDetection
import MemwardenModel
import MemwardenOutput
import NIOCore
import ServiceLifecycle

/// `--listen` that is not ADDR:PORT.
public struct ListenAddressError: Error, CustomStringConvertible, Sendable {
    public var value: String
    public var description: String {
        "--listen '\(value)': expected ADDR:PORT such as 127.0.0.1:9808, 0.0.0.0:9808 or [::]:9808"
    }
}

/// The agent's HTTP endpoints (docs/http-api.md):
/// - /metrics: Prometheus text exposition of AgentMetrics
/// - /healthz: 200 while the process serves requests
/// - /readyz: 200 when AgentStatus is ready, else 503 with a JSON body naming what is not
/// - /api/v1/targets: the TargetTable (filters: scope, verdict, namespace)
/// - /api/v1/events?since=…&limit=…: the RecentEvents ring
/// - /api/v1/recommendations: right-sizing from the live histories (filters: namespace, leaking)
/// A Service: it stops accepting on graceful shutdown.
///
/// The API names every tenant's pods, cgroups and pids, so it listens on
/// loopback by default; a second server with `endpoints: .health` serves only
/// what a scraper and the kubelet's probes need, on the pod's address.
public struct HTTPServer: Service {
    /// Which routes a server answers.
    public enum Endpoints: String, Sendable {
        /// Everything: /metrics, /healthz, /readyz and /api/v1/….
        case all
        /// /metrics, /healthz and /readyz only (`--metrics-listen`).
        case health
    }

    /// A connection idle this long is closed: a client that opens sockets and
    /// sends nothing cannot hold them for ever.
    public static let idleTimeout: TimeAmount = .seconds(30)
    /// Connections beyond this wait in the kernel's backlog until one closes:
    /// a scraper and a few operators need a handful, a flood gets no more
    /// file descriptors or memory than this.
    public static let maximumConnections = 64

    public let host: String
    public let port: Int
    public let endpoints: Endpoints
    let idleTimeout: TimeAmount
    let status: AgentStatus
    let targets: TargetTable
    let events: RecentEvents
    let metrics: AgentMetrics
    let recommendations: RecommendationBoard
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// - Parameter onListening: called with the bound port once the server
    ///   accepts connections (port 0 binds a free one).
    public init(
        listen: String, endpoints: Endpoints = .all, status: AgentStatus, targets: TargetTable, events: RecentEvents,
        metrics: AgentMetrics, logger: Logger, recommendations: RecommendationBoard = RecommendationBoard(),
        idleTimeout: TimeAmount = Self.idleTimeout,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws(ListenAddressError) {
        (host, port) = try Self.parse(listen: listen)
        self.endpoints = endpoints
        self.idleTimeout = idleTimeout
        self.recommendations = recommendations
        self.status = status
        self.targets = targets
        self.events = events
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
    }

    /// "ADDR:PORT", "[v6]:PORT" or ":PORT" (all interfaces).
    public static func parse(listen: String) throws(ListenAddressError) -> (host: String, port: Int) {
        let error = ListenAddressError(value: listen)
        var host: Substring
        let portText: Substring
        if listen.hasPrefix("[") {
            guard let close = listen.firstIndex(of: "]"), listen[listen.index(after: close)...].hasPrefix(":") else {
                throw error
            }
            host = listen[listen.index(after: listen.startIndex)..<close]
            portText = listen[listen.index(close, offsetBy: 2)...]
        } else {
            guard let colon = listen.lastIndex(of: ":"), !listen[..<colon].contains(":") else { throw error }
            host = listen[..<colon]
            portText = listen[listen.index(after: colon)...]
        }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = Int(portText), (0...65535).contains(port), !host.contains(where: \.isWhitespace) else { throw error }
        return (String(host), port)
    }

    public func run() async throws {
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: idleTimeout)),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: nil,
                availableConnectionsDelegate: MaximumAvailableConnections(Self.maximumConnections, logger: logger)),
            onServerRunning: { [logger, onListening, host, endpoints] channel in
                let bound = channel.localAddress?.port ?? 0
                logger.info(
                    "HTTP server listening", metadata: ["address": "\(host):\(bound)", "endpoints": "\(endpoints.rawValue)"])
                await onListening(bound)
            },
            logger: logger
        )
        try await app.run()
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/metrics") { [metrics] _, _ -> Response in
            Self.response(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", bytes: metrics.exposition())
        }
        router.get("/healthz") { [status] _, _ -> Response in
            var line = JSONLine()
            line.add("status", "ok")
            line.add("version", MemwardenVersion.current)
            line.add("started", WallClock.rfc3339(epochNanoseconds: status.startedAt))
            return Self.json(.ok, line.finish())
        }
        router.get("/readyz") { [status] _, _ -> Response in
            let missing = status.notReady
            var line = JSONLine()
            line.add("status", missing.isEmpty ? "ready" : "not_ready")
            line.addRaw("not_ready", JSONLine.object(Dictionary(uniqueKeysWithValues: missing.map { ($0.check.rawValue, $0.reason) })))
            return Self.json(missing.isEmpty ? .ok : .serviceUnavailable, line.finish())
        }
        guard endpoints == .all else { return router }
        router.get("/api/v1/targets") { [targets] request, _ -> Response in
            let query = request.uri.queryParameters
            var rows = targets.snapshots()
            if let scope = query.get("scope") {
                guard let value = LeakScope(rawValue: scope) else {
                    return Self.badRequest("scope='\(scope)': expected process or cgroup")
                }
                rows = rows.filter { $0.scope == value }
            }
            if let verdict = query.get("verdict") {
                guard let value = TargetSnapshot.Verdict(rawValue: verdict) else {
                    return Self.badRequest("verdict='\(verdict)': expected ok or leak_suspected")
                }
                rows = rows.filter { $0.verdict == value }
            }
            if let namespace = query.get("namespace") {
                rows = rows.filter { $0.identity.pod?.namespace == namespace }
            }
            let body = "{\"count\":\(rows.count),\"targets\":[" + rows.map(TargetTable.json).joined(separator: ",") + "]}"
            return Self.json(.ok, body)
        }
        router.get("/api/v1/events") { [events] request, _ -> Response in
            let query = request.uri.queryParameters
            var since: UInt64?
            if let text = query.get("since") {
                do throws(TimeParameterError) {
                    since = try TimeParameter.parse(text)
                } catch {
                    return Self.badRequest(error.description)
                }
            }
            var limit: Int?
            if let text = query.get("limit") {
                guard let value = Int(text), value > 0 else { return Self.badRequest("limit='\(text)': expected a positive integer") }
                limit = value
            }
            let lines = events.lines(since: since, limit: limit)
            return Self.json(.ok, "{\"count\":\(lines.count),\"events\":[" + lines.joined(separator: ",") + "]}")
        }
        router.get("/api/v1/recommendations") { [recommendations] request, _ -> Response in
            let query = request.uri.queryParameters
            var rows = recommendations.targets
            if let namespace = query.get("namespace") {
                rows = rows.filter { $0.identity.pod?.namespace == namespace }
            }
            if let leaking = query.get("leaking") {
                guard let value = Bool(leaking) else { return Self.badRequest("leaking='\(leaking)': expected true or false") }
                rows = rows.filter { $0.recommendation.leaking == value }
            }
            return Self.json(.ok, RecommendedTarget.document(rows))
        }
        return router
    }

    static func response(_ status: HTTPResponse.Status, contentType: String, bytes: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        response(status, contentType: "application/json", bytes: Array((text + "\n").utf8))
    }

    static func badRequest(_ message: String) -> Response {
        var line = JSONLine()
        line.add("error", message)
        return json(.badRequest, line.finish())
    }
}
