import Foundation
import Testing

@testable import MemwardenKubernetes
@testable import MemwardenModel

struct KubernetesQuantityTests {
    @Test(arguments: [
        ("512Mi", UInt64(512) << 20),
        ("1G", 1_000_000_000),
        ("1.5Gi", UInt64(3) << 29),
        ("100M", 100_000_000),
        ("1e9", 1_000_000_000),
        ("1E3", 1000),
        ("128974848", 128_974_848),
        ("129e6", 129_000_000),
        ("123Mi", 128_974_848),
        ("1Ki", 1024),
        ("2Ti", UInt64(2) << 40),
        ("1Ei", UInt64(1) << 60),
        ("0.5k", 500),
        (".5Ki", 512),
        ("5.", 5),
        ("+7", 7),
        ("1500m", 2),  // 1.5 bytes rounds up, as Kubernetes' Value() does
        ("0", 0),
        ("1e-3", 1),
    ])
    func bytes(text: String, expected: UInt64) throws {
        #expect(try KubernetesQuantity(parsing: text).bytes == expected)
    }

    @Test(arguments: ["", "Mi", "1.2.3", "12MB", "1mi", "1e", "1e3.5", "abc", "1 Gi", "--1", "1x", "1e99"])
    func rejects(text: String) {
        #expect(throws: KubernetesQuantity.ParseError.self) { try KubernetesQuantity(parsing: text) }
    }

    @Test func errorNamesTheInput() {
        do {
            _ = try KubernetesQuantity(parsing: "12MB")
            Issue.record("12MB parsed")
        } catch {
            #expect("\(error)".contains("12MB"))
            #expect("\(error)".contains("MB"))
        }
    }

    @Test func negativeAndHugeHaveNoBytes() throws {
        #expect(try KubernetesQuantity(parsing: "-1Mi").bytes == nil)
        #expect(try KubernetesQuantity(parsing: "100Ei").bytes == nil)
    }

    @Test(arguments: [("1Gi", "1073741824"), ("500m", "0.5"), ("1k", "1000"), ("1e3", "1k"), ("2048Ki", "2Mi")])
    func equalSpellings(a: String, b: String) throws {
        #expect(try KubernetesQuantity(parsing: a) == KubernetesQuantity(parsing: b))
    }
}

struct ContainerReferenceTests {
    static let hex = String(repeating: "ab12", count: 16)

    @Test(arguments: [
        ("containerd://\(hex)", .containerd),
        ("cri-o://\(hex)", .crio),
        ("docker://\(hex)", .docker),
        ("DOCKER://\(hex.uppercased())", nil),
    ] as [(String, TargetIdentity.Runtime?)])
    func schemes(text: String, runtime: TargetIdentity.Runtime?) throws {
        let reference = try #require(ContainerReference(text))
        #expect(reference.id == Self.hex)
        #expect(reference.runtime == runtime)
    }

    @Test func bareIdAndEmpty() {
        #expect(ContainerReference(Self.hex)?.id == Self.hex)
        #expect(ContainerReference(Self.hex)?.runtime == nil)
        #expect(ContainerReference("") == nil)
        #expect(ContainerReference("containerd://") == nil)
    }
}

