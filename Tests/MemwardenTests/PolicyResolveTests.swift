import Foundation
import Testing

@testable import MemwardenDetection
@testable import MemwardenModel
@testable import MemwardenPolicy

struct PolicyResolveTests {
    static let yaml = """
        apiVersion: memwarden.io/v1
        defaults:
          budget: limit
          cooldowns: {event: 10m}
        rules:
          - name: payments
            match: {namespace: payments}
            budget: 2Gi
            response: {mode: annotate}
          - name: payments-api
            match:
              namespace: payments
              podSelector: {matchLabels: {app: api}}
            budget: 768Mi
            tiers: {warning: 60%}
            response:
              mode: throttle
              throttle: {fromTier: critical, minimum: 256Mi, interval: 3s}
          - name: api-container
            match:
              podSelector: {matchLabels: {app: api}}
              container: api
            budget: 1.5Gi
          - name: sidecars
            match: {container: [envoy, istio-proxy]}
            budget: none
          - name: canary
            priority: 5
            match:
              podSelector:
                matchExpressions:
                  - {key: track, operator: In, values: [canary]}
            detectors: {profile: accelerated}
          - name: nginx
            match: {systemdUnit: nginx.service}
            budget: 1Gi
          - name: services
            match: {cgroup: /system.slice/*.service}
            budget: 512Mi
          - name: special
            match: {cgroup: /system.slice/special.service}
            budget: 64Mi
          - name: kubepods-deep
            match: {cgroup: "/kubepods.slice/**/cri-containerd-*.scope"}
            cooldowns: {response: 1m}
        """

    static func pod(
        _ namespace: String, labels: [String: String] = [:], container: String? = nil, cgroup: String = "/kubepods/pod1/c"
    ) -> TargetIdentity {
        TargetIdentity(
            cgroup: cgroup, pod: PodMetadata(name: "p", namespace: namespace, uid: "u", labels: labels, container: container))
    }

    static func unit(_ name: String) -> TargetIdentity {
        TargetIdentity(cgroup: "/system.slice/\(name)", runtime: .systemd, systemdUnit: name)
    }

