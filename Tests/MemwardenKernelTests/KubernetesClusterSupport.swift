import Foundation
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenKubernetes
import MemwardenModel
import MemwardenTestSupport

/// The real-API tests need etcd (Debian's etcd-server), a kube-apiserver built by
/// scripts/kube-apiserver, openssl and curl. Elsewhere they skip and say why; with CI=true they
/// run and fail on the missing piece (scripts/setup installs all of it).
enum KubeClusterAccess {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let script = repository + "/scripts/test-cluster"
    static let cachedAPIServer =
        (ProcessInfo.processInfo.environment["MEMWARDEN_KUBE_CACHE"] ?? "/var/cache/memwarden/kubernetes") + "/bin/kube-apiserver"

    static let unavailableReason: String? = {
        guard geteuid() == 0 else { return "the Kubernetes API tests start etcd and kube-apiserver as root; running as uid \(geteuid())" }
        for tool in ["etcd", "etcdctl", "openssl", "curl"] where !onPath(tool) {
            return "\(tool) is not installed (scripts/setup installs etcd-server, etcd-client, openssl, curl)"
        }
        // Building it takes ~9 min: only CI (through scripts/setup) pays that inside a test run.
        guard access(cachedAPIServer, X_OK) == 0 else {
            return "no kube-apiserver at \(cachedAPIServer): run scripts/kube-apiserver (or scripts/setup) once"
        }
        return nil
    }()

    static var enabled: Bool { KernelAccess.isCI || unavailableReason == nil }
    static var comment: Comment { Comment(rawValue: unavailableReason ?? "etcd and kube-apiserver available") }

    static func onPath(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
            access("\($0)/\(tool)", X_OK) == 0
        }
    }
}

/// One etcd + kube-apiserver from scripts/test-cluster, in a temp directory; `stop()` removes
/// everything (call it in a defer).
final class TestCluster {
    let state: String
    let environment: [String: String]
    let nodeName: String

    init(nodeName: String = "memwarden-test-node") throws {
        self.nodeName = nodeName
        // Two tries: the script picks free ports by probing, and another process may take one
        // between the probe and the bind (seen once in a full run); a second start gets new ones.
        var attempt = 0
        while true {
            attempt += 1
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
            do {
                try Self.script("start", state, seconds: 300)
                let text = try String(contentsOfFile: state + "/env", encoding: .utf8)
                var values: [String: String] = [:]
                for line in text.split(separator: "\n") {
                    let parts = line.split(separator: "=", maxSplits: 1)
                    if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
                }
                self.state = state
                environment = values
                return
            } catch {
                let log = (try? String(contentsOfFile: state + "/apiserver.log", encoding: .utf8))?
                    .split(separator: "\n").suffix(5).joined(separator: " | ") ?? ""
                try? Self.script("stop", state, seconds: 60)
                if attempt >= 2 { throw TestFailure("\(error); apiserver log: \(log)") }
            }
        }
    }

    var apiURL: String { environment["KUBE_API"] ?? "" }

    func configuration() throws -> KubernetesConfiguration {
        try KubernetesConfiguration(
            apiURL: apiURL, tokenFile: environment["KUBE_TOKEN_FILE"], caFile: environment["KUBE_CA_FILE"], nodeName: nodeName)
    }

    func restartAPIServer() throws { try Self.script("restart-apiserver", state, seconds: 300) }
    /// Stops kube-apiserver only; etcd keeps every object, and startAPIServer brings it back on
    /// the same address.
    func stopAPIServer() throws { try Self.script("stop-apiserver", state, seconds: 60) }
    func startAPIServer() throws { try Self.script("start-apiserver", state, seconds: 300) }

    func stop() { try? Self.script("stop", state, seconds: 60) }

    /// etcd's current revision (every write moves it, whatever the resource).
    func etcdRevision() throws -> Int {
        let output = try Self.run("/usr/bin/env", ["etcdctl", "--endpoints=\(environment["ETCD_ENDPOINT"] ?? "")", "endpoint", "status", "-w", "json"])
        guard let data = output.data(using: .utf8),
            let array = try JSONSerialization.jsonObject(with: data) as? [[String: Any]],
            let header = (array.first?["Status"] as? [String: Any])?["header"] as? [String: Any],
            let revision = header["revision"] as? Int
        else { throw TestFailure("no revision in etcdctl endpoint status: \(output)") }
        return revision
    }

    /// Compacts etcd's history up to `revision`: watches and lists from older versions get 410.
    func compactEtcd(to revision: Int) throws {
        _ = try Self.run("/usr/bin/env", ["etcdctl", "--endpoints=\(environment["ETCD_ENDPOINT"] ?? "")", "compact", String(revision)])
    }