/// Pod JSON as the API server sends it (trimmed to what matters plus some noise).
enum PodJSON {
    static func pod(
        uid: String = "6d2f0b7e-1c1a-4c55-9d1e-2a1f3c4d5e6f", name: String = "web-0", namespace: String = "shop",
        resourceVersion: String = "100", labels: [String: String] = ["app": "web"],
        containers: [(name: String, requests: [String: String], limits: [String: String])] = [
            ("app", ["memory": "256Mi", "cpu": "100m"], ["memory": "512Mi"])
        ],
        initContainers: [(name: String, requests: [String: String], limits: [String: String])] = [],
        statuses: [(name: String, id: String?)] = [],
        initStatuses: [(name: String, id: String?)] = [],
        ephemeralStatuses: [(name: String, id: String?)] = [],
        qosClass: String? = nil
    ) -> [String: Any] {
        func container(_ c: (name: String, requests: [String: String], limits: [String: String])) -> [String: Any] {
            ["name": c.name, "image": "busybox", "resources": ["requests": c.requests, "limits": c.limits]]
        }
        func status(_ s: (name: String, id: String?)) -> [String: Any] {
            var entry: [String: Any] = ["name": s.name, "ready": true, "restartCount": 0, "image": "busybox"]
            if let id = s.id { entry["containerID"] = id }
            return entry
        }
        var statusObject: [String: Any] = [
            "phase": "Running",
            "containerStatuses": statuses.map(status),
            "initContainerStatuses": initStatuses.map(status),
            "ephemeralContainerStatuses": ephemeralStatuses.map(status),
        ]
        if let qosClass { statusObject["qosClass"] = qosClass }
        return [
            "kind": "Pod", "apiVersion": "v1",
            "metadata": [
                "uid": uid, "name": name, "namespace": namespace, "resourceVersion": resourceVersion, "labels": labels,
                "creationTimestamp": "2026-11-22T00:00:00Z",
            ],
            "spec": [
                "nodeName": "node-a",
                "containers": containers.map(container),
                "initContainers": initContainers.map(container),
                "ephemeralContainers": [["name": "debugger", "image": "busybox"]],
            ],
            "status": statusObject,
        ]
    }

    static func decode(_ object: [String: Any]) throws -> KubePod {
        try JSONDecoder().decode(KubePod.self, from: JSONSerialization.data(withJSONObject: object))
    }

    static func event(_ type: String, _ object: [String: Any]) throws -> PodWatchEvent {
        try PodWatchEvent(line: JSONSerialization.data(withJSONObject: ["type": type, "object": object]))
    }
}

struct PodRecordTests {
    static let appID = String(repeating: "a1", count: 32)
    static let initID = String(repeating: "b2", count: 32)
    static let debugID = String(repeating: "c3", count: 32)

    @Test func mapsContainersOfAllThreeStatusLists() throws {
        let pod = PodJSON.pod(
            labels: ["app": "web", "tier": "front"],
            initContainers: [("setup", ["memory": "64Mi"], ["memory": "64Mi"])],
            statuses: [("app", "containerd://\(Self.appID)")],
            initStatuses: [("setup", "cri-o://\(Self.initID)")],
            ephemeralStatuses: [("debugger", "docker://\(Self.debugID)")],
            qosClass: "Burstable")
        let record = try PodRecord(PodJSON.decode(pod))
        #expect(record.containerIDs == [Self.appID: "app", Self.initID: "setup", Self.debugID: "debugger"])
        let index = PodIndex()
        index.replaceAll(with: [record])

        let app = try #require(index.metadata(podUID: nil, containerID: Self.appID))
        #expect(app.name == "web-0")
        #expect(app.namespace == "shop")
        #expect(app.container == "app")
        #expect(app.labels == ["app": "web", "tier": "front"])
        #expect(app.qos == .burstable)
        #expect(app.memoryRequest == 256 << 20)
        #expect(app.memoryLimit == 512 << 20)

        let setup = try #require(index.metadata(podUID: nil, containerID: "cri-o://\(Self.initID)"))
        #expect(setup.container == "setup")
        #expect(setup.memoryLimit == 64 << 20)
        let debugger = try #require(index.metadata(podUID: nil, containerID: Self.debugID.uppercased()))
        #expect(debugger.container == "debugger")
        #expect(debugger.memoryLimit == nil)
    }

    @Test func podLevelLookupSumsAppContainers() throws {
        let uid = "0F9A9C3E-0000-4000-8000-000000000001"
        let pod = PodJSON.pod(
            uid: uid,
            containers: [
                ("a", ["memory": "100Mi"], ["memory": "200Mi"]),
                ("b", ["memory": "50Mi"], ["memory": "1Gi"]),
            ])
        let index = PodIndex()
        index.replaceAll(with: [try PodRecord(PodJSON.decode(pod))])
        let metadata = try #require(index.metadata(podUID: uid.lowercased(), containerID: nil))
        #expect(metadata.container == nil)
        #expect(metadata.uid == uid.lowercased())
        #expect(metadata.memoryRequest == 150 << 20)
        #expect(metadata.memoryLimit == (200 << 20) + (1 << 30))
        // the cgroup path may spell the UID in upper case: it is the same pod
        #expect(index.metadata(podUID: uid, containerID: nil)?.name == "web-0")
    }