    /// (identity, the rule expected to win, its budget)
    static let cases: [(String, TargetIdentity, String, Budget?)] = [
        ("no pod, no unit: defaults", TargetIdentity(cgroup: "/user.slice/x"), "default", .limit),
        ("unknown cgroup shape: defaults", TargetIdentity(cgroup: ""), "default", .limit),
        ("namespace only", pod("payments", labels: ["app": "db"], container: "db"), "payments", .bytes(2 << 30)),
        ("namespace + label beats namespace", pod("payments", labels: ["app": "api"], container: "web"), "payments-api", .bytes(768 << 20)),
        ("container beats labels + namespace", pod("payments", labels: ["app": "api"], container: "api"), "api-container", .bytes(1536 << 20)),
        ("container list, any namespace", pod("mesh", container: "istio-proxy"), "sidecars", nil),
        ("priority beats specificity", pod("payments", labels: ["app": "api", "track": "canary"], container: "api"), "canary", .limit),
        ("systemd unit beats cgroup glob", unit("nginx.service"), "nginx", .bytes(1 << 30)),
        ("cgroup glob", unit("cron.service"), "services", .bytes(512 << 20)),
        ("exact cgroup beats glob", unit("special.service"), "special", .bytes(64 << 20)),
        ("glob * stays in one segment", TargetIdentity(cgroup: "/system.slice/a/b.service"), "default", .limit),
        (
            "glob ** crosses segments",
            TargetIdentity(cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab.scope"),
            "kubepods-deep", .limit
        ),
        ("namespace needs pod metadata", TargetIdentity(cgroup: "/kubepods/pod1/c", podUID: "1"), "default", .limit),
    ]

    @Test(arguments: 0..<cases.count)
    func mostSpecificRuleWins(_ index: Int) throws {
        let (name, identity, rule, budget) = Self.cases[index]
        let policy = try PolicyLoader.parse(Self.yaml, file: "policy.yaml")
        let resolved = policy.resolve(for: identity)
        #expect(resolved.rule == rule, "\(name)")
        #expect(resolved.budget == budget, "\(name)")
    }

    @Test func ruleSettingsOverTheFilesDefaults() throws {
        let policy = try PolicyLoader.parse(Self.yaml, file: "policy.yaml")
        let api = policy.resolve(for: Self.pod("payments", labels: ["app": "api"], container: "web"))
        #expect(api.mode == .throttle)
        #expect(api.tiers == BudgetTiers(warning: 0.60, high: 0.80, critical: 0.90, emergency: 0.95, hysteresis: 0.05))
        #expect(api.throttle.fromTier == .critical)
        #expect(api.throttle.minimumBytes == 256 << 20)
        #expect(api.throttle.interval == .seconds(3))
        // untouched throttle fields keep the built-in values
        #expect(api.throttle.maxProbe == ThrottleSettings().maxProbe)
        // the file's defaults (event cooldown 10m) reach every rule that does not set it
        #expect(api.cooldowns == Cooldowns(event: .seconds(600), response: .seconds(15)))
        let deep = policy.resolve(
            for: TargetIdentity(cgroup: "/kubepods.slice/a.slice/cri-containerd-1.scope"))
        #expect(deep.cooldowns == Cooldowns(event: .seconds(600), response: .seconds(60)))
        let canary = policy.resolve(for: Self.pod("x", labels: ["track": "canary"]))
        #expect(canary.detectorProfile == .accelerated)
        #expect(policy.defaults.detectorProfile == nil)
    }

    @Test("a rule's detectors section and throttle confirmation reach its targets' confirmation settings")
    func detectorSettingsPerRule() throws {
        let policy = try PolicyLoader.parse(
            """
            apiVersion: memwarden.io/v1
            defaults:
              detectors: {patience: 2h}
            rules:
              - name: batch
                match: {namespace: batch}
                detectors: {profile: accelerated, grace: 5m, horizon: 1h}
                response: {throttle: {minConfidence: 90%, minSuspected: 10m}}
            """, file: "policy.yaml")
        let batch = policy.resolve(for: Self.pod("batch", labels: [:], container: "job"))
        let settings = batch.confirmationSettings(agentProfile: .standard)
        #expect(settings.graceSeconds == 300 && settings.horizonSeconds == 3600)
        // patience from the defaults is laid over the rule's profile
        #expect(settings.patienceSeconds == 7200)
        #expect(settings.fastConfirmSeconds == ConfirmationSettings(profile: .accelerated).fastConfirmSeconds)
        #expect(batch.throttle.minConfidence == 0.9 && batch.throttle.minSuspected == .seconds(600))
        let other = policy.resolve(for: Self.pod("web", labels: [:], container: "web"))
        let standard = other.confirmationSettings(agentProfile: .standard)
        #expect(standard.patienceSeconds == 7200 && standard.graceSeconds == ConfirmationSettings().graceSeconds)
        #expect(other.throttle.minConfidence == 0.8 && other.throttle.minSuspected == .seconds(120))
    }

    @Test(
        "throttle.maxGrowthRate: a quantity per second, with or without /s; 128Ki/s unless set",
        arguments: [("128Ki", UInt64(128 << 10)), ("1Mi/s", 1 << 20), ("65536", 65536), ("1.5Mi/s", 1_572_864), ("2k/s", 2000)])
    func growthRate(text: String, bytes: UInt64) throws {
        let policy = try PolicyLoader.parse(
            """
            apiVersion: memwarden.io/v1
            rules:
              - name: capped
                match: {namespace: shop}
                response: {mode: throttle, throttle: {maxGrowthRate: \(text)}}
            """, file: "policy.yaml")
        #expect(policy.resolve(for: Self.pod("shop")).throttle.maxGrowthRate == bytes)
        #expect(policy.resolve(for: Self.pod("other")).throttle.maxGrowthRate == 128 << 10)
    }

    @Test func noRulesIsTheBuiltInPolicy() throws {
        let policy = try PolicyLoader.parse("apiVersion: memwarden.io/v1\n", file: "p.yaml")
        #expect(policy == Policy.builtIn)
        #expect(policy.resolve(for: Self.pod("a")) == TargetPolicy.builtIn)
        #expect(TargetPolicy.builtIn.mode == .observe)
        #expect(TargetPolicy.builtIn.budget == .limit)
    }

    @Test func aliasesRepeatAWholeValue() throws {
        let policy = try PolicyLoader.parse(
            """
            apiVersion: memwarden.io/v1
            defaults:
              tiers: &strict {warning: 50%, high: 60%, critical: 70%, emergency: 80%}
            rules:
              - {name: a, match: {namespace: a}, tiers: *strict, budget: 1Gi}
            """, file: "p.yaml")
        #expect(policy.rules[0].policy.tiers == policy.defaults.tiers)
        #expect(policy.defaults.tiers.emergency == 0.8)
    }

    @Test func emptySectionsAreAbsentOnes() throws {
        let policy = try PolicyLoader.parse("apiVersion: memwarden.io/v1\ndefaults:\nrules:\noutputs:\n", file: "p.yaml")
        #expect(policy == Policy.builtIn)
    }

    @Test func exampleFileValidatesAndResolves() throws {
        let path = Self.repositoryRoot + "/examples/policy.yaml"
        let policy = try PolicyLoader.load(file: path)
        #expect(policy.rules.map(\.name) == [
            "payments", "payments-api", "envoy-sidecars", "batch", "nginx", "system-services", "debug-pods",
        ])
        #expect(policy.resolve(for: Self.pod("payments", labels: ["app.kubernetes.io/name": "api"])).rule == "payments-api")
        #expect(policy.resolve(for: Self.unit("nginx.service")).mode == .throttle)
        #expect(policy.outputs.webhook?.minSeverity == .warning)
        #expect(policy.outputs.webhook?.initialBackoff == .milliseconds(500))
        #expect(policy.outputs.alertmanager?.resendInterval == .seconds(60))
        #expect(policy.outputs.kubernetes == KubernetesOutputSettings(events: true, annotations: true))
    }

    @Test func outputsSectionIsParsedIntoOutputSettings() throws {
        let policy = try PolicyLoader.parse(
            """
            apiVersion: memwarden.io/v1
            outputs:
              stdout: false
              webhook:
                url: https://[::1]:8443/hook?x=1
                timeout: 1500ms
                retries: 0
                backoff: {initial: 1s, max: 1m30s}
                queueSize: 10
                bearerTokenFile: /run/secrets/token
              alertmanager: {url: "http://127.0.0.1:9093", resendInterval: 2m}
            """, file: "p.yaml")
        let expected = OutputSettings(
            stdout: false,
            webhook: WebhookSettings(
                url: "https://[::1]:8443/hook?x=1", timeout: .milliseconds(1500), maxRetries: 0, initialBackoff: .seconds(1),
                maxBackoff: .seconds(90), queueSize: 10, bearerTokenFile: "/run/secrets/token"),
            alertmanager: AlertmanagerSettings(url: "http://127.0.0.1:9093", resendInterval: .seconds(120)))
        #expect(policy.outputs == expected)
    }

    @Test func overlappingRulesWithDifferentPrioritiesAreAccepted() throws {
        let policy = try PolicyLoader.parse(
            """
            apiVersion: memwarden.io/v1
            rules:
              - {name: a, match: {podSelector: {matchLabels: {app: x}}}, budget: 1Gi}
              - {name: b, priority: 1, match: {podSelector: {matchLabels: {tier: y}}}, budget: 2Gi}
              - {name: c, match: {podSelector: {matchLabels: {app: z}}}, budget: 3Gi}
              - {name: d, match: {podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}}, budget: 4Gi}
            """, file: "p.yaml")
        // a and c cannot both match (app x vs z), d excludes both; b outranks by priority
        #expect(policy.resolve(for: Self.pod("n", labels: ["app": "x", "tier": "y"])).rule == "b")
        #expect(policy.resolve(for: Self.pod("n", labels: ["app": "z"])).rule == "c")
        #expect(policy.resolve(for: Self.pod("n", labels: ["other": "1"])).rule == "d")
    }

    /// The repository, found from this file's path (Tests/MemwardenTests/…).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
}

