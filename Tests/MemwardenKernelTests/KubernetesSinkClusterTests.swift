import Foundation
import Logging
import MemwardenKubernetes
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// KubernetesSink against a real kube-apiserver (scripts/test-cluster): Events with series on
/// repeats, annotations set and removed; and against no server at all: submit never waits and
/// every drop is counted.
@Suite(.serialized)
struct KubernetesSinkClusterTests {
    static let namespace = "mw-sink"
    static let time: UInt64 = 1_795_000_000_000_000_000

    static func event(
        _ type: AgentEvent.EventType, _ details: AgentEvent.Details, pod: PodMetadata?, at offset: UInt64 = 0
    ) -> AgentEvent {
        AgentEvent(
            type: type, severity: type == .leakCleared ? .info : .warning, epochNanoseconds: realtimeNanoseconds() + offset,
            node: "memwarden-test-node",
            target: EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/burstable/pod1/abc", pod: pod)),
            details: details)
    }

    static let leak = AgentEvent.Details.leak(
        LeakDetails(
            detectors: ["linear_trend"], confidence: 0.9, growthBytesPerSecond: 1 << 20, secondsToLimit: 600, limit: 1 << 30,
            reasons: ["anon_growth"], suspectedSeconds: 120))

    @Test(
        "events are created with a series on repeats, annotations are set and removed",
        .enabled(if: KubeClusterAccess.enabled, KubeClusterAccess.comment))
    func eventsAndAnnotations() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let logger = Logger(label: "test.kubernetes")
        let client = try KubernetesClient(configuration: try cluster.configuration(), logger: logger)
        let writer = ClusterWriter(client: client)
        try await writer.createNamespace(Self.namespace)
        let uid = try await writer.createPod(
            namespace: Self.namespace, name: "api-0", node: cluster.nodeName, labels: ["app": "api"],
            containers: [("app", "containerd://\(containerID(7))")])
        let pod = PodMetadata(name: "api-0", namespace: Self.namespace, uid: uid, container: "app")

