import AsyncHTTPClient
import Foundation
import MemwardenTestSupport
import NIOCore
import NIOHTTP1

/// A real server program (Prometheus, Alertmanager) started by a test on a
/// free port with its own config and storage in a temporary directory;
/// `stop()` ends it and removes the directory.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let directory: TemporaryDirectory
    let port: Int
    let name: String

    init(name: String, executable: String, arguments: (_ directory: TemporaryDirectory, _ port: Int) -> [String],
        files: [String: String] = [:]) throws {
        self.name = name
        directory = try TemporaryDirectory(name)
        for (file, text) in files { try directory.write(file, text) }
        port = try freePort()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments(directory, port)
        let log = FileManager.default.createFile(atPath: directory.file("log"), contents: nil)
        precondition(log)
        let handle = FileHandle(forWritingAtPath: directory.file("log"))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    var log: String { (try? String(contentsOfFile: directory.file("log"), encoding: .utf8)) ?? "" }

    /// Waits until GET path answers 200.
    func waitReady(path: String, client: HTTPClient, seconds: Double = 30) async throws {
        do {
            try await waitUntil("\(name) to answer 200 on \(path)", seconds: seconds, interval: .milliseconds(100)) {
                guard process.isRunning else { throw TestFailure("\(name) exited: \(log.suffix(2000))") }
                return (try? await client.get(baseURL + path).status) == 200
            }
        } catch {
            throw TestFailure("\(error); its log: \(log.suffix(2000))")
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        directory.remove()
    }
}

extension HTTPClient {
    struct Answer {
        var status: Int
        var body: String
        var contentType: String?
    }

    func get(_ url: String) async throws -> Answer {
        try await send(url, method: .GET, body: nil)
    }

    func send(_ url: String, method: HTTPMethod, body: String?) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await execute(request, timeout: .seconds(10))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        return Answer(
            status: Int(response.status.code), body: String(buffer: buffer), contentType: response.headers.first(name: "Content-Type"))
    }

    /// A JSON answer's object.
    func json(_ url: String) async throws -> Any {
        let answer = try await get(url)
        guard answer.status == 200 else { throw TestFailure("GET \(url): HTTP \(answer.status) \(answer.body)") }
        return try JSONSerialization.jsonObject(with: Data(answer.body.utf8))
    }
}

/// Runs `body` with an HTTP client that is shut down however the body ends
/// (a client dropped without shutdown traps in debug builds).
func withHTTPClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}
