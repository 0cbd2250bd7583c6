import Foundation
import MemwardenAgent
import MemwardenIdentity
import MemwardenModel
import MemwardenTestSupport
import Testing

/// Debian programs the suite runs: where each is, and why a test cannot run
/// without them. In CI a missing one fails the test (scripts/setup-tests
/// installs them) instead of skipping.
struct RealPrograms: Sendable {
    let names: [String]
    /// The Debian packages that hold them.
    let packages: String

    static let stressNG = RealPrograms(names: ["stress-ng"], packages: "stress-ng")
    static let redis = RealPrograms(names: ["redis-server", "redis-benchmark"], packages: "redis-server redis-tools")

    /// The program's path, if installed.
    static func path(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/bin/\(name)"].first { access($0, X_OK) == 0 }
    }

    var installed: Bool { names.allSatisfy { Self.path($0) != nil } }
    var enabled: Bool { KernelAccess.isCI || (KernelAccess.enabled && installed) }
    var comment: Comment {
        if let reason = KernelAccess.unavailableReason { return Comment(rawValue: reason) }
        let what = names.joined(separator: " and ")
        return installed
            ? "\(what) and the kernel available"
            : "\(what) not installed (apt-get install \(packages); scripts/setup-tests does)"
    }
}

/// Programs nobody here wrote, under the real agent with its standard
/// thresholds: Debian's stress-ng and redis. A bounded allocate/free churn must not be
/// flagged, nor a cache once it is full. (stress-ng --bigheap, ~200 MB/s into a 4 GiB memory cgroup, was
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
@Suite(.serialized, .enabled(if: RealPrograms.stressNG.enabled, RealPrograms.stressNG.comment))
struct RealProgramTests {
    @Test("stress-ng: malloc churn, bounded or with the default 65,536 slots, is never flagged in a minute under the agent")
    func stressNGUnderTheAgent() throws {
        let stressNG = try #require(RealPrograms.path("stress-ng"), "stress-ng is not installed (scripts/setup-tests installs it)")
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

    /// A cache that fills fast and then sits still: redis-server with a 512 MiB `maxmemory`
    /// (LRU eviction) in a 1 GiB memory cgroup, filled by redis-benchmark with 1 KiB values
    /// (about 30 MB/s here). While it fills, the fast path may flag it (the limit is seconds
    /// away at that rate); once full, redis's memory does not move, the kernel sends nothing
    /// for it, and the suspicion must still clear (`ConfirmationStage.idle`: it stayed until
    /// redis exited before), and nothing may be flagged after.
    @Test("redis-server filling its maxmemory and then sitting still: any flag of the fill clears within two minutes, none after", .enabled(if: RealPrograms.redis.enabled, RealPrograms.redis.comment))
    func redisFillingItsMaxmemoryThenStill() throws {
        let server = try #require(RealPrograms.path("redis-server"), "redis-server is not installed (scripts/setup-tests installs it)")
        let benchmark = try #require(RealPrograms.path("redis-benchmark"), "redis-benchmark is not installed (scripts/setup-tests installs it)")
        let memwarden = try AgentCommandTests.memwarden()
        let parent = try ScratchCgroup()
        let group = try ScratchCgroup(in: parent, name: "redis")
        defer {
            Self.killAll(in: group)
            group.remove()
            parent.remove()
        }
        let limitFile = group.hierarchy.version == .v2 ? "memory.max" : "memory.limit_in_bytes"
        try String(1 << 30).write(toFile: group.directory + "/" + limitFile, atomically: false, encoding: .utf8)

        let agent = try ChildProcess(memwarden, ["run", "--listen", "127.0.0.1:0", "--stats-interval", "5"], stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        try AgentCommandTests.waitUntilAttached(agent)

        let port = try freePort()
        let redis = try ChildProcess(
            "/bin/sh",
            ["-c", #"echo $$ > "$1/cgroup.procs" && shift && exec "$0" "$@""#, server, group.directory,
             "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"],
            stdout: .pipe)
        defer { redis.signal(SIGKILL) }
        _ = try #require(
            redis.stdout?.readLine(until: deadline(seconds: 20)) { $0.contains("Ready to accept connections") },
            "redis-server on port \(port) did not say it was ready within 20 s")

        var events: [[String: Any]] = []
        func collect(until end: UInt64) {
            while monotonicNanoseconds() < end {
                guard let line = agent.stdout?.readLine(deadline: min(end, deadline(seconds: 0.5))) else { continue }
                guard line.contains("\"type\":\"leak."), let event = AgentCommandTests.json(line),
                    (event["cgroup"] as? String)?.hasPrefix(group.path) == true
                else { continue }
                events.append(event)
            }
        }
        // 700,000 random keys of 1 KiB: more than maxmemory holds, so it fills and then evicts
        let filler = try ChildProcess(
            benchmark, ["-p", "\(port)", "-t", "set", "-n", "700000", "-r", "100000000", "-d", "1024", "-c", "4", "-q"],
            stdout: .pipe)
        defer { filler.signal(SIGKILL) }
        let fillDeadline = deadline(seconds: 240)
        while filler.exitCodeIfEnded() == nil && monotonicNanoseconds() < fillDeadline {
            collect(until: min(fillDeadline, deadline(seconds: 1)))
        }
        #expect(filler.waitForExit(deadline: deadline(seconds: 1)) == 0, "redis-benchmark did not finish its 700,000 SETs within 240 s")
        let filled = monotonicNanoseconds()
        let duringFill = events.count
        // every flag cleared and half a minute of nothing new; at most two minutes (the clear
        // rule's minute, the idle timer's seconds and the kernel's heartbeat, with room)
        func uncleared() -> Int {
            events.count { $0["type"] as? String == "leak.suspected" } - events.count { $0["type"] as? String == "leak.cleared" }
        }
        let end = filled + 120_000_000_000
        var settled = filled + 30_000_000_000
        while monotonicNanoseconds() < end && (uncleared() > 0 || monotonicNanoseconds() < settled) {
            let seen = events.count
            collect(until: min(end, deadline(seconds: 1)))
            if events.count != seen { settled = max(settled, monotonicNanoseconds() + 30_000_000_000) }
        }
        let late = events[duringFill...].filter { $0["type"] as? String == "leak.suspected" }
        #expect(late.isEmpty, "flagged after the fill: \(late)")

        let suspected = events.filter { $0["type"] as? String == "leak.suspected" }
        let cleared = events.filter { $0["type"] as? String == "leak.cleared" }
        #expect(cleared.count == suspected.count, "a suspicion of the fill was never cleared: \(events)")
        #expect(cleared.allSatisfy { ($0["reasons"] as? [String]) == ["growth_stopped"] }, "\(cleared)")
        #expect(redis.exitCodeIfEnded() == nil, "redis-server ended (an OOM kill?)")
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