    var apiServerLogTail: String {
        guard let path = environment["KUBE_APISERVER_LOG"], let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    private static func script(_ command: String, _ state: String, seconds: Double) throws {
        // stderr too, so a failure says why
        _ = try run("/bin/bash", ["-c", #""$0" "$1" "$2" 2>&1"#, KubeClusterAccess.script, command, state], seconds: seconds)
    }

    /// Runs a command to its end (bounded) and returns its stdout.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], seconds: Double = 60) throws -> String {
        let child = try ChildProcess(executable, arguments, stdout: .pipe)
        var lines: [String] = []
        let end = deadline(seconds: seconds)
        while let line = child.stdout?.readLine(deadline: end) { lines.append(line) }
        guard let code = child.waitForExit(deadline: end) else {
            child.signal(SIGKILL)
            child.waitForExit()
            throw TestFailure("\(arguments.joined(separator: " ")) did not finish within \(Int(seconds)) s")
        }
        guard code == 0 else { throw TestFailure("\(executable) \(arguments.joined(separator: " ")) exited \(code): \(lines.suffix(5).joined(separator: " | "))") }
        return lines.joined(separator: "\n")
    }
}

/// Writes the test needs that memwarden itself never makes (pods, status, namespaces), through
/// the same client.
struct ClusterWriter {
    let client: KubernetesClient

    func createNamespace(_ name: String) async throws {
        try await post("/api/v1/namespaces", ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": name]])
    }

    /// A pod bound to `node` (no scheduler runs), and its status as a kubelet would write it.
    /// Returns the pod's UID.
    @discardableResult
    func createPod(
        namespace: String, name: String, node: String, labels: [String: String], containers: [(name: String, id: String)],
        memoryRequest: String = "64Mi", memoryLimit: String = "128Mi"
    ) async throws -> String {
        let spec: [String: Any] = [
            "nodeName": node,
            "containers": containers.map { container -> [String: Any] in
                [
                    "name": container.name, "image": "busybox",
                    "resources": [
                        "requests": ["memory": memoryRequest, "cpu": "50m"], "limits": ["memory": memoryLimit, "cpu": "100m"],
                    ],
                ]
            },
        ]
        let created = try await post(
            "/api/v1/namespaces/\(namespace)/pods",
            ["apiVersion": "v1", "kind": "Pod", "metadata": ["name": name, "labels": labels], "spec": spec])
        guard let uid = (created["metadata"] as? [String: Any])?["uid"] as? String else { throw TestFailure("created pod has no uid") }
        let now = "2026-11-22T00:00:00Z"
        let statuses = containers.map { container -> [String: Any] in
            [
                "name": container.name, "ready": true, "restartCount": 0, "image": "busybox", "imageID": "busybox@sha256:0",
                "containerID": container.id, "started": true, "state": ["running": ["startedAt": now]],
            ]
        }
        let patch: [String: Any] = ["status": ["phase": "Running", "containerStatuses": statuses]]
        _ = try await client.send(
            .PATCH, "/api/v1/namespaces/\(namespace)/pods/\(name)/status",
            body: JSONSerialization.data(withJSONObject: patch), contentType: "application/merge-patch+json")
        return uid
    }

    func deletePod(namespace: String, name: String) async throws {
        // gracePeriodSeconds=0: no kubelet will ever confirm a graceful deletion
        _ = try await client.send(.DELETE, "/api/v1/namespaces/\(namespace)/pods/\(name)", query: [("gracePeriodSeconds", "0")])
    }

    func createConfigMap(namespace: String, name: String) async throws {
        try await post(
            "/api/v1/namespaces/\(namespace)/configmaps",
            ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": name], "data": ["k": "v"]])
    }

    func getJSON(_ path: String, query: [(String, String)] = []) async throws -> [String: Any] {
        let response = try await client.send(.GET, path, query: query)
        guard let object = try JSONSerialization.jsonObject(with: response.body) as? [String: Any] else {
            throw TestFailure("GET \(path): not a JSON object")
        }
        return object
    }

    @discardableResult
    func post(_ path: String, _ object: [String: Any]) async throws -> [String: Any] {
        let response = try await client.send(.POST, path, body: JSONSerialization.data(withJSONObject: object))
        return (try JSONSerialization.jsonObject(with: response.body) as? [String: Any]) ?? [:]
    }
}

func containerID(_ n: Int) -> String { String(format: "%064x", 0xC0FFEE_0000 + n) }
