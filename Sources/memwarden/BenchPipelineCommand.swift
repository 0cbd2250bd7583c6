import ArgumentParser
import Foundation
import Logging
import MemwardenDetection
import MemwardenIdentity
import MemwardenModel
import MemwardenOutput
import MemwardenPolicy

/// What the userspace stages cost per item, on one core: identity of a cgroup
/// path (parse and cached), a policy decision, an event's JSON line, a sink's
/// submit with its queue full (nothing delivering), a target's metrics update,
/// and /metrics with the full target cap. Build with `-c release`.
struct BenchPipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Per-item cost of identity, policy, event encoding, sinks and metrics (a table).")

    @Option(help: "Items per measure.")
    var count: Int = 100_000

    func validate() throws {
        guard count >= 1000 else { throw ValidationError("--count must be at least 1000") }
    }

    func run() throws {
        let logger = Logger(label: "bench")
        var rows: [(String, String)] = []
        func measure(_ name: String, _ n: Int, _ body: () throws -> Void) rethrows {
            let start = ContinuousClock.now
            try body()
            let each = (ContinuousClock.now - start) / n
            rows.append((name, Self.format(each)))
        }

        let paths = (0..<count).map { i in
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(String(format: "%08x", i))_0000_4000_8000_000000000001.slice/cri-containerd-\(String(repeating: "ab", count: 28))\(String(format: "%08x", i)).scope"
        }
        var parsed = 0
        measure("identity: parse a cgroup path", count) {
            for path in paths where CgroupPathIdentity.parse(path).containerID != nil { parsed += 1 }
        }
        var resolver = IdentityResolver()
        for path in paths.prefix(1000) { _ = resolver.identity(cgroupPath: path) }
        measure("identity: cached lookup", count) {
            for i in 0..<count where resolver.identity(cgroupPath: paths[i % 1000]).podUID != nil { parsed += 1 }
        }

        // the pipeline's first step: a record's cgroup (path, owner, limit) from the
        // resolver's per-cgroup cache, on a fake v2 tree of 200 pod containers
        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-bench-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: tree) }
        var cgroupIDs: [UInt64] = []
        for path in paths.prefix(200) {
            try FileManager.default.createDirectory(atPath: tree + path, withIntermediateDirectories: true)
            cgroupIDs.append(try (FileManager.default.attributesOfItem(atPath: tree + path)[.systemFileNumber] as? NSNumber)?
                .uint64Value ?? 0)
        }
        var records = RecordResolver(hierarchy: CgroupHierarchy(mountPoint: tree, version: .v2))
        let samples = cgroupIDs.enumerated().map { i, id in
            KernelRecord.process(
                ProcessRecord(
                    kind: .sample, pid: Int32(1000 + i), monotonicNanoseconds: 0, cgroupID: id,
                    memory: MemoryCounters(anon: 1 << 20, file: 0, shmem: 0, swap: 0), virtualSize: 1 << 22,
                    limit: .bytes(1 << 30), comm: "api"))
        }
        for sample in samples { _ = records.resolve(sample) }
        measure("identity: resolve a record (200 cgroups, cached)", count) {
            for i in 0..<count where records.resolve(samples[i % 200]).cgroup.identity.containerID != nil { parsed += 1 }
        }

        let policy = try PolicyLoader.parse(Self.policy, file: "bench.yaml")
        let identities = paths.prefix(1000).map {
            var identity = CgroupPathIdentity.parse($0)
            identity.pod = PodMetadata(name: "api-0", namespace: "payments", uid: "u", labels: ["app": "api"], container: "api")
            return identity
        }
        var throttled = 0
        measure("policy: resolve a target (7 rules)", count) {
            for i in 0..<count where policy.resolve(for: identities[i % 1000]).mode == .throttle { throttled += 1 }
        }

        let event = AgentEvent(
            leak: LeakEvent(
                kind: .suspected, timeNanoseconds: 1_000_000_000, scope: .process, pid: 4242, comm: "api",
                cgroup: identities[0].cgroup, detectors: ["trend", "composition"], confidence: 0.87,
                growthBytesPerSecond: 912_384, secondsToLimit: 2402.5, limit: 1 << 29,
                reasons: ["floor_rising", "anon_growth"]),
            epochNanoseconds: 1_795_000_000_000_000_000, node: "node-1", identity: identities[0])
        var bytes = 0
        measure("event: JSON line", count) {
            for _ in 0..<count { bytes += event.jsonLine().utf8.count }
        }
        let webhook = try WebhookSink(settings: WebhookSettings(url: "http://127.0.0.1:9", queueSize: 1000), logger: logger)
        measure("webhook: submit, queue full", count) {
            for _ in 0..<count { webhook.submit(event) }
        }
        let stdout = StdoutSink(writer: LineWriter(fd: -1), capacity: 1000, logger: logger)
        measure("stdout: submit, queue full", count) {
            for _ in 0..<count { stdout.submit(event) }
        }

        let metrics = AgentMetrics(maxTargets: 1000)
        let snapshots = identities.enumerated().map { i, identity in
            TargetSnapshot(
                scope: .cgroup, identity: identity, usageBytes: UInt64(i) << 20, limitBytes: 1 << 30,
                budgetBytes: 800 << 20, tier: .warning, confidence: 0.5, growthBytesPerSecond: 4096, secondsToLimit: 600)
        }
        for snapshot in snapshots { metrics.update(snapshot) }
        measure("metrics: update a target (1000 labelled)", count) {
            for i in 0..<count { metrics.update(snapshots[i % 1000]) }
        }
        var exposition = 0
        measure("metrics: /metrics with 1000 targets", 10) {
            for _ in 0..<10 { exposition = metrics.exposition().count }
        }

        // the confirmation stage with 500 targets, each sampled once a second for
        // two hours of their time (the kernel sends a sample per 1 MiB moved or a
        // 10 s heartbeat: once a second is a busy node). A fifth leak (toward a
        // limit: the growth test passes and forecasts are fitted), the rest saw-tooth.
        let targets = 500
        let hours = 2.0
        var stage = ConfirmationStage()
        var leakEvents: [LeakEvent] = []
        let seconds = Int(hours * 3600)
        let started = ContinuousClock.now
        for second in 0..<seconds {
            let t = Int64(second) * 1_000_000_000
            for target in 0..<targets {
                let leaking = target % 5 == 0
                let base = 200.0 * 1_048_576 + Double(target) * 65_536
                let held =
                    leaking
                    ? base + Double(second) * 20_000
                    : base + 50 * 1_048_576 * Double((second + target) % 300) / 300
                stage.sample(
                    .process(Int32(target)), time: t, held: UInt64(held),
                    context: {
                        AssessmentContext(
                            timeNanoseconds: t, scope: .process, pid: Int32(target), comm: "app", cgroup: "/bench",
                            limit: 2 << 30, usage: UInt64(held))
                    }, into: &leakEvents)
            }
        }
        let elapsed = ContinuousClock.now - started
        let share = (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) / (hours * 3600)
        rows.append((
            "confirmation: \(targets) targets, a sample a second each (share of one core)",
            String(format: "%.4f %%", share * 100)))
        rows.append(("confirmation: per sample", Self.format(elapsed / (targets * seconds))))
        rows.append((
            "confirmation: history memory (\(stage.trackedTargets) targets)",
            String(format: "%.1f KiB each, %.2f MiB in all", Double(GrowthHistory.bytesPerTarget) / 1024,
                Double(stage.historyBytes) / 1_048_576)))

        print("memwarden bench pipeline: \(count) items per measure (one core)")
        print("")
        print("| measure | per item |")
        print("|---|---|")
        for (name, value) in rows { print("| \(name) | \(value) |") }
        print("")
        print("(/metrics body: \(exposition / 1024) KiB; checks: \(parsed) \(throttled) \(bytes); leak events \(leakEvents.count))")
    }

    static func format(_ duration: Duration) -> String {
        let nanoseconds = Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
        if nanoseconds >= 1e6 { return String(format: "%.2f ms", nanoseconds / 1e6) }
        if nanoseconds >= 1e3 { return String(format: "%.2f µs", nanoseconds / 1e3) }
        return String(format: "%.0f ns", nanoseconds)
    }

    static let policy = """
        apiVersion: memwarden.io/v1
        kind: MemwardenPolicy
        rules:
          - {name: payments, match: {namespace: payments}, budget: 2Gi}
          - name: payments-api
            match: {namespace: payments, podSelector: {matchLabels: {app: api}}}
            budget: 768Mi
            response: {mode: throttle}
          - {name: sidecars, match: {container: [envoy, istio-proxy]}, budget: none}
          - {name: batch, match: {podSelector: {matchExpressions: [{key: workload, operator: In, values: [batch]}]}}}
          - {name: units, match: {systemdUnit: "*.service"}}
          - {name: kube-system, match: {namespace: kube-system}, budget: 1Gi}
          - {name: infra, match: {cgroup: "/system.slice/**"}}
        """
}
