import Foundation
import Logging
import MemwardenKubernetes
import MemwardenModel
import MemwardenTestSupport
import ServiceLifecycle
import Testing

/// PodWatcher against a real kube-apiserver + etcd (scripts/test-cluster). No kubelet runs:
/// the test binds pods to a node by spec.nodeName and writes their status through the status
/// subresource, as a kubelet would.
@Suite(.serialized, .enabled(if: KubeClusterAccess.enabled, KubeClusterAccess.comment))
struct PodWatcherClusterTests {
    static let namespace = "mw-watch"

    @Test("resolves container ids to pods, survives an API server restart, relists after a 410, keeps deleted pods")
    func watchLifecycle() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        var logger = Logger(label: "test.kubernetes")
        logger.logLevel = .info
        let client = try KubernetesClient(configuration: try cluster.configuration(), logger: logger)
        let writer = ClusterWriter(client: client)
        let node = cluster.nodeName

        try await writer.createNamespace(Self.namespace)
        let first = try await writer.createPod(
            namespace: Self.namespace, name: "web-0", node: node, labels: ["app": "web", "team": "shop"],
            containers: [("app", "containerd://\(containerID(1))"), ("sidecar", "cri-o://\(containerID(2))")])
        // a pod of another node must stay out of this node's index
        let foreign = try await writer.createPod(
            namespace: Self.namespace, name: "elsewhere", node: "other-node", labels: [:], containers: [("app", "docker://\(containerID(9))")])

        let index = PodIndex(retainDeleted: 16)
        let watcher = PodWatcher(
            client: client, index: index,
            settings: .init(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(2))), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: watcher)], logger: logger))
        let running = Task { try await group.run() }

        do {
            // 1. The list resolves both containers of the first pod.
            try await waitUntil("the first list to resolve web-0's app container", seconds: 30, interval: .milliseconds(50)) {
                index.metadata(podUID: nil, containerID: containerID(1)) != nil
            }
            #expect(index.synced)
            let app = try #require(index.metadata(podUID: nil, containerID: containerID(1)))
            #expect(app.name == "web-0")
            #expect(app.namespace == Self.namespace)
            #expect(app.uid == first.lowercased())
            #expect(app.container == "app")
            #expect(app.labels == ["app": "web", "team": "shop"])
            #expect(app.qos == .burstable)
            #expect(app.memoryRequest == 64 << 20)
            #expect(app.memoryLimit == 128 << 20)
            #expect(index.metadata(podUID: nil, containerID: "cri-o://\(containerID(2))")?.container == "sidecar")
            #expect(index.metadata(podUID: first.uppercased(), containerID: nil)?.memoryLimit == 256 << 20)
            #expect(index.pod(uid: foreign) == nil)
            #expect(index.metadata(podUID: nil, containerID: containerID(9)) == nil)

            // 2. A pod created after the list arrives through the watch.
            let eventsBefore = index.statistics.events
            try await writer.createPod(
                namespace: Self.namespace, name: "db-0", node: node, labels: ["app": "db"], containers: [("postgres", "containerd://\(containerID(3))")],
                memoryRequest: "1Gi", memoryLimit: "1Gi")
            try await waitUntil("the watch to deliver db-0's status", seconds: 30, interval: .milliseconds(50)) {
                index.metadata(podUID: nil, containerID: containerID(3))?.container == "postgres"
            }
            #expect(index.statistics.events > eventsBefore)
            #expect(index.statistics.relists == 1)

            // 3. Force a 410: write something else (etcd's revision moves past every pod's
            //    resourceVersion, the watcher's included), compact etcd up to that revision,
            //    and restart the API server. The restarted server's watch cache starts at a
            //    list newer than the watcher's resourceVersion, and etcd no longer has the
            //    history in between, so the watch from the old version is answered "too old
            //    resource version" (410): the watcher must list again. This works on 1.20,
            //    whose watch cache ignores compaction while it runs.
            try await writer.createConfigMap(namespace: Self.namespace, name: "bump")
            let revision = try cluster.etcdRevision()
            try cluster.compactEtcd(to: revision)
            let before = index.statistics
            try cluster.restartAPIServer()

            // 4. After the restart: a new pod resolves, the 410 was seen and answered with a list.
            try await writer.createPod(
                namespace: Self.namespace, name: "cache-0", node: node, labels: ["app": "cache"],
                containers: [("redis", "containerd://\(containerID(4))")])
            try await waitUntil("cache-0 to resolve after the API server restart", seconds: 60, interval: .milliseconds(50)) {
                index.metadata(podUID: nil, containerID: containerID(4))?.container == "redis"
            }
            let after = index.statistics
            #expect(after.expired > before.expired, "a 410 after compaction + restart")
            #expect(after.relists > before.relists, "a relist after the 410")
            #expect(index.metadata(podUID: nil, containerID: containerID(1))?.name == "web-0", "pods from before the restart stay")
            #expect(after.pods == 3)

            // 5. A deleted pod is kept for late events.
            try await writer.deletePod(namespace: Self.namespace, name: "web-0")
            try await waitUntil("the watch to deliver web-0's deletion", seconds: 30, interval: .milliseconds(50)) { index.statistics.deletedRetained == 1 }
            #expect(index.metadata(podUID: nil, containerID: containerID(1))?.name == "web-0")
            #expect(index.statistics.pods == 2)
        } catch {
            Issue.record("kube-apiserver log tail:\n\(cluster.apiServerLogTail)")
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            try? await client.shutdown()
            throw error
        }

        // 6. Graceful shutdown ends the watcher promptly, in the middle of a watch.
        // the server would end the watch only after its 300 s timeout: returning within the
        // wait shows the shutdown ended it
        await group.triggerGracefulShutdown()
        try await waitForReturn("the watcher to end on shutdown, in the middle of a watch") { try await running.value }
        try await client.shutdown()
    }

    @Test("a dead API server is retried with backoff and counted, and shutdown still ends the watcher")
    func unreachableServer() async throws {
        // port 1 (tcpmux): nothing listens there, connections are refused at once
        let configuration = try KubernetesConfiguration(apiURL: "http://127.0.0.1:1", nodeName: "n")
        let client = try KubernetesClient(configuration: configuration, logger: Logger(label: "test.kubernetes"))
        let index = PodIndex()
        let watcher = PodWatcher(
            client: client, index: index, settings: .init(backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(400))),
            logger: Logger(label: "test.kubernetes"))
        let group = ServiceGroup(configuration: .init(services: [.init(service: watcher)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        try await waitUntil("three failed lists", seconds: 20, interval: .milliseconds(50)) { index.statistics.errors >= 3 }
        #expect(!index.synced)
        #expect(index.statistics.relists == 0)
        await group.triggerGracefulShutdown()
        try await waitForReturn("the watcher to end on shutdown while it backs off") { try await running.value }
        try await client.shutdown()
    }
}
