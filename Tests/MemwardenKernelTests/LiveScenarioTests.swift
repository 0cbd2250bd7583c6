import Foundation
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport
import Testing

/// The leak simulators under the real agent: the kernel's detectors on the real
/// tracepoint. One agent (`memwarden run`) and one recorder (`memwarden
/// record --verdicts`) watch all scenarios at once, each scenario in its own
/// memory cgroup, so the whole set takes about as long as the longest one.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct LiveScenarioTests {
    static let leaks = ["steady", "fast", "staircase", "sawtooth-leak", "fragmentation", "shmem", "children"]
    static let controls = ["stable", "sawtooth", "warmup", "step", "filecache", "spike", "periodic", "malloc-churn"]

    struct Running {
        let name: String
        let cgroup: ScratchCgroup
        let process: ChildProcess
    }

    @Test("every leak simulator is flagged, no control is, and the kernel's verdicts equal replay's on the recorded trace")
    func scenariosUnderTheAgent() throws {
        guard let leaksim = ChildProcess.sibling("leaksim") else { throw TestFailure("leaksim not built next to the tests") }
        let memwarden = try AgentCommandTests.memwarden()
        let parent = try ScratchCgroup()
        var groups: [ScratchCgroup] = []
        defer {
            groups.forEach { $0.remove() }
            parent.remove()
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-live-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let trace = directory + "/trace.jsonl", kernelVerdicts = directory + "/kernel-verdicts.jsonl"

        // the simulators compress time; the accelerated profile compresses the detectors' alike
        let profile = ["--detector-profile", "accelerated"]
        let agent = try ChildProcess(memwarden, ["run", "--listen", "127.0.0.1:0", "--stats-interval", "5"] + profile, stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        let recorder = try ChildProcess(
            memwarden, ["record", "--duration", "600", "--out", trace, "--verdicts", kernelVerdicts, "--cgroup", parent.path] + profile,
            stderr: .pipe)
        defer { recorder.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)
        try AgentCommandTests.waitUntilAttached(recorder)

        // Each scenario starts inside its cgroup: a shell joins it and execs
        // leaksim, so the process's detectors start (at exec) where its trace does.
        var running: [Running] = []
        for name in Self.leaks + Self.controls {
            let cgroup = try ScratchCgroup(in: parent, name: name)
            groups.append(cgroup)
            let process = try ChildProcess(
                "/bin/sh", ["-c", #"echo $$ > "$1/cgroup.procs" && shift && exec "$0" "$@""#, leaksim, cgroup.directory, name],
                stdout: .pipe)
            running.append(Running(name: name, cgroup: cgroup, process: process))
        }
        defer { running.forEach { $0.process.signal(SIGKILL) } }

        // Read the agent's output while they run (a pipe nobody reads would fill).
        var events: [[String: Any]] = []
        func readAgent(until end: UInt64) {
            while let line = agent.stdout?.readLine(deadline: min(end, deadline(seconds: 0.2))) {
                if line.contains("\"type\":\"leak."), let event = AgentCommandTests.json(line) { events.append(event) }
            }
        }
        let end = deadline(seconds: 150)
        while running.contains(where: { $0.process.exitCodeIfEnded() == nil }) && monotonicNanoseconds() < end {
            readAgent(until: deadline(seconds: 0.5))
        }
        for scenario in running {
            #expect(scenario.process.exitCodeIfEnded() == 0, "leaksim \(scenario.name) did not finish cleanly within 150 s")
        }
        readAgent(until: deadline(seconds: 3))
        agent.signal(SIGTERM)
        recorder.signal(SIGTERM)
        #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0)
        #expect(recorder.waitForExit(deadline: deadline(seconds: 30)) == 0)
        readAgent(until: deadline(seconds: 2))

        // Verdicts, from the agent's own output
        for scenario in running {
            let pid = Int(scenario.process.pid)
            let suspected = events.filter { event in
                event["type"] as? String == "leak.suspected"
                    && ((event["scope"] as? String == "process" && event["pid"] as? Int == pid)
                        || (event["scope"] as? String == "cgroup" && event["cgroup"] as? String == scenario.cgroup.path))
            }
            if Self.leaks.contains(scenario.name) {
                #expect(!suspected.isEmpty, "leak scenario \(scenario.name) was not flagged")
            } else {
                #expect(suspected.isEmpty, "control \(scenario.name) was flagged: \(suspected)")
            }
        }

        // Equivalence: replay of the recorded trace gives the kernel's verdict changes.
        let replay = try ChildProcess(memwarden, ["replay", "--verdicts", trace] + profile, stdout: .pipe, stderr: .pipe)
        var replayed: [String] = []
        while let line = replay.stdout?.readLine(deadline: deadline(seconds: 60)) {
            if line.contains("\"type\":\"verdict\"") { replayed.append(line) }
        }
        #expect(replay.waitForExit(deadline: deadline(seconds: 30)) == 0)
        let kernel = try String(contentsOfFile: kernelVerdicts, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(!kernel.isEmpty, "the kernel reported no verdict changes for the scenarios")
        // Per target: processes of different targets interleave differently in the
        // ring (CPUs race) than in replay, but each target's sequence is fixed.
        // The children scenario's cgroup is left out: several processes on two
        // CPUs move one aggregate in an order the ring does not keep.
        let childrenCgroup = running.first { $0.name == "children" }!.cgroup.path
        func byTarget(_ lines: [String]) -> [String: [String]] {
            var targets: [String: [String]] = [:]
            for line in lines {
                guard let verdict = AgentCommandTests.json(line) else { continue }
                let key = "\(verdict["scope"] ?? "")|\(verdict["pid"] ?? "")|\(verdict["cgroup"] ?? "")"
                if verdict["cgroup"] as? String == childrenCgroup { continue }
                targets[key, default: []].append(line)
            }
            return targets
        }
        let kernelTargets = byTarget(kernel), replayTargets = byTarget(replayed)
        // at least each single-process leak, as a process (its cgroup's verdicts come on top)
        #expect(kernelTargets.count >= Self.leaks.count - 1, "verdicts for only \(kernelTargets.count) targets")
        #expect(kernelTargets.keys.sorted() == replayTargets.keys.sorted())
        for (target, lines) in kernelTargets {
            #expect(lines == replayTargets[target] ?? [], "verdicts differ for \(target)")
        }
    }
}
