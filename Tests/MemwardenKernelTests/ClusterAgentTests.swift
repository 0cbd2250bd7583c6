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

/// The whole agent in a (kubelet-less) cluster: a real kube-apiserver knows a pod whose
/// container is a scratch cgroup shaped like the kubelet's (cgroupfs driver) below the
/// test's own cgroup; a process in it grows through a budget the policy sets for the
/// pod's namespace and labels. The agent's events name the pod, the pod gets a
/// Kubernetes Event and an annotation, and /readyz and /api/v1/targets say so.
@Suite(.serialized, .enabled(if: KernelAccess.enabled && KubeClusterAccess.enabled, KubeClusterAccess.comment))
struct ClusterAgentTests {
    static let namespace = "mw-agent"

    /// HTTP status and body of a GET (curl, which setup-tests installs).
    static func get(_ url: String) -> (status: Int, body: String)? {
        guard let output = try? TestCluster.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}\n", url], seconds: 10) else {
            return nil
        }
        var lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        guard let status = lines.popLast().flatMap({ Int($0) }) else { return nil }
        return (status, lines.joined(separator: "\n"))
    }

    /// <own cgroup>/…/kubepods/burstable/pod<uid>/<id>, as the kubelet's cgroupfs driver names
    /// it, below the test's own cgroup; the last is the container's. Remove in reverse.
    static func podCgroups(uid: String, containerID id: String) throws -> [ScratchCgroup] {
        var chain = [try ScratchCgroup()]
        for name in ["kubepods", "burstable", "pod\(uid)", id] { chain.append(try ScratchCgroup(in: chain.last!, name: name)) }
        return chain
    }

    /// `memwarden run` against the test cluster's API server, its HTTP API on `port`.
    static func startAgent(_ memwarden: String, port: Int, policy: String, directory: String, cluster: TestCluster) throws -> ChildProcess {
        try ChildProcess(
            memwarden,
            [
                "run", "--listen", "127.0.0.1:\(port)", "--policy", policy, "--state-file", directory + "/state.json",
                "--kubernetes", "on", "--kube-api", cluster.apiURL, "--kube-token-file", cluster.environment["KUBE_TOKEN_FILE"] ?? "",
                "--kube-ca-file", cluster.environment["KUBE_CA_FILE"] ?? "", "--node-name", cluster.nodeName, "--stats-interval", "1",
            ],
            stdout: .pipe, stderr: .pipe)
    }

    /// `leaksim serve` started inside `container` (a shell joins it, then execs leaksim).
    static func simulator(_ leaksim: String, in container: ScratchCgroup) throws -> ChildProcess {
        try ChildProcess(
            "/bin/sh", ["-c", #"echo $$ > "$1/cgroup.procs" && exec "$0" serve"#, leaksim, container.directory],
            stdin: .pipe, stdout: .pipe)
    }

    @Test("budget events name the pod, the pod gets an Event and an annotation, /readyz and /api/v1/targets agree")
    func agentInACluster() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let memwarden = try AgentCommandTests.memwarden()
        guard let leaksim = ChildProcess.sibling("leaksim") else { throw TestFailure("leaksim not built next to the tests") }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let client = try KubernetesClient(configuration: try cluster.configuration(), logger: Logger(label: "test"))
        defer { Task { try? await client.shutdown() } }
        let writer = ClusterWriter(client: client)
        try await writer.createNamespace(Self.namespace)
        let id = containerID(42)
        let uid = try await writer.createPod(
            namespace: Self.namespace, name: "api-0", node: cluster.nodeName, labels: ["app": "api"],
            containers: [("app", "containerd://\(id)")])

        let chain = try Self.podCgroups(uid: uid, containerID: id)
        defer { chain.reversed().forEach { $0.remove() } }
        let container = chain.last!

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-cluster-agent-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policy = directory + "/policy.yaml"
        try """
        apiVersion: memwarden.io/v1
        kind: MemwardenPolicy
        rules:
          - name: mw-api
            match:
              namespace: \(Self.namespace)
              podSelector:
                matchLabels: {app: api}
            budget: 100Mi
        outputs:
          kubernetes:
            events: true
            annotations: true
        """.write(toFile: policy, atomically: true, encoding: .utf8)

        let port = try freePort()
        let agent = try Self.startAgent(memwarden, port: port, policy: policy, directory: directory, cluster: cluster)
        defer { agent.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)

        // ready once the pod list is in: the body names nothing missing
        let readyBy = deadline(seconds: 30)
        var ready = Self.get("http://127.0.0.1:\(port)/readyz")
        while ready?.status != 200 && monotonicNanoseconds() < readyBy {
            usleep(200_000)
            ready = Self.get("http://127.0.0.1:\(port)/readyz")
        }
        #expect(ready?.status == 200, "/readyz: \(String(describing: ready))")

        let simulator = try Self.simulator(leaksim, in: container)
        defer { simulator.signal(SIGKILL) }
        #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 20))?.hasPrefix("ready") == true)
        for size in [60, 15] {
            simulator.send("touch \(size)")
            #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 60))?.hasPrefix("ok") == true)
        }

        let line = agent.stdout?.readLine(until: deadline(seconds: 30)) { $0.contains(#""type":"budget.warning""#) }
        let event = try #require(line.flatMap(AgentCommandTests.json), "no budget.warning within 30 s")
        #expect(event["pod"] as? String == "api-0")
        #expect(event["namespace"] as? String == Self.namespace)
        #expect(event["container"] as? String == "app")
        #expect(event["container_id"] as? String == id)
        #expect(event["pod_uid"] as? String == uid)
        #expect(event["rule"] as? String == "mw-api")

        // the Kubernetes sink: an Event on the pod, and the tier as an annotation
        let seenBy = deadline(seconds: 20)
        var reasons: [String] = [], tier: String?
        while (reasons.isEmpty || tier == nil) && monotonicNanoseconds() < seenBy {
            let events = try await writer.getJSON("/apis/events.k8s.io/v1/namespaces/\(Self.namespace)/events")
            reasons = ((events["items"] as? [[String: Any]]) ?? []).compactMap { $0["reason"] as? String }
            let pod = try await writer.getJSON("/api/v1/namespaces/\(Self.namespace)/pods/api-0")
            tier = ((pod["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["memwarden.io/budget-tier"]
            if reasons.isEmpty || tier == nil { usleep(200_000) }
        }
        #expect(reasons.contains("BudgetWarning"), "Events on the pod: \(reasons)")
        #expect(tier == "warning")

        // the HTTP API lists the container's cgroup with its pod and tier
        let targets = Self.get("http://127.0.0.1:\(port)/api/v1/targets")
        #expect(targets?.status == 200)
        #expect(targets?.body.contains(#""pod":"api-0""#) == true && targets?.body.contains(#""tier":"warning""#) == true,
            "targets: \(targets?.body.prefix(2000) ?? "")")

        // identify lists the node's pods once and names the pod too
        let printed = try TestCluster.run(
            memwarden,
            [
                "identify", "--cgroup-path", container.path, "--kubernetes", "on", "--kube-api", cluster.apiURL,
                "--kube-token-file", cluster.environment["KUBE_TOKEN_FILE"] ?? "", "--kube-ca-file",
                cluster.environment["KUBE_CA_FILE"] ?? "", "--node-name", cluster.nodeName,
            ], seconds: 60)
        let identity = try #require(AgentCommandTests.json(printed), "identify printed: \(printed)")
        #expect(identity["pod"] as? String == "api-0")
        #expect(identity["namespace"] as? String == Self.namespace)
        #expect(identity["container"] as? String == "app")
        #expect(identity["container_id"] as? String == id)
        #expect((identity["labels"] as? [String: String])?["app"] == "api", "identify printed: \(printed)")

        simulator.signal(SIGKILL)
        agent.signal(SIGTERM)
        #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0)
    }

    @Test("API server down at start: events name the container from its cgroup path, then the pod once the API server is back")
    func identityWhileTheAPIServerIsDown() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let memwarden = try AgentCommandTests.memwarden()
        guard let leaksim = ChildProcess.sibling("leaksim") else { throw TestFailure("leaksim not built next to the tests") }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let client = try KubernetesClient(configuration: try cluster.configuration(), logger: Logger(label: "test"))
        defer { Task { try? await client.shutdown() } }
        let writer = ClusterWriter(client: client)
        try await writer.createNamespace(Self.namespace)
        let id = containerID(43)
        let uid = try await writer.createPod(
            namespace: Self.namespace, name: "api-1", node: cluster.nodeName, labels: ["app": "api"],
            containers: [("app", "containerd://\(id)")])
        let chain = try Self.podCgroups(uid: uid, containerID: id)
        defer { chain.reversed().forEach { $0.remove() } }
        let container = chain.last!

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-cluster-down-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policy = directory + "/policy.yaml"
        // matched by its cgroup path, which needs no API server
        try """
        apiVersion: memwarden.io/v1
        kind: MemwardenPolicy
        rules:
          - name: by-path
            match:
              cgroup: "/**/pod\(uid)/*"
            budget: 100Mi
        """.write(toFile: policy, atomically: true, encoding: .utf8)

        try cluster.stopAPIServer()
        let port = try freePort()
        let agent = try Self.startAgent(memwarden, port: port, policy: policy, directory: directory, cluster: cluster)
        defer { agent.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)
        // not ready without the pod list, and says so (the HTTP API starts right after the
        // program is attached)
        var notReady: (status: Int, body: String)?
        try await waitUntil("the agent's HTTP API to answer /readyz", seconds: 20, interval: .milliseconds(50)) {
            notReady = Self.get("http://127.0.0.1:\(port)/readyz")
            return notReady != nil
        }
        #expect(notReady?.status == 503, "/readyz with the API server down: \(String(describing: notReady))")

        let simulator = try Self.simulator(leaksim, in: container)
        defer { simulator.signal(SIGKILL) }
        #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 20))?.hasPrefix("ready") == true)
        for size in [60, 15] {
            simulator.send("touch \(size)")
            #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 60))?.hasPrefix("ok") == true)
        }
        // detection and budgets go on: the event names what the path says
        let down = agent.stdout?.readLine(until: deadline(seconds: 30)) { $0.contains(#""type":"budget.warning""#) }
        let fallback = try #require(down.flatMap(AgentCommandTests.json), "no budget.warning within 30 s with the API server down")
        #expect(fallback["pod_uid"] as? String == uid)
        #expect(fallback["container_id"] as? String == id)
        #expect(fallback["pod"] == nil && fallback["namespace"] == nil, "\(fallback)")
        #expect(fallback["rule"] as? String == "by-path")

        // the API server comes back: the watcher's retry lists the pods, the agent is ready, and
        // the next event names the pod
        try cluster.startAPIServer()
        let readyBy = deadline(seconds: 90)
        var ready = Self.get("http://127.0.0.1:\(port)/readyz")
        while ready?.status != 200 && monotonicNanoseconds() < readyBy {
            usleep(500_000)
            ready = Self.get("http://127.0.0.1:\(port)/readyz")
        }
        #expect(ready?.status == 200, "/readyz 90 s after the API server came back: \(String(describing: ready))")
        simulator.send("touch 12")
        #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 60))?.hasPrefix("ok") == true)
        let up = agent.stdout?.readLine(until: deadline(seconds: 30)) { $0.contains(#""type":"budget.high""#) }
        let named = try #require(up.flatMap(AgentCommandTests.json), "no budget.high within 30 s after the API server came back")
        #expect(named["pod"] as? String == "api-1")
        #expect(named["namespace"] as? String == Self.namespace)
        #expect(named["container"] as? String == "app")

        simulator.signal(SIGKILL)
        agent.signal(SIGTERM)
        #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0)
    }
}
