import Foundation
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport
import Testing

/// `memwarden check-config` as a user runs it. It needs no privileges; it
/// lives in this target because this target has the executable built next to
/// it.
struct CheckConfigCommandTests {
    static func run(_ arguments: [String], input: [String]? = nil) throws -> (status: Int32, stdout: [String], stderr: [String]) {
        guard let path = ChildProcess.sibling("memwarden") else { throw TestFailure("memwarden not built next to the tests") }
        let process = try ChildProcess(path, arguments, stdin: input == nil ? .null : .pipe, stdout: .pipe, stderr: .pipe)
        for line in input ?? [] { process.send(line) }
        process.closeStdin()
        let end = deadline(seconds: 30)
        var out: [String] = []
        var err: [String] = []
        while let line = process.stdout?.readLine(deadline: end) { out.append(line) }
        while let line = process.stderr?.readLine(deadline: end) { err.append(line) }
        guard let status = process.waitForExit(deadline: end) else { throw TestFailure("check-config did not exit within 30 s") }
        return (status, out, err)
    }

    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    @Test func validExampleExitsZero() throws {
        let file = Self.repositoryRoot + "/examples/policy.yaml"
        let result = try Self.run(["check-config", file])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.first?.hasPrefix("\(file): valid (7 rules;") == true, "\(result.stdout)")
        #expect(result.stderr.isEmpty)
    }

    @Test func invalidFileExitsOneAndPrintsEveryProblem() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-check-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
            apiVersion: memwarden.io/v1
            defaults:
              budget: 1XB
              tiers: {warning: 90%, high: 80%}
            rules:
              - name: a
                match: {namespace: x}
                sideEffects: none
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try Self.run(["check-config", file])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr == [
            "\(file):3:11: defaults.budget: '1XB': unknown unit 'XB' (expected Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or none)",
            "\(file):4:31: defaults.tiers.high: tiers out of order: high (80%) must be above warning (90%)",
            "\(file):8:5: rules[0].sideEffects: unknown key 'sideEffects' (expected one of: name, priority, match, budget, tiers, detectors, response, cooldowns)",
            "\(file): 3 problems",
        ])
    }

    @Test func missingFileExitsOne() throws {
        let result = try Self.run(["check-config", "/nonexistent/policy.yaml"])
        #expect(result.status == 1)
        #expect(result.stderr.first == "/nonexistent/policy.yaml: cannot open: No such file or directory")
    }
}

extension CheckConfigCommandTests {
    @Test func explainsWhichRuleATargetGets() throws {
        let file = Self.repositoryRoot + "/examples/policy.yaml"
        let pod = try Self.run([
            "check-config", file, "--namespace", "payments", "--label", "app.kubernetes.io/name=api", "--container", "api",
        ])
        #expect(pod.status == 0, "\(pod.stderr)")
        #expect(pod.stdout == [
            "rule: payments-api (1 label requirement, namespace)",
            "budget: 805306368 bytes (768Mi)",
            "tiers: warning 60%, high 80%, critical 90%, emergency 95%, hysteresis 5%",
            "mode: throttle",
            "throttle: from critical, minimum 268435456 bytes (256Mi), interval 6s, pressure target 10ms, max probe 1%, max backoff 100%, "
                + "max growth rate 131072 bytes/s (128Ki/s)",
            "cooldowns: event 5m, response 15s",
            "detectors: standard",
        ])
        let host = try Self.run(["check-config", file, "--cgroup", "/user.slice/user-0.slice/session-1.scope"])
        #expect(host.stdout.first == "rule: default (no rule matches)")
        #expect(host.stdout.contains("budget: limit (the cgroup's own)"))
    }
}

extension CheckConfigCommandTests {
    @Test func readsStandardInput() throws {
        let bad = try Self.run(["check-config", "-"], input: ["apiVersion: memwarden.io/v1", "defaults: {budget: 1XB}"])
        #expect(bad.status == 1)
        #expect(bad.stderr == [
            "<stdin>:2:20: defaults.budget: '1XB': unknown unit 'XB' (expected Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or none)",
            "<stdin>: 1 problem",
        ])
        let good = try Self.run(["check-config", "-"], input: ["apiVersion: memwarden.io/v1"])
        #expect(good.status == 0)
        #expect(good.stdout == ["<stdin>: valid (0 rules; default budget the cgroup's limit, mode observe; outputs: stdout)"])
    }
}
