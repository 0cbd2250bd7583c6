import Foundation
import MemwardenTestSupport
import Testing

/// The real programs the output tests run: python3 with the jsonschema
/// module, promtool, prometheus and alertmanager (Debian packages, installed
/// by scripts/setup). Missing ones skip their tests with the reason; with
/// CI=true nothing skips: the test runs and fails on the missing piece.
enum OutputAccess {
    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

    enum Tool: String, CaseIterable {
        case jsonschema = "python3 + jsonschema"
        case promtool
        case prometheus
        case alertmanager

        var executable: String {
            switch self {
            case .jsonschema: "python3"
            case .promtool: "promtool"
            case .prometheus: "prometheus"
            case .alertmanager: "prometheus-alertmanager"
            }
        }
    }

    static func path(_ tool: Tool) -> String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        let candidates = paths.map { "\($0)/\(tool.executable)" } + ["/usr/bin/\(tool.executable)"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func unavailableReason(_ tool: Tool) -> String? {
        guard let path = path(tool) else {
            return "\(tool.executable) is not installed (scripts/setup installs it)"
        }
        if tool == .jsonschema {
            let result = try? run(path, ["-c", "import jsonschema"])
            if result?.status != 0 { return "the python3 module jsonschema is missing (scripts/setup installs it)" }
        }
        return nil
    }

    static func enabled(_ tool: Tool) -> Bool { isCI || unavailableReason(tool) == nil }
    static func comment(_ tool: Tool) -> Comment { Comment(rawValue: unavailableReason(tool) ?? "\(tool.rawValue) available") }
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to its end (input on stdin) and collects its output
/// (through files: a pipe left unread could stall the child).
func run(_ path: String, _ arguments: [String], input: String = "") throws -> RunResult {
    let directory = try TemporaryDirectory("run")
    defer { directory.remove() }
    try directory.write("in", input)
    try directory.write("out", "")
    try directory.write("err", "")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardInput = FileHandle(forReadingAtPath: directory.file("in"))
    process.standardOutput = FileHandle(forWritingAtPath: directory.file("out"))
    process.standardError = FileHandle(forWritingAtPath: directory.file("err"))
    try process.run()
    process.waitUntilExit()
    return RunResult(
        status: process.terminationStatus,
        stdout: try String(contentsOfFile: directory.file("out"), encoding: .utf8),
        stderr: try String(contentsOfFile: directory.file("err"), encoding: .utf8))
}

/// The repository's root (for schema/, docs/, deploy/).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func repositoryFile(_ path: String) -> String { repositoryRoot.appendingPathComponent(path).path }

/// A temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(_ prefix: String) throws {
        var template = Array("/tmp/memwarden-\(prefix)-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: created)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Parses a JSON object text.
func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(text.prefix(200))")
    }
    return object
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
