import AsyncHTTPClient
import Logging
import MemwardenModel
import NIOCore
import NIOHTTP1
import NIOSSL

/// A sink setting that cannot work, named with the value that is wrong.
public struct OutputConfigurationError: Error, CustomStringConvertible, Sendable {
    public var sink: String
    public var field: String
    public var value: String
    public var problem: String

    public var description: String { "outputs.\(sink).\(field): \(problem) ('\(value)')" }
}

/// How one POST ended.
enum DeliveryOutcome: Sendable, Equatable {
    case delivered
    /// Worth another try: timeout, connection error, 5xx, 408, 429.
    case retryable(String)
    /// The receiver will not take it: other 4xx, or a request that cannot be made.
    case rejected(String)
}

/// POSTs JSON to one receiver over HTTP or verified TLS (the system's trust
/// store, or a CA file), with a bearer token read from a file on each request
/// so a rotated token is picked up without a restart. The settings are
/// checked at init; the client itself lives only while a sink's `run` does
/// (`withClient`), so a sink built but never run holds no connections.
struct HTTPDelivery: Sendable {
    let sink: String
    let configuration: HTTPClient.Configuration
    let bearerTokenFile: String?

    init(sink: String, url: String, caFile: String?, bearerTokenFile: String?) throws(OutputConfigurationError) {
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > 8 else {
            throw OutputConfigurationError(sink: sink, field: "url", value: url, problem: "not an http:// or https:// URL")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let caFile {
            guard (try? readText(caFile))?.contains("-----BEGIN CERTIFICATE-----") == true else {
                throw OutputConfigurationError(
                    sink: sink, field: "ca_file", value: caFile, problem: "cannot read a PEM certificate from this file")
            }
            tls.trustRoots = .file(caFile)
        }
        if bearerTokenFile != nil, let host = PlainHTTP.remoteHost(url) {
            throw OutputConfigurationError(
                sink: sink, field: "url", value: url,
                problem: "plain http:// to \(host) with a bearer token: the token would travel in clear text; use https://")
        }
        if let bearerTokenFile, (try? readText(bearerTokenFile)) == nil {
            throw OutputConfigurationError(
                sink: sink, field: "bearer_token_file", value: bearerTokenFile, problem: "cannot read this file")
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        self.sink = sink
        self.bearerTokenFile = bearerTokenFile
        self.configuration = configuration
    }

    /// Runs `body` with a client, shut down when it returns.
    func withClient<T>(_ body: (HTTPClient) async -> T) async -> T {
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let result = await body(client)
        try? await client.shutdown()
        return result
    }

    func post(
        client: HTTPClient, url: String, body: [UInt8], headers extra: [(String, String)] = [], timeout: Duration, logger: Logger
    ) async -> DeliveryOutcome {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "memwarden/\(MemwardenVersion.current)")
        if let bearerTokenFile {
            guard let token = try? readText(bearerTokenFile).trimmingWhitespace(), !token.isEmpty else {
                return .retryable("cannot read the bearer token file \(bearerTokenFile)")
            }
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: timeout.timeAmount, logger: logger)
            // read (and discard) a bounded body so the connection can be reused
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            switch code {
            case 200..<300: return .delivered
            case 408, 429, 500...: return .retryable("HTTP \(code)")
            default: return .rejected("HTTP \(code)")
            }
        } catch {
            return .retryable("\(error)")
        }
    }
}


extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