    @Test func podLimitIsUnknownWhenOneContainerIsUnlimited() throws {
        let pod = PodJSON.pod(containers: [("a", ["memory": "100Mi"], ["memory": "200Mi"]), ("b", [:], [:])])
        let record = try PodRecord(PodJSON.decode(pod))
        #expect(record.memoryLimit == nil)
        #expect(record.memoryRequest == 100 << 20)
    }

    /// A tenant can make cgroups inside its own pod's: one named like another pod's
    /// container must get its own pod's identity, never the other's.
    @Test func containerOfAnotherPodUnderThisPodsCgroupIsNotBorrowed() throws {
        let mine = "11111111-1c1a-4c55-9d1e-2a1f3c4d5e6f"
        let theirs = "22222222-1c1a-4c55-9d1e-2a1f3c4d5e6f"
        let theirContainer = String(repeating: "ab", count: 32)
        let index = PodIndex()
        index.replaceAll(with: [
            try PodRecord(PodJSON.decode(PodJSON.pod(uid: mine, name: "tenant-a", namespace: "a"))),
            try PodRecord(PodJSON.decode(PodJSON.pod(
                uid: theirs, name: "payments", namespace: "b", statuses: [("app", "containerd://\(theirContainer)")]))),
        ])
        let spoofed = try #require(index.metadata(podUID: mine, containerID: theirContainer))
        #expect(spoofed.name == "tenant-a" && spoofed.namespace == "a" && spoofed.container == nil)
        let real = try #require(index.metadata(podUID: theirs, containerID: theirContainer))
        #expect(real.name == "payments" && real.container == "app")
    }

    @Test func unknownContainerIDFallsBackToThePod() throws {
        let index = PodIndex()
        index.replaceAll(with: [try PodRecord(PodJSON.decode(PodJSON.pod(statuses: [("app", "containerd://\(Self.appID)")])))])
        let metadata = index.metadata(podUID: "6d2f0b7e-1c1a-4c55-9d1e-2a1f3c4d5e6f", containerID: String(repeating: "f", count: 64))
        #expect(metadata?.name == "web-0")
        #expect(metadata?.container == nil)
        #expect(index.metadata(podUID: nil, containerID: String(repeating: "f", count: 64)) == nil)
    }

    @Test func podWithoutUIDIsAnErrorNamingIt() throws {
        var pod = PodJSON.pod(name: "broken")
        var metadata = pod["metadata"] as! [String: Any]
        metadata["uid"] = nil
        pod["metadata"] = metadata
        #expect(throws: PodRecord.MappingError.self) { try PodRecord(PodJSON.decode(pod)) }
        do {
            _ = try PodRecord(PodJSON.decode(pod))
        } catch {
            #expect("\(error)".contains("shop/broken"))
        }
    }
}

struct PodQoSTests {
    typealias Spec = [(name: String, requests: [String: String], limits: [String: String])]

    @Test(arguments: [
        ([("a", [:], [:])] as Spec, TargetIdentity.QoSClass.besteffort),
        ([("a", ["memory": "1Gi", "cpu": "1"], ["memory": "1Gi", "cpu": "1"])], .guaranteed),
        // same values, other spellings
        ([("a", ["memory": "1073741824", "cpu": "500m"], ["memory": "1Gi", "cpu": "0.5"])], .guaranteed),
        ([("a", ["memory": "512Mi", "cpu": "1"], ["memory": "1Gi", "cpu": "1"])], .burstable),
        ([("a", ["memory": "1Gi"], ["memory": "1Gi"])], .burstable),  // no cpu limit
        ([("a", ["memory": "1Gi", "cpu": "1"], ["memory": "1Gi", "cpu": "1"]), ("b", [:], [:])], .burstable),
        ([("a", ["cpu": "100m"], [:])], .burstable),
        ([("a", ["ephemeral-storage": "1Gi"], [:])], .besteffort),  // only cpu and memory count
        ([("a", ["memory": "0"], ["memory": "0"])], .besteffort),  // zero is no request
    ])
    func computedFromSpec(containers: Spec, expected: TargetIdentity.QoSClass) throws {
        let pod = try PodJSON.decode(PodJSON.pod(containers: containers))
        #expect(PodRecord.qosClass(of: try #require(pod.spec)) == expected)
        #expect(try PodRecord(pod).qos == expected)
    }