struct PolicyValuesTests {
    @Test(arguments: [
        ("536870912", UInt64(536_870_912)), ("512Mi", 512 << 20), ("1.5Gi", 1536 << 20), ("500M", 500_000_000),
        ("1e9", 1_000_000_000), ("2Ki", 2048), ("+1k", 1000), ("0.5", 1), ("1.0001Ki", 1025), ("15Ei", 15 << 60),
        ("18446744073709551615", UInt64.max),
    ])
    func quantities(_ text: String, _ bytes: UInt64) {
        #expect((try? PolicyValues.bytes(text).get()) == bytes)
    }

    @Test(arguments: ["", "Mi", "1.2.3Mi", "1MB", "100m", "-1Gi", "1 Gi", "16Ei", "18446744073709551616", "1e20"])
    func badQuantities(_ text: String) {
        #expect(throws: PolicyValues.Reason.self) { try PolicyValues.bytes(text).get() }
    }

    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("5s", .seconds(5)), ("1m", .seconds(60)), ("1h30m", .seconds(5400)),
        ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)), ("10ns", .nanoseconds(10)),
    ])
    func durations(_ text: String, _ duration: Duration) {
        #expect((try? PolicyValues.duration(text).get()) == duration)
    }

    @Test(arguments: ["", "5", "s", "5d", "1m5", "-1s", "five seconds"])
    func badDurations(_ text: String) {
        #expect(throws: PolicyValues.Reason.self) { try PolicyValues.duration(text).get() }
    }

    @Test(arguments: [
        ("http://am:9093", true), ("https://hooks.example.com/x?y=1", true), ("HTTPS://h", true), ("http://[::1]:80/", true),
        ("ftp://h", false), ("http://", false), ("http://h:0", false), ("http://h:x", false), ("http://h /x", false),
        ("hooks.example.com", false),
    ])
    func urls(_ text: String, _ valid: Bool) {
        #expect(((try? PolicyValues.url(text).get()) != nil) == valid)
    }

    @Test(arguments: [
        ("/system.slice/*.service", "/system.slice/nginx.service", true),
        ("/system.slice/*.service", "/system.slice/a/b.service", false),
        ("/system.slice/*.service", "/system.slice/nginx.scope", false),
        ("/kubepods/**", "/kubepods/burstable/pod1/abc", true),
        ("/kubepods/**/abc", "/kubepods/abc", true),
        ("/kubepods/**/abc", "/kubepods/x/y/abc", true),
        ("/kubepods/**/abc", "/kubepods/x/y/abcd", false),
        ("/a/?", "/a/b", true),
        ("/a/?", "/a/bc", false),
        ("/a/b", "/a/b", true),
        ("/a/b", "/a/b/c", false),
    ])
    func cgroupGlobs(_ pattern: String, _ path: String, _ matches: Bool) {
        #expect(CgroupGlob(pattern).matches(path) == matches)
    }

    @Test func specificityOrderIsDocumented() {
        func spec(_ match: RuleMatch, priority: Int = 0) -> RuleSpecificity { match.specificity(priority: priority) }
        let namespace = spec(RuleMatch(namespaces: ["a"]))
        let label = spec(RuleMatch(podSelector: LabelSelector(matchLabels: ["a": "b"])))
        let twoLabels = spec(RuleMatch(podSelector: LabelSelector(matchLabels: ["a": "b", "c": "d"])))
        let container = spec(RuleMatch(containers: ["c"]))
        let unit = spec(RuleMatch(systemdUnits: ["x.service"]))
        let exact = spec(RuleMatch(cgroups: [CgroupGlob("/a/b")]))
        let shortGlob = spec(RuleMatch(cgroups: [CgroupGlob("/a/*")]))
        let longGlob = spec(RuleMatch(cgroups: [CgroupGlob("/a/b/*")]))
        let prioritized = spec(RuleMatch(namespaces: ["a"]), priority: 1)
        #expect([shortGlob, longGlob, namespace, label, twoLabels, container, unit, exact, prioritized].sorted() == [
            shortGlob, longGlob, namespace, label, twoLabels, container, unit, exact, prioritized,
        ])
    }
}

