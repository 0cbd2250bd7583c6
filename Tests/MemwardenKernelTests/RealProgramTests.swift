import Foundation
import Memwarden
import Testing

/// Programs nobody here wrote, under the real agent with its standard
/// thresholds: Debian's stress-ng. A bounded allocate/free churn must not be
/// flagged; a heap that grows without end inside a memory limit must be
/// flagged before the kernel's OOM killer meets it.
///
/// stress-ng's default `--malloc` is not the bounded churn it looks like:
/// with its 65,536 slots allocated and freed at random, the live set keeps
/// growing for as long as anyone watches (measured here: 150 MB to 1.5 GB in
/// 55 s), which is a leak at that rate. `--malloc-max 32` (its least) bounds it.
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
    @Test("stress-ng: a bounded malloc churn is never flagged; bigheap in a 4 GiB memory cgroup is flagged before its first OOM kill")
    func stressNGUnderTheAgent() throws {
        let stressNG = try #require(StressNG.path, "stress-ng is not installed (scripts/setup-tests installs it)")
        let memwarden = try AgentCommandTests.memwarden()
        let parent = try ScratchCgroup()
        let churn = try ScratchCgroup(in: parent, name: "malloc-churn")
        let heap = try ScratchCgroup(in: parent, name: "bigheap")
        defer {
            for group in [churn, heap] { Self.killAll(in: group) }
            churn.remove()
            heap.remove()
            parent.remove()
        }
        let limit: UInt64 = 4 << 30
        let limitFile = heap.hierarchy.version == .v1 ? "/memory.limit_in_bytes" : "/memory.max"
        try String(limit).write(toFile: heap.directory + limitFile, atomically: false, encoding: .utf8)

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
        // the smallest growth step keeps it near 200 MB/s here: the limit is ~20 s away
        let grower = try start(heap, ["--bigheap", "1", "--bigheap-growth", "4K", "--quiet"])
        defer { grower.signal(SIGKILL) }

        var events: [[String: Any]] = []
        var heapFlaggedAtOOMKills: Int?
        func concerns(_ event: [String: Any], _ group: ScratchCgroup) -> Bool {
            (event["cgroup"] as? String)?.hasPrefix(group.path) == true
        }
        // a minute of each under the agent, timed here: stress-ng's own --timeout is an alarm
        // signal, which children of the test runner may inherit blocked
        let end = deadline(seconds: 60)
        while monotonicNanoseconds() < end {
            guard let line = agent.stdout?.readLine(deadline: min(end, deadline(seconds: 0.5))) else { continue }
            guard line.contains("\"type\":\"leak."), let event = AgentCommandTests.json(line) else { continue }
            events.append(event)
            if heapFlaggedAtOOMKills == nil, event["type"] as? String == "leak.suspected", concerns(event, heap) {
                heapFlaggedAtOOMKills = Self.oomKills(heap)
            }
        }
        #expect(churner.exitCodeIfEnded() == nil, "stress-ng --malloc ended early (exit \(churner.exitCodeIfEnded() ?? 0)): it was meant to churn for the whole minute")

        let churnFlags = events.filter { $0["type"] as? String == "leak.suspected" && concerns($0, churn) }
        #expect(churnFlags.isEmpty, "the bounded malloc churn was flagged: \(churnFlags)")
        let kills = try #require(heapFlaggedAtOOMKills, "bigheap was never flagged (OOM kills so far: \(Self.oomKills(heap) ?? -1))")
        #expect(kills == 0, "bigheap was flagged only after \(kills) OOM kills")
    }

    /// The cgroup's OOM kills so far (v1 memory.oom_control, v2 memory.events).
    static func oomKills(_ group: ScratchCgroup) -> Int? {
        for file in ["/memory.oom_control", "/memory.events"] {
            guard let text = try? String(contentsOfFile: group.directory + file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2, fields[0] == "oom_kill" { return Int(fields[1]) }
            }
        }
        return nil
    }

    /// stress-ng forks its workers (and bigheap re-forks after each OOM kill):
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