    @Test func statusWins() throws {
        let pod = PodJSON.pod(containers: [("a", [:], [:])], qosClass: "Guaranteed")
        #expect(try PodRecord(PodJSON.decode(pod)).qos == .guaranteed)
    }
}

struct PodIndexTests {
    static func uid(_ n: Int) -> String { String(format: "00000000-0000-4000-8000-%012d", n) }
    static func cid(_ n: Int) -> String { String(format: "%064x", n) }

    static func pod(_ n: Int, resourceVersion: Int = 1, container: Int? = nil) -> [String: Any] {
        PodJSON.pod(
            uid: uid(n), name: "pod-\(n)", resourceVersion: String(resourceVersion),
            statuses: [("app", "containerd://\(cid(container ?? n))")])
    }

    @Test func deletedPodsStayForLateEventsUpToTheLimit() throws {
        let index = PodIndex(retainDeleted: 3)
        index.replaceAll(with: try (1...6).map { try PodRecord(PodJSON.decode(Self.pod($0))) })
        for n in 1...5 { try index.apply(PodJSON.event("DELETED", Self.pod(n))) }
        // the last three deletions still answer, the two oldest are gone
        for n in 3...5 { #expect(index.metadata(podUID: nil, containerID: Self.cid(n))?.name == "pod-\(n)") }
        for n in 1...2 {
            #expect(index.metadata(podUID: nil, containerID: Self.cid(n)) == nil)
            #expect(index.metadata(podUID: Self.uid(n), containerID: nil) == nil)
        }
        let statistics = index.statistics
        #expect(statistics.pods == 1)
        #expect(statistics.deletedRetained == 3)
        #expect(statistics.events == 5)
    }

    @Test func relistMarksMissingPodsDeletedAndRevivesListedOnes() throws {
        let index = PodIndex(retainDeleted: 10)
        index.replaceAll(with: try [1, 2].map { try PodRecord(PodJSON.decode(Self.pod($0))) })
        try index.apply(PodJSON.event("DELETED", Self.pod(1)))
        #expect(index.statistics.deletedRetained == 1)
        // a relist that still has pod 1 (the delete was a stale view) and no longer pod 2
        index.replaceAll(with: [try PodRecord(PodJSON.decode(Self.pod(1, resourceVersion: 5)))])
        let statistics = index.statistics
        #expect(statistics.pods == 1)
        #expect(statistics.deletedRetained == 1)
        #expect(statistics.relists == 2)
        #expect(index.metadata(podUID: nil, containerID: Self.cid(2))?.name == "pod-2")
        #expect(index.pod(uid: Self.uid(1))?.resourceVersion == "5")
    }

    @Test func restartedContainerKeepsItsOldID() throws {
        let index = PodIndex()
        try index.apply(PodJSON.event("ADDED", Self.pod(1, container: 100)))
        try index.apply(PodJSON.event("MODIFIED", Self.pod(1, resourceVersion: 2, container: 101)))
        #expect(index.metadata(podUID: nil, containerID: Self.cid(100))?.container == "app")
        #expect(index.metadata(podUID: nil, containerID: Self.cid(101))?.container == "app")
        #expect(!index.synced)  // events alone are no list
    }

    @Test func concurrentReadersSeeWholeRecords() async throws {
        let index = PodIndex(retainDeleted: 8)
        let events = try (0..<400).map { n in try PodJSON.event(n % 3 == 2 ? "DELETED" : "ADDED", Self.pod(n % 50, resourceVersion: n)) }
        await withTaskGroup(of: Int.self) { group in
            group.addTask {
                for event in events { try? index.apply(event) }
                return 0
            }
            for _ in 0..<3 {
                group.addTask {
                    var seen = 0
                    for n in 0..<2000 {
                        if let metadata = index.metadata(podUID: nil, containerID: Self.cid(n % 50)) {
                            // a hit is always the pod that owns the id, never a mix
                            if metadata.name == "pod-\(n % 50)" && metadata.container == "app" { seen += 1 } else { return -1 }
                        }
                    }
                    return seen
                }
            }
            for await result in group { #expect(result >= 0) }
        }
        #expect(index.statistics.events == 400)
    }
}

struct PodWatchEventTests {
    @Test func decodesTheFiveTypes() throws {
        let pod = PodJSON.pod()
        guard case .added(let added) = try PodJSON.event("ADDED", pod) else { Issue.record("not added"); return }
        #expect(added.metadata.name == "web-0")
        guard case .modified = try PodJSON.event("MODIFIED", pod) else { Issue.record("not modified"); return }
        guard case .deleted = try PodJSON.event("DELETED", pod) else { Issue.record("not deleted"); return }
        let bookmark = try PodJSON.event("BOOKMARK", ["kind": "Pod", "metadata": ["resourceVersion": "777"]])
        guard case .bookmark(let version) = bookmark else { Issue.record("not a bookmark"); return }
        #expect(version == "777")
        let gone = try PodJSON.event(
            "ERROR", ["kind": "Status", "status": "Failure", "message": "too old resource version: 5 (90)", "reason": "Expired", "code": 410])
        guard case .error(let status) = gone else { Issue.record("not an error"); return }
        #expect(status.code == 410)
        #expect(status.reason == "Expired")
        // the ERROR event's 410 takes the same relist path as an HTTP 410
        #expect(PodWatcher.watchError(status, request: "GET /api/v1/pods?watch=1").isGone)
        let internalError = KubeStatus(status: "Failure", message: "etcd down", reason: "InternalError", code: 500)
        #expect(!PodWatcher.watchError(internalError, request: "GET /api/v1/pods?watch=1").isGone)
    }

    @Test func badLinesAreErrorsQuotingTheLine() {
        for line in [#"{"type":"SHRUG","object":{}}"#, "not json", #"{"type":"ADDED","object":{"metadata":5}}"#] {
            do {
                _ = try PodWatchEvent(line: Data(line.utf8))
                Issue.record("\(line) decoded")
            } catch {
                #expect("\(error)".contains(String(line.prefix(8))))
            }
        }
    }
}

struct BackoffTests {
    /// A generator that always answers the same value, so jitter is known.
    struct Fixed: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 { value }
    }

    @Test func doublesUpToTheMaximumAndResets() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0)
        var zero = Fixed(value: 0)
        let delays = (0..<6).map { _ in backoff.next(using: &zero) }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        #expect(backoff.attempts == 6)
        backoff.reset()
        #expect(backoff.next(using: &zero) == .milliseconds(100))
    }

    @Test func jitterStaysWithinItsShare() {
        var backoff = Backoff(initial: .seconds(2), maximum: .seconds(60), jitter: 0.5)
        var random = SystemRandomNumberGenerator()
        var seen = Set<Duration>()
        for _ in 0..<200 {
            backoff.reset()
            let delay = backoff.next(using: &random)
            #expect(delay >= .seconds(1) && delay <= .seconds(2))
            seen.insert(delay)
        }
        // jitter spreads the agents: 200 draws are not all the same delay
        #expect(seen.count > 100)
        var top = Fixed(value: .max)
        backoff.reset()
        #expect(backoff.next(using: &top) == .seconds(1))
    }

    @Test func hugeAttemptCountsStayAtTheMaximum() {
        var backoff = Backoff(initial: .milliseconds(1), maximum: .seconds(30), jitter: 0)
        var zero = Fixed(value: 0)
        for _ in 0..<500 { _ = backoff.next(using: &zero) }
        #expect(backoff.next(using: &zero) == .seconds(30))
    }
}