struct PolicySchemaTests {
    /// The editor schema accepts the example and refuses what the loader refuses
    /// for the same reasons it can see (unknown keys, bad units, wrong types).
    @Test func schemaAcceptsTheExampleAndRefusesBadFiles() throws {
        let root = PolicyResolveTests.repositoryRoot
        let script = """
            import json, sys, yaml, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            for path in sys.argv[2:]:
                errors = list(validator.iter_errors(yaml.safe_load(open(path))))
                print(path.rsplit('/', 1)[-1], len(errors))
            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-schema-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bad = [
            "unknown-key.yaml": "apiVersion: memwarden.io/v1\nrules:\n  - {name: a, match: {namespace: x}, budgt: 1Gi}\n",
            "bad-unit.yaml": "apiVersion: memwarden.io/v1\ndefaults: {budget: 512MB}\n",
            "bad-version.yaml": "apiVersion: memwarden.io/v2\n",
            "bad-bool.yaml": "apiVersion: memwarden.io/v1\noutputs: {stdout: \"yes\"}\n",
            "in-without-values.yaml":
                "apiVersion: memwarden.io/v1\nrules:\n  - {name: a, match: {podSelector: {matchExpressions: [{key: a, operator: In}]}}}\n",
        ]
        for (name, text) in bad { try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, root + "/schema/policy.schema.json", root + "/examples/policy.yaml"]
            + bad.keys.sorted().map { directory + "/" + $0 }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with jsonschema and pyyaml (scripts/setup installs them): \(stderr)")
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            counts[String(parts[0])] = Int(parts[1])
        }
        #expect(counts["policy.yaml"] == 0)
        for name in bad.keys { #expect((counts[name] ?? 0) > 0, "the schema accepted \(name)") }
    }
}