        let sink = KubernetesSink(
            client: client, settings: .init(output: KubernetesOutputSettings(events: true, annotations: true)), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: sink)], logger: logger))
        let running = Task { try await group.run() }

        func events(reason: String) async throws -> [[String: Any]] {
            let list = try await writer.getJSON("/apis/events.k8s.io/v1/namespaces/\(Self.namespace)/events")
            return ((list["items"] as? [[String: Any]]) ?? []).filter { $0["reason"] as? String == reason }
        }
        func annotations() async throws -> [String: String] {
            let object = try await writer.getJSON("/api/v1/namespaces/\(Self.namespace)/pods/api-0")
            return ((object["metadata"] as? [String: Any])?["annotations"] as? [String: String]) ?? [:]
        }
        func seriesCount(_ event: [String: Any]) -> Int? { (event["series"] as? [String: Any])?["count"] as? Int }

        do {
            // 1. leak.suspected: one Event regarding the pod's container, and both leak annotations.
            sink.submit(Self.event(.leakSuspected, Self.leak, pod: pod))
            try await waitUntil("a LeakSuspected Event and the leak annotations", seconds: 30, interval: .milliseconds(50)) {
                let found = try await events(reason: "LeakSuspected")
                let values = try await annotations()
                return !found.isEmpty && values["memwarden.io/leak-suspected"] == "true"
            }
            let first = try #require(try await events(reason: "LeakSuspected").first)
            let regarding = try #require(first["regarding"] as? [String: Any])
            #expect(regarding["name"] as? String == "api-0")
            #expect(regarding["uid"] as? String == uid)
            #expect(regarding["fieldPath"] as? String == "spec.containers{app}")
            #expect(first["type"] as? String == "Warning")
            #expect(first["reportingController"] as? String == "memwarden.io/agent")
            #expect(first["reportingInstance"] as? String == "memwarden-\(cluster.nodeName)")
            #expect((first["eventTime"] as? String)?.isEmpty == false)
            #expect(seriesCount(first) == nil)
            let since = try #require(try await annotations()["memwarden.io/leak-since"])
            #expect(since.hasSuffix("Z"))

            // 2. Two repeats: the same Event's series counts 2, then 3; no second Event.
            sink.submit(Self.event(.leakSuspected, Self.leak, pod: pod, at: 1_000_000))
            try await waitUntil("the LeakSuspected Event's series to count 2", seconds: 30, interval: .milliseconds(50)) {
                try await events(reason: "LeakSuspected").first.flatMap(seriesCount) == 2
            }
            sink.submit(Self.event(.leakSuspected, Self.leak, pod: pod, at: 2_000_000))
            try await waitUntil("the series to count 3", seconds: 30, interval: .milliseconds(50)) {
                try await events(reason: "LeakSuspected").first.flatMap(seriesCount) == 3
            }
            // a repeat keeps the start of the suspicion
            #expect(try await annotations()["memwarden.io/leak-since"] == since)
            let repeated = try await events(reason: "LeakSuspected")
            #expect(repeated.count == 1)
            #expect(((repeated.first?["series"] as? [String: Any])?["lastObservedTime"] as? String)?.isEmpty == false)

            // 3. budget tier and throttling annotations.
            sink.submit(
                Self.event(
                    .budgetHigh,
                    .budget(BudgetDetails(tier: .high, rule: "r", budgetBytes: 1 << 30, usageBytes: 950 << 20, share: 0.93, growthBytesPerSecond: nil, secondsToBudget: nil)),
                    pod: pod))
            sink.submit(Self.event(.responseThrottle, .response(ResponseDetails(mode: .throttle, rule: "r", memoryHighAfter: 900 << 20)), pod: pod))
            try await waitUntil("budget-tier=high and throttled=true", seconds: 30, interval: .milliseconds(50)) {
                let values = try await annotations()
                return values["memwarden.io/budget-tier"] == "high" && values["memwarden.io/throttled"] == "true"
            }

            // 4. leak.cleared and response.restore remove their annotations; the others stay.
            sink.submit(Self.event(.leakCleared, Self.leak, pod: pod, at: 3_000_000))
            sink.submit(Self.event(.responseRestore, .response(ResponseDetails(mode: .throttle, rule: "r", reason: "leak_cleared")), pod: pod))
            try await waitUntil("the leak and throttled annotations to go", seconds: 30, interval: .milliseconds(50)) {
                let values = try await annotations()
                return values["memwarden.io/leak-suspected"] == nil && values["memwarden.io/leak-since"] == nil
                    && values["memwarden.io/throttled"] == nil
            }
            #expect(try await annotations()["memwarden.io/budget-tier"] == "high")
            #expect(try await events(reason: "LeakCleared").count == 1)

            // 5. An event without pod metadata is skipped, not sent.
            let skippedBefore = sink.statistics.skipped
            sink.submit(Self.event(.leakSuspected, Self.leak, pod: nil))
            #expect(sink.statistics.skipped == skippedBefore + 1)

            let statistics = sink.statistics
            #expect(statistics.eventsUpdated == 2)
            #expect(statistics.eventsCreated == 5)  // LeakSuspected, BudgetHigh, MemoryThrottled, LeakCleared, MemoryRestored
            #expect(statistics.annotationPatches == 7)  // three leak.suspected, budget, throttle, cleared, restore
            #expect(statistics.lost == 0)
        } catch {
            Issue.record("kube-apiserver log tail:\n\(cluster.apiServerLogTail)")
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            try? await client.shutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
        try await client.shutdown()
    }

    @Test(
        "at graceful shutdown, a restore still queued takes the throttled annotation away (the queue is flushed)",
        .enabled(if: KubeClusterAccess.enabled, KubeClusterAccess.comment))
    func shutdownFlushesTheQueue() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let logger = Logger(label: "test.kubernetes")
        let client = try KubernetesClient(configuration: try cluster.configuration(), logger: logger)
        let writer = ClusterWriter(client: client)
        let namespace = Self.namespace + "-flush"
        try await writer.createNamespace(namespace)
        let uid = try await writer.createPod(
            namespace: namespace, name: "api-0", node: cluster.nodeName, labels: ["app": "api"],
            containers: [("app", "containerd://\(containerID(8))")])
        let pod = PodMetadata(name: "api-0", namespace: namespace, uid: uid, container: "app")
        func throttled() async throws -> String? {
            let object = try await writer.getJSON("/api/v1/namespaces/\(namespace)/pods/api-0")
            return (((object["metadata"] as? [String: Any])?["annotations"] as? [String: String]) ?? [:])["memwarden.io/throttled"]
        }
        let settings = KubernetesSink.Settings(output: KubernetesOutputSettings(events: false, annotations: true))

        // an agent throttles the pod
        let first = KubernetesSink(client: client, settings: settings, logger: logger)
        let firstGroup = ServiceGroup(configuration: .init(services: [.init(service: first)], logger: logger))
        let firstRun = Task { try await firstGroup.run() }
        first.submit(Self.event(.responseThrottle, .response(ResponseDetails(mode: .throttle, rule: "r", memoryHighAfter: 900 << 20)), pod: pod))
        try await waitUntil("the throttled annotation", seconds: 30, interval: .milliseconds(50)) { try await throttled() == "true" }
        await firstGroup.triggerGracefulShutdown()
        try await firstRun.value

        // the next one restores on SIGTERM: its restore is queued when the shutdown begins
        let second = KubernetesSink(client: client, settings: settings, logger: logger)
        second.submit(Self.event(.responseRestore, .response(ResponseDetails(mode: .throttle, rule: "r", reason: "shutdown")), pod: pod))
        #expect(second.statistics.queued == 1)
        let secondGroup = ServiceGroup(configuration: .init(services: [.init(service: second)], logger: logger))
        let secondRun = Task { try await secondGroup.run() }
        await secondGroup.triggerGracefulShutdown()
        try await secondRun.value
        #expect(try await throttled() == nil, "the throttled annotation outlived the restore")
        #expect(second.statistics.queued == 0 && second.statistics.lost == 0, "\(second.statistics)")
        try await client.shutdown()
    }

    @Test("with the API server unreachable, submit never waits and every drop is counted")
    func unreachableServerDropsCounted() async throws {
        // port 1: nothing listens, every connection is refused
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration(apiURL: "http://127.0.0.1:1", nodeName: "n"), logger: Logger(label: "test"))
        let queueSize = 50
        let sink = KubernetesSink(
            client: client,
            settings: .init(
                output: KubernetesOutputSettings(events: true, annotations: true), queueSize: queueSize, maxAttempts: 2,
                backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50))),
            logger: Logger(label: "test"))
        let group = ServiceGroup(configuration: .init(services: [.init(service: sink)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        let pod = PodMetadata(name: "p", namespace: "ns", uid: "u")

        let count = 5000
        for n in 0..<count { sink.submit(Self.event(.leakSuspected, Self.leak, pod: pod, at: UInt64(n))) }
        // 5000 submits against a dead server: a caller that waited for each request would never
        // fill the queue, so the queue-full drops show it did not wait (no stopwatch needed)
        let afterSubmit = sink.statistics
        #expect(afterSubmit.submitted == UInt64(count))
        #expect(afterSubmit.queued <= queueSize)
        #expect(afterSubmit.dropped >= UInt64(count - queueSize - 1))

        // Every event ends up dropped from the queue or failed after its attempts: none vanish.
        try await waitUntil("the queue to drain into failures", seconds: 60, interval: .milliseconds(50)) {
            let statistics = sink.statistics
            return statistics.queued == 0 && statistics.lost == UInt64(count)
        }
        #expect(sink.statistics.eventsCreated == 0)
        #expect(sink.statistics.failed >= 1)

        await group.triggerGracefulShutdown()
        try await running.value
        try await client.shutdown()
    }

    @Test("the shutdown flush is bounded: against a dead server it gives up after shutdownFlush and counts what is left")
    func shutdownFlushIsBounded() async throws {
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration(apiURL: "http://127.0.0.1:1", nodeName: "n"), logger: Logger(label: "test"))
        // each event would take minutes of retries: the flush must stop at its deadline
        let sink = KubernetesSink(
            client: client,
            settings: .init(
                output: KubernetesOutputSettings(events: true, annotations: true), maxAttempts: 1000,
                backoff: Backoff(initial: .seconds(1), maximum: .seconds(1)), shutdownFlush: .milliseconds(300)),
            logger: Logger(label: "test"))
        let pod = PodMetadata(name: "p", namespace: "ns", uid: "u")
        for n in 0..<20 { sink.submit(Self.event(.leakSuspected, Self.leak, pod: pod, at: UInt64(n))) }
        let group = ServiceGroup(configuration: .init(services: [.init(service: sink)], logger: Logger(label: "test")))
        let finished = Atomic<Bool>(false)
        let running = Task {
            try await group.run()
            finished.store(true, ordering: .sequentiallyConsistent)
        }
        await group.triggerGracefulShutdown()
        try await waitUntil("the sink to stop after its flush deadline", seconds: 30, interval: .milliseconds(50)) {
            finished.load(ordering: .sequentiallyConsistent)
        }
        try await running.value
        let statistics = sink.statistics
        #expect(statistics.queued == 0)
        #expect(statistics.lost == 20, "\(statistics)")
        #expect(statistics.eventsCreated == 0)
        try await client.shutdown()
    }
}