/// A service-account-shaped directory (token, ca.crt) for one test; removed when the test ends.
final class ServiceAccountDirectory {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-sa-\(UUID().uuidString)").path

    init() throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path + "/token", contents: Data("t0k3n\n".utf8))
        FileManager.default.createFile(atPath: path + "/ca.crt", contents: Data("-----BEGIN CERTIFICATE-----\n".utf8))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct KubernetesConfigurationTests {
    let account: ServiceAccountDirectory
    var directory: String { account.path }

    init() throws { account = try ServiceAccountDirectory() }

    @Test func inClusterFromTheEnvironment() throws {
        let configuration = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "NODE_NAME": "node-a"],
            hostName: "ignored", serviceAccountDirectory: directory)
        #expect(configuration.apiURL == "https://10.96.0.1:443")
        #expect(configuration.tokenFile == directory + "/token")
        #expect(configuration.caFile == directory + "/ca.crt")
        #expect(configuration.nodeName == "node-a")
    }

    @Test func overridesAndIPv6() throws {
        let configuration = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
            hostName: "host-b", serviceAccountDirectory: directory)
        #expect(configuration.apiURL == "https://[fd00::1]:6443")
        #expect(configuration.nodeName == "host-b")
        let overridden = try KubernetesConfiguration.inCluster(
            environment: [:], apiURL: "https://127.0.0.1:6443/", nodeName: "n", serviceAccountDirectory: directory)
        #expect(overridden.apiURL == "https://127.0.0.1:6443")
        #expect(KubernetesConfiguration.runningInCluster(environment: ["KUBERNETES_SERVICE_HOST": "x"]))
        #expect(!KubernetesConfiguration.runningInCluster(environment: [:]))
    }

    @Test func badInputIsNamed() throws {
        #expect(throws: KubernetesConfiguration.ConfigurationError.self) {
            try KubernetesConfiguration.inCluster(environment: [:], serviceAccountDirectory: directory)
        }
        do {
            _ = try KubernetesConfiguration(apiURL: "ftp://x", nodeName: "n")
            Issue.record("ftp accepted")
        } catch {
            #expect("\(error)".contains("ftp://x"))
        }
        do {
            _ = try KubernetesConfiguration(apiURL: "https://x", tokenFile: "/nonexistent/token", nodeName: "n")
            Issue.record("missing token file accepted")
        } catch {
            #expect("\(error)".contains("/nonexistent/token"))
        }
        #expect(throws: KubernetesConfiguration.ConfigurationError.self) {
            try KubernetesConfiguration(apiURL: "https://x", nodeName: "")
        }
        // a bearer token never travels over plain http:// off the node
        let token = directory + "/token"
        do {
            _ = try KubernetesConfiguration(apiURL: "http://10.96.0.1:80", tokenFile: token, nodeName: "n")
            Issue.record("a token over plain http accepted")
        } catch {
            #expect("\(error)".contains("plain http:// to 10.96.0.1"), "\(error)")
        }
        #expect(try KubernetesConfiguration(apiURL: "http://127.0.0.1:8080", tokenFile: token, nodeName: "n").tokenFile == token)
        #expect(try KubernetesConfiguration(apiURL: "http://10.96.0.1:80", nodeName: "n").tokenFile == nil)
    }

    @Test(arguments: [
        ("http://hooks.example.com/x", "hooks.example.com"), ("http://user:pw@10.0.0.1:8080/a", "10.0.0.1"),
        ("http://[fd00::1]:80/", "fd00::1"), ("HTTP://Example.COM", "example.com"), ("https://hooks.example.com", nil),
        ("http://localhost:9000", nil), ("http://127.0.0.1/", nil), ("http://[::1]:80", nil),
    ] as [(String, String?)])
    func plainHTTPToAnotherHost(_ url: String, _ host: String?) {
        #expect(PlainHTTP.remoteHost(url) == host, "\(url)")
    }

    @Test func queryEncoding() {
        #expect(
            KubernetesClient.encode([("fieldSelector", "spec.nodeName=node a"), ("watch", "1")])
                == "?fieldSelector=spec.nodeName%3Dnode%20a&watch=1")
        #expect(KubernetesClient.encode([]) == "")
    }
}
