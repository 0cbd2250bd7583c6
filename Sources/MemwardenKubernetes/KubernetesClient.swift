import AsyncHTTPClient
import Foundation
import Logging
import MemwardenModel
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// A failed Kubernetes API request: which request, what status, what the server said.
public struct KubernetesError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// The client could not be set up (CA file, URL).
        case configuration
        /// No answer: connection refused, TLS failure, timeout, broken stream.
        case transport
        /// The server answered with a non-2xx status (`status`).
        case status
        /// The answer was not what the API promises.
        case decoding
        /// A watch stream sent an ERROR event (`status` is its code).
        case watchError
    }

    public var code: Code
    /// "GET /api/v1/pods?watch=1&…".
    public var request: String
    public var status: Int?
    /// metav1.Status reason ("Expired", "NotFound", "Conflict"), when the server gave one.
    public var reason: String?
    public var message: String

    /// The resourceVersion is too old (compacted): relist.
    public var isGone: Bool { status == 410 }

    public var description: String {
        var text = "\(request): "
        if let status { text += "\(status) " }
        if let reason { text += "\(reason): " }
        return text + message
    }
}

/// The service account token, read from its file again whenever the file changes (kubelet
/// rotates projected tokens, replacing the file through a symlink swap) or the server says 401.
final class BearerTokenFile: Sendable {
    let path: String
    private struct Cached {
        var token: String
        var stamp: [Int]
    }
    private let cached = Mutex<Cached?>(nil)

    init(path: String) { self.path = path }

    /// The current token; re-read when the file's inode, size or mtime moved.
    func token() throws(FileError) -> String {
        let stamp = Self.stamp(path)
        if let cached = cached.withLock({ $0 }), stamp != nil, cached.stamp == stamp { return cached.token }
        let token = try readText(path).trimmingCharacters(in: .whitespacesAndNewlines)
        cached.withLock { $0 = Cached(token: token, stamp: stamp ?? []) }
        return token
    }

    func invalidate() { cached.withLock { $0 = nil } }

    private static func stamp(_ path: String) -> [Int]? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return [Int(info.st_ino), Int(info.st_size), Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec)]
    }
}

/// A small client for the few Kubernetes API calls memwarden makes: list and watch pods, post
/// and patch Events, patch pod annotations. HTTPS verified against the configured CA, bearer
/// token from a file. One HTTP connection pool for all callers; `shutdown()` once at the end.
public final class KubernetesClient: Sendable {
    public let configuration: KubernetesConfiguration
    private let http: HTTPClient
    private let token: BearerTokenFile?
    private let logger: Logger

    /// Bodies of ordinary answers are read whole, up to this size (a node's pod list is a few MB).
    static let maxBodyBytes = 64 << 20
    /// One line of a watch stream (one object).
    static let maxLineBytes = 16 << 20

    /// The verbs memwarden uses (its own type, so callers need no NIO import).
    public enum Method: String, Sendable {
        case GET, POST, PUT, PATCH, DELETE

        var http: HTTPMethod {
            switch self {
            case .GET: .GET
            case .POST: .POST
            case .PUT: .PUT
            case .PATCH: .PATCH
            case .DELETE: .DELETE
            }
        }
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: Data
    }

