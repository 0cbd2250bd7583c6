import Foundation
import MemwardenAgent
import MemwardenModel
import Testing

/// Programs nobody here wrote, under the real agent with its standard
/// thresholds: Debian's stress-ng. A bounded allocate/free churn must not be
/// flagged. (stress-ng --bigheap, ~200 MB/s into a 4 GiB memory cgroup, was
/// flagged before its first OOM kill in one run here and not in a CI run: a
/// heap that fills its limit within seconds of starting is an open gap,
/// docs/detectors.md.)
///
/// stress-ng's default `--malloc` (65,536 slots allocated and freed at
/// random) is churn whose live set keeps growing for minutes, slowing down
/// (1 GiB in 5 s, 5.5 GiB in 2.5 minutes here) while it frees 10–75 % of what
/// it takes: the fast path's churn rule must see the frees, and nothing
/// forecasts a limit, so it is not flagged in its first minute either.
/// `--malloc-max 32` (its least) bounds it.
/// Where stress-ng is, and why the suite cannot run without it.
enum StressNG {
    static let path: String? = ["/usr/bin/stress-ng", "/bin/stress-ng"].first { access($0, X_OK) == 0 }
    /// In CI a missing stress-ng fails the test (scripts/setup-tests installs it) instead of skipping.
    static var enabled: Bool { KernelAccess.isCI || (KernelAccess.enabled && path != nil) }
    static var comment: Comment {
        if let reason = KernelAccess.unavailableReason { return Comment(rawValue: reason) }
        return path == nil ? "stress-ng is not installed (apt-get install stress-ng; scripts/setup-tests does)" : "stress-ng and the kernel available"
    }
}

@Suite(.serialized, .enabled(if: StressNG.enabled, StressNG.comment))
struct RealProgramTests {
    @Test("stress-ng: malloc churn, bounded or with the default 65,536 slots, is never flagged in a minute under the agent")
    func stressNGUnderTheAgent() throws {
        let stressNG = try #require(StressNG.path, "stress-ng is not installed (scripts/setup-tests installs it)")
        let memwarden = try AgentCommandTests.memwarden()
        let parent = try ScratchCgroup()
        let churn = try ScratchCgroup(in: parent, name: "malloc-churn")
        let growing = try ScratchCgroup(in: parent, name: "malloc-default")
        defer {
            Self.killAll(in: churn)
            Self.killAll(in: growing)
            churn.remove()
            growing.remove()
            parent.remove()
        }
        let agent = try ChildProcess(memwarden, ["run", "--listen", "127.0.0.1:0", "--stats-interval", "5"], stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)

        func start(_ group: ScratchCgroup, _ arguments: [String]) throws -> ChildProcess {
            try ChildProcess(
                "/bin/sh", ["-c", #"echo $$ > "$1/cgroup.procs" && shift && exec "$0" "$@""#, stressNG, group.directory] + arguments,
                stdout: .pipe)
        }
        let churner = try start(churn, ["--malloc", "1", "--malloc-bytes", "64M", "--malloc-max", "32", "--quiet"])
        defer { churner.signal(SIGKILL) }
        // the command of issue 12, as its users run it
        let defaultChurner = try start(growing, ["--malloc", "1", "--malloc-bytes", "64M", "--quiet"])
        defer { defaultChurner.signal(SIGKILL) }

        var events: [[String: Any]] = []
        func concerns(_ event: [String: Any], _ group: ScratchCgroup) -> Bool {
            (event["cgroup"] as? String)?.hasPrefix(group.path) == true
        }
        // a minute under the agent, timed here: stress-ng's own --timeout is an alarm
        // signal, which children of the test runner may inherit blocked
        let end = deadline(seconds: 60)
        while monotonicNanoseconds() < end {
            guard let line = agent.stdout?.readLine(deadline: min(end, deadline(seconds: 0.5))) else { continue }
            guard line.contains("\"type\":\"leak."), let event = AgentCommandTests.json(line) else { continue }
            events.append(event)
        }
        #expect(churner.exitCodeIfEnded() == nil, "stress-ng --malloc ended early (exit \(churner.exitCodeIfEnded() ?? 0)): it was meant to churn for the whole minute")

        #expect(defaultChurner.exitCodeIfEnded() == nil, "stress-ng --malloc (default slots) ended early (exit \(defaultChurner.exitCodeIfEnded() ?? 0))")

        let churnFlags = events.filter { $0["type"] as? String == "leak.suspected" && concerns($0, churn) }
        #expect(churnFlags.isEmpty, "the bounded malloc churn was flagged: \(churnFlags)")
        let defaultFlags = events.filter { $0["type"] as? String == "leak.suspected" && concerns($0, growing) }
        #expect(defaultFlags.isEmpty, "stress-ng --malloc with its default slots was flagged: \(defaultFlags)")
    }

    /// stress-ng forks its workers:
    /// killing the first process leaves them, so kill what the group holds
    /// until it holds nothing.
    static func killAll(in group: ScratchCgroup) {
        let end = deadline(seconds: 10)
        while monotonicNanoseconds() < end {
            let text = (try? String(contentsOfFile: group.directory + "/cgroup.procs", encoding: .utf8)) ?? ""
            let pids = text.split(separator: "\n").compactMap { Int32($0) }
            if pids.isEmpty { return }
            pids.forEach { kill($0, SIGKILL) }
            usleep(20_000)
        }
    }
}
