import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport

/// The agent with a policy, end to end: a process in a scratch memory cgroup
/// grows through the tiers of a 100 MiB budget and shrinks back; the policy
/// file changes under the running agent.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct BudgetScenarioTests {
    static func policy(cgroup: String, budget: String) -> String {
        """
        apiVersion: memwarden.io/v1
        kind: MemwardenPolicy
        rules:
          - name: scratch
            match:
              cgroup: \(cgroup)
            budget: \(budget)
            response:
              mode: throttle
            cooldowns:
              event: 1m
        """
    }

    @Test("budget tiers and recovery from a live cgroup's usage, with identity and forecast; a policy edit is picked up")
    func budgetTiersLive() throws {
        let memwarden = try AgentCommandTests.memwarden()
        guard let leaksim = ChildProcess.sibling("leaksim") else { throw TestFailure("leaksim not built next to the tests") }
        let cgroup = try ScratchCgroup()
        defer { cgroup.remove() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-budget-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policyFile = directory + "/policy.yaml"
        try Self.policy(cgroup: cgroup.path, budget: "100Mi").write(toFile: policyFile, atomically: true, encoding: .utf8)

        let agent = try ChildProcess(
            memwarden,
            ["run", "--listen", "127.0.0.1:0", "--policy", policyFile, "--state-file", directory + "/state.json", "--node-name", "test-node",
             "--stats-interval", "1"],
            stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)

        // leaksim serve, started inside the scratch cgroup
        let simulator = try ChildProcess(
            "/bin/sh", ["-c", #"echo $$ > "$1/cgroup.procs" && exec "$0" serve"#, leaksim, cgroup.directory],
            stdin: .pipe, stdout: .pipe)
        defer { simulator.signal(SIGKILL) }
        #expect(simulator.stdout?.readLine(deadline: deadline(seconds: 20))?.hasPrefix("ready") == true)
        func command(_ text: String) {
            simulator.send(text)
            let answer = simulator.stdout?.readLine(deadline: deadline(seconds: 60))
            #expect(answer?.hasPrefix("ok") == true, "leaksim answered \(String(describing: answer)) to \(text)")
        }

        var events: [[String: Any]] = []
        /// Reads the agent's events until one matches, or the deadline.
        func waitFor(_ what: String, seconds: Double, _ match: ([String: Any]) -> Bool) -> [String: Any]? {
            if let seen = events.first(where: match) { return seen }
            let end = deadline(seconds: seconds)
            while let line = agent.stdout?.readLine(deadline: end) {
                guard let event = AgentCommandTests.json(line) else {
                    Issue.record("not JSON: \(line)")
                    continue
                }
                events.append(event)
                if match(event) { return event }
            }
            Issue.record("no \(what) within \(seconds) s")
            return nil
        }
        func type(_ name: String) -> ([String: Any]) -> Bool {
            { $0["type"] as? String == name && $0["cgroup"] as? String == cgroup.path }
        }

        _ = waitFor("agent.started", seconds: 10) { $0["type"] as? String == "agent.started" }
        // 95 MiB in steps: each tier is crossed on the way up
        for size in [60, 15, 10, 10] { command("touch \(size)") }
        let warning = waitFor("budget.warning", seconds: 20, type("budget.warning"))
        let high = waitFor("budget.high", seconds: 20, type("budget.high"))
        let critical = waitFor("budget.critical", seconds: 20, type("budget.critical"))
        for event in [warning, high, critical].compactMap({ $0 }) {
            #expect(event["rule"] as? String == "scratch")
            #expect(event["budget_bytes"] as? Int == 100 << 20)
            #expect(event["node"] as? String == "test-node")
            #expect(event["scope"] as? String == "cgroup")
            let share = event["budget_share"] as? Double ?? 0
            #expect(share >= 0.7 && share <= 1.2, "share \(share)")
        }
        #expect((warning?["usage_bytes"] as? Int ?? 0) < (critical?["usage_bytes"] as? Int ?? 0))

        command("free")
        let recovered = waitFor("budget.recovered", seconds: 30, type("budget.recovered"))
        #expect(recovered?["rule"] as? String == "scratch")

        // an edit of the policy file reaches the running agent
        try Self.policy(cgroup: cgroup.path, budget: "1Gi").write(toFile: policyFile, atomically: true, encoding: .utf8)
        let reloaded = waitFor("policy.reloaded", seconds: 10) { $0["type"] as? String == "policy.reloaded" }
        #expect(reloaded?["file"] as? String == policyFile)
        // an invalid edit is rejected, and the agent keeps running on the last good policy
        try "apiVersion: memwarden.io/v1\nrules: [{name: x, budget: 12 apples}]\n".write(
            toFile: policyFile, atomically: true, encoding: .utf8)
        let rejected = waitFor("policy.rejected", seconds: 15) { $0["type"] as? String == "policy.rejected" }
        #expect(((rejected?["problems"] as? [String])?.first ?? "").contains(policyFile))

        simulator.signal(SIGKILL)
        agent.signal(SIGTERM)
        #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0)
        _ = waitFor("agent.stopping", seconds: 5) { $0["type"] as? String == "agent.stopping" }
        #expect(events.last?["type"] as? String == "agent.stopping", "agent.stopping is the last line")
    }
}