    public init(configuration: KubernetesConfiguration, logger: Logger) throws(KubernetesError) {
        self.configuration = configuration
        self.logger = logger
        token = configuration.tokenFile.map(BearerTokenFile.init)
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = configuration.caFile {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !certificates.isEmpty else {
                    throw KubernetesError(code: .configuration, request: "load CA", status: nil, reason: nil, message: "\(caFile) holds no PEM certificate")
                }
                tls.trustRoots = .certificates(certificates)
            } catch let error as KubernetesError {
                throw error
            } catch {
                throw KubernetesError(code: .configuration, request: "load CA", status: nil, reason: nil, message: "\(caFile): \(error)")
            }
        }
        // No read timeout: a watch is quiet for minutes. Each call has its own deadline, and
        // the watcher bounds a whole stream.
        // No retries of refused connections inside the pool (it would retry until the connect
        // timeout, 10 s per request): the watcher and the sink back off on their own.
        var pool = HTTPClient.Configuration.ConnectionPool()
        pool.retryConnectionEstablishment = false
        let settings = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: nil), connectionPool: pool)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings, backgroundActivityLogger: logger)
    }

    public func shutdown() async throws {
        try await http.shutdown()
    }

    // MARK: - Requests

    /// One request, body read whole. Non-2xx answers throw, with the server's Status message.
    public func send(
        _ method: Method, _ path: String, query: [(String, String)] = [], body: Data? = nil,
        contentType: String = "application/json", timeout: Duration = .seconds(30)
    ) async throws -> Response {
        let label = Self.label(method, path, query)
        let response = try await execute(method, path, query: query, body: body, contentType: contentType, timeout: timeout, label: label)
        let data: Data
        do {
            data = Data(try await response.body.collect(upTo: Self.maxBodyBytes).readableBytesView)
        } catch {
            try Task.checkCancellation()
            throw KubernetesError(code: .transport, request: label, status: response.statusCode, reason: nil, message: "reading the answer: \(error)")
        }
        guard (200..<300).contains(response.statusCode) else { throw Self.statusError(label, response.statusCode, data) }
        return Response(status: response.statusCode, body: data)
    }

    /// GET and decode.
    func get<T: Decodable>(_ path: String, query: [(String, String)] = [], as type: T.Type, timeout: Duration = .seconds(60)) async throws -> T {
        let response = try await send(.GET, path, query: query, timeout: timeout)
        do {
            return try JSONDecoder().decode(T.self, from: response.body)
        } catch {
            throw KubernetesError(
                code: .decoding, request: Self.label(.GET, path, query), status: response.status, reason: nil,
                message: "not a \(T.self): \(error)")
        }
    }

    /// A streaming GET (a watch): hands each line to `onLine` until the server ends the
    /// stream. `headTimeout` bounds the wait for the answer's head only.
    func streamLines(
        _ path: String, query: [(String, String)], headTimeout: Duration = .seconds(30),
        onLine: (Data) async throws -> Void
    ) async throws {
        let label = Self.label(.GET, path, query)
        let response = try await execute(.GET, path, query: query, body: nil, contentType: nil, timeout: headTimeout, label: label)
        guard (200..<300).contains(response.statusCode) else {
            let data = (try? await response.body.collect(upTo: 1 << 20)).map { Data($0.readableBytesView) } ?? Data()
            throw Self.statusError(label, response.statusCode, data)
        }
        var pending = Data()
        do {
            for try await chunk in response.body {
                pending.append(contentsOf: chunk.readableBytesView)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending = pending[(newline + 1)...]
                    if !line.isEmpty { try await onLine(Data(line)) }
                }
                if pending.count > Self.maxLineBytes {
                    throw KubernetesError(code: .decoding, request: label, status: response.statusCode, reason: nil, message: "a watch line longer than \(Self.maxLineBytes) bytes")
                }
                // A fresh Data keeps indices from 0 and drops the consumed prefix's storage.
                if pending.isEmpty { pending = Data() }
            }
        } catch let error as KubernetesError {
            throw error
        } catch {
            try Task.checkCancellation()
            if error is CancellationError { throw error }
            if let onLineError = error as? PodWatchEvent.DecodeError { throw onLineError }
            throw KubernetesError(code: .transport, request: label, status: response.statusCode, reason: nil, message: "stream broke: \(error)")
        }
        if !pending.isEmpty { try await onLine(Data(pending)) }
    }

    private func execute(
        _ method: Method, _ path: String, query: [(String, String)], body: Data?, contentType: String?,
        timeout: Duration, label: String, retriedAfter401: Bool = false
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: configuration.apiURL + path + Self.encode(query))
        request.method = method.http
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "memwarden/\(MemwardenVersion.current)")
        if let token {
            do {
                request.headers.add(name: "Authorization", value: "Bearer \(try token.token())")
            } catch {
                throw KubernetesError(code: .configuration, request: label, status: nil, reason: nil, message: "token: \(error)")
            }
        }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            let components = timeout.components
            let nanoseconds = components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
            response = try await http.execute(request, timeout: .nanoseconds(nanoseconds), logger: logger)
        } catch {
            try Task.checkCancellation()
            throw KubernetesError(code: .transport, request: label, status: nil, reason: nil, message: "\(error)")
        }
        // A rotated token: the file may have changed between our stat and the server's check.
        if response.status == .unauthorized, let token, !retriedAfter401 {
            _ = try? await response.body.collect(upTo: 1 << 20)
            token.invalidate()
            logger.debug("401 from the API server: reading the token file again", metadata: ["request": "\(label)"])
            return try await execute(
                method, path, query: query, body: body, contentType: contentType, timeout: timeout, label: label, retriedAfter401: true)
        }
        return response
    }

    // MARK: - Helpers

    static func label(_ method: Method, _ path: String, _ query: [(String, String)]) -> String {
        "\(method.rawValue) \(path)\(encode(query))"
    }

    static func encode(_ query: [(String, String)]) -> String {
        guard !query.isEmpty else { return "" }
        return "?" + query.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    private static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(byte)))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func statusError(_ label: String, _ status: Int, _ body: Data) -> KubernetesError {
        let decoded = try? JSONDecoder().decode(KubeStatus.self, from: body)
        let message = decoded?.message ?? String(decoding: body.prefix(300), as: UTF8.self)
        return KubernetesError(code: .status, request: label, status: status, reason: decoded?.reason, message: message)
    }
}

extension HTTPClientResponse {
    fileprivate var statusCode: Int { Int(status.code) }
}
