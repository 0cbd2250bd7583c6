import Foundation
import MemwardenAgent
import MemwardenDetection
import MemwardenModel
import MemwardenTestSupport
import Testing

/// The `memwarden` executable itself, as a user runs it.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct AgentCommandTests {
    static func memwarden() throws -> String {
        guard let path = ChildProcess.sibling("memwarden") else { throw TestFailure("memwarden not built next to the tests") }
        return path
    }

    static func json(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    /// Reads the agent's stderr until it says the program is attached.
    static func waitUntilAttached(_ agent: ChildProcess) throws {
        guard agent.stderr?.readLine(until: deadline(seconds: 60), where: { $0.contains("kernel program attached") }) != nil
        else { throw TestFailure("the agent did not attach its program within 60 s") }
    }

    @Test("run --samples prints samples for a process growing 200 MiB, stats with nonzero counters, and exits 0 on SIGTERM")
    func runReportsGrowth() throws {
        let agent = try ChildProcess(try Self.memwarden(), ["run", "--samples", "--listen", "127.0.0.1:0", "--stats-interval", "1"], stdout: .pipe, stderr: .pipe)
        try Self.waitUntilAttached(agent)
        let simulator = try Simulator()
        for _ in 0..<4 { try simulator.run("touch 50") }
        // the growth is done (each touch answered): one more stats reading, then stop
        var pending: [String] = []
        let seen = agent.stdout?.readLine(until: deadline(seconds: 30)) { line in
            pending.append(line)
            return line.contains(#""type":"stats""#)
        }
        #expect(seen != nil, "no stats line within 30 s after the growth")
        agent.signal(SIGTERM)
        var samples: [[String: Any]] = []
        var stats: [[String: Any]] = []
        while let line = pending.isEmpty ? agent.stdout?.readLine(deadline: deadline(seconds: 30)) : pending.removeFirst() {
            let object = try #require(Self.json(line), "not a JSON object: \(line)")
            #expect(object["type"] is String && object["time"] is String, "line without type/time: \(line)")
            if object["type"] as? String == "sample", object["pid"] as? Int == Int(simulator.pid) { samples.append(object) }
            if object["type"] as? String == "stats" { stats.append(object) }
        }
        #expect(agent.waitForExit() == 0)
        simulator.kill()
        let largest = samples.compactMap { $0["anon"] as? Int }.max() ?? 0
        #expect(largest >= 199 << 20, "largest anon sample \(largest)")
        #expect(samples.count <= 200 + 20, "\(samples.count) samples for 200 MiB")
        let last = try #require(stats.last, "no stats line")
        #expect((last["events"] as? Int ?? 0) > 0)
        #expect((last["process_samples"] as? Int ?? 0) > 0)
        #expect(last["ringbuf_drops"] as? Int == 0)
        // the confirmation stage reports its bounded memory: a fixed-size history per target it saw
        let watched = try #require(last["confirmation_targets"] as? Int, "no confirmation_targets in \(last)")
        #expect(watched >= 1)
        #expect(last["confirmation_history_bytes"] as? Int == watched * GrowthHistory.bytesPerTarget)
        let time = try #require(samples.first?["time"] as? String)
        #expect(time.hasSuffix("Z") && time.count == 24, "not RFC 3339 with ms: \(time)")
    }

    /// Issue 16's "maps full": a process map of 16 entries and 40 live processes that each
    /// touch memory. The kernel's LRU map evicts (at least 40 − 16, since none of them exits), the
    /// agent counts it in its stats, and a process that starts growing after the map is full is
    /// still followed: it takes an entry and its samples come through.
    @Test("with the process map full, evictions are counted and a process growing afterwards is still reported")
    func fullProcessMapEvictsAndCounts() throws {
        var simulators: [Simulator] = []
        defer { simulators.forEach { $0.kill() } }
        try Self.fillMap(
            MapUnderTest(option: "--max-processes", bound: 16, evictions: "process_evictions", tracked: "processes_tracked", sample: "sample"),
            targets: 40
        ) { mib in
            let simulator = try Simulator()
            simulators.append(simulator)
            try simulator.run("touch \(mib)")
            return ("pid", Int(simulator.pid))
        }
    }

    /// The same for the cgroup map: 4 entries, 10 memory cgroups of this test's own, each with a
    /// process touching memory (none ends while the map is full, so at least 10 − 4 evictions), and
    /// an eleventh cgroup growing afterwards still gets its aggregate reported.
    @Test("with the cgroup map full, evictions are counted and a cgroup growing afterwards is still reported")
    func fullCgroupMapEvictsAndCounts() throws {
        let parent = try ScratchCgroup()
        var groups: [ScratchCgroup] = []
        var simulators: [Simulator] = []
        defer {
            simulators.forEach { $0.kill() }
            groups.forEach { $0.remove() }
            parent.remove()
        }
        try Self.fillMap(
            MapUnderTest(option: "--max-cgroups", bound: 4, evictions: "cgroup_evictions", tracked: "cgroups_tracked", sample: "cgroup_sample"),
            targets: 10
        ) { mib in
            let group = try ScratchCgroup(in: parent, name: "map-\(groups.count)")
            groups.append(group)
            let simulator = try Simulator()
            simulators.append(simulator)
            try simulator.run("cgroup \(group.directory)")
            try simulator.run("touch \(mib)")
            return ("cgroup_id", Int(group.inode))
        }
    }

    /// A kernel map and the stats fields and sample type that tell about it.
    struct MapUnderTest {
        var option: String
        var bound: Int
        var evictions: String
        var tracked: String
        var sample: String
    }

    /// Runs the agent with `map` bounded, grows `targets` live targets by 4 MiB each (`grow`
    /// returns the sample field and value naming the target), waits for the stats to count the
    /// evictions that forced, then grows one more by 64 MiB and waits for its samples.
    static func fillMap(_ map: MapUnderTest, targets: Int, grow: (Int) throws -> (field: String, id: Int)) throws {
        let agent = try ChildProcess(
            try memwarden(), ["run", "--samples", "--listen", "127.0.0.1:0", "--stats-interval", "1", map.option, String(map.bound)],
            stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        try waitUntilAttached(agent)
        for _ in 0..<targets {
            _ = try grow(4)
            // keep the pipe moving: the agent prints every sample of the machine
            while agent.stdout?.readLine(deadline: deadline(seconds: 0.01)) != nil {}
        }
        var evictions = 0
        let counted = agent.stdout?.readLine(until: deadline(seconds: 30)) { line in
            guard line.contains(#""type":"stats""#), let stats = json(line) else { return false }
            evictions = stats[map.evictions] as? Int ?? 0
            return evictions >= targets - map.bound && (stats[map.tracked] as? Int ?? .max) <= map.bound
        }
        #expect(
            counted != nil,
            "within 30 s, no stats line counted \(targets - map.bound) or more \(map.evictions) with at most \(map.bound) \(map.tracked) (last count \(evictions))")

        let late = try grow(64)
        var largest = 0
        let reported = agent.stdout?.readLine(until: deadline(seconds: 30)) { line in
            guard line.contains("\"type\":\"\(map.sample)\""), let sample = json(line), sample[late.field] as? Int == late.id else { return false }
            largest = max(largest, sample["anon"] as? Int ?? 0)
            return largest >= 63 << 20
        }
        #expect(reported != nil, "\(late.field) \(late.id), grown 64 MiB after the map filled, was not reported within 30 s (largest anon \(largest))")
        #expect(agent.exitCodeIfEnded() == nil, "the agent ended")
    }

    @Test("SIGTERM detaches everything and exits 0, even with nobody reading stdout")
    func sigtermExitsCleanly() throws {
        let agent = try ChildProcess(try Self.memwarden(), ["run", "--samples", "--listen", "127.0.0.1:0", "--stats-interval", "1"], stdout: .pipe, stderr: .pipe)
        try Self.waitUntilAttached(agent)
        let stats = agent.stdout?.readLine(until: deadline(seconds: 10)) { $0.contains("\"type\":\"stats\"") }
        #expect(stats != nil)
        // stop reading: 256 MiB of growth is ~512 lines, far more than a 64 KiB pipe holds
        let simulator = try Simulator()
        defer { simulator.kill() }
        try simulator.run("touch 256")
        let stalled = agent.stderr?.readLine(until: deadline(seconds: 15)) { $0.contains("stdout is not being read") }
        #expect(stalled != nil, "the agent did not report its stdout stalled within 15 s")
        agent.signal(SIGTERM)
        let code = agent.waitForExit(deadline: deadline(seconds: 30))
        #expect(code == 0, "the agent did not exit 0 within 30 s of SIGTERM (exit: \(String(describing: code)))")
        // what it could write is whole lines, and the drops are counted where they can be read
        var lines = 0
        while let line = agent.stdout?.readLine(deadline: deadline(seconds: 5)) {
            #expect(Self.json(line) != nil, "a cut or interleaved line: \(line)")
            lines += 1
        }
        #expect(lines > 0)
        // what could not be written by the end of the shutdown flush is counted and said
        let summary = agent.stderr?.readLine(until: deadline(seconds: 5)) { $0.contains("dropped_lines=") }
        let count = summary.flatMap { $0.split(separator: " ").first { $0.hasPrefix("dropped_lines=") } }
            .flatMap { Int($0.dropFirst("dropped_lines=".count)) }
        #expect((count ?? 0) > 0, "no drop count on stderr: \(String(describing: summary))")
    }

    @Test("SIGTERM while the program loads still stops the agent: exit 0, agent.stopping")
    func sigtermDuringTheLoadStopsCleanly() throws {
        let agent = try ChildProcess(try Self.memwarden(), ["run", "--listen", "127.0.0.1:0"], stdout: .pipe, stderr: .pipe)
        defer { agent.signal(SIGKILL) }
        // the load has begun once the agent holds a BPF map; it is not over while no program
        // is attached (the verifier takes a while with the detectors): signal in between
        let fds = "/proc/\(agent.pid)/fd"
        let loading = deadline(seconds: 30)
        var holdsMap = false
        while !holdsMap && monotonicNanoseconds() < loading {
            let links = (try? FileManager.default.contentsOfDirectory(atPath: fds)) ?? []
            holdsMap = links.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: fds + "/" + $0)) == "anon_inode:bpf-map" }
            if !holdsMap { usleep(500) }
        }
        #expect(holdsMap, "the agent created no BPF map within 30 s")
        agent.signal(SIGTERM)
        let status = agent.waitForExit(deadline: deadline(seconds: 60))
        #expect(status == 0, "exit status \(String(describing: status))")
        var types: [String] = []
        while let line = agent.stdout?.readLine(deadline: deadline(seconds: 5)) {
            if let type = Self.json(line)?["type"] as? String { types.append(type) }
        }
        #expect(types.last == "agent.stopping", "events: \(types)")
    }

    @Test("record writes a valid trace in the documented format, filtered by pid")
    func recordWritesTrace() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-trace-\(getpid()).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let simulator = try Simulator()
        defer { simulator.kill() }
        let recorder = try ChildProcess(
            try Self.memwarden(), ["record", "--duration", "600", "--out", path, "--pid", "\(simulator.pid)"], stderr: .pipe)
        try Self.waitUntilAttached(recorder)
        try simulator.run("touch 32")
        try simulator.run("shm 8")
        // both answered: their samples are in the ring buffer, which SIGTERM drains
        recorder.signal(SIGTERM)
        #expect(recorder.waitForExit(deadline: deadline(seconds: 30)) == 0)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(text.hasSuffix("\n"))
        #expect(lines.count >= 32)
        var previous = -1.0
        for line in lines {
            let object = try #require(Self.json(String(line)), "not JSON: \(line)")
            let t = try #require(object["t"] as? Double ?? (object["t"] as? Int).map(Double.init), "t missing: \(line)")
            #expect(t >= previous, "t went backwards: \(line)")
            previous = t
            #expect(object["pid"] as? Int == Int(simulator.pid))
            #expect(object["comm"] as? String == "leaksim")
            #expect((object["cgroup"] as? String)?.hasPrefix("/") == true, "cgroup: \(line)")
            for field in ["anon", "file", "shmem", "swap", "vsz"] {
                #expect((object[field] as? Int ?? -1) >= 0, "\(field) missing or negative: \(line)")
            }
        }
        let shmem = lines.compactMap { Self.json(String($0))?["shmem"] as? Int }.max() ?? 0
        #expect(shmem >= 7 << 20, "shmem growth not recorded: \(shmem)")
    }

    @Test("without privileges, run exits 2 with one line naming what is missing")
    func unprivilegedExitsTwo() throws {
        // setpriv drops to nobody with no capabilities
        let agent = try ChildProcess(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", try Self.memwarden(), "run"],
            stdout: .pipe, stderr: .pipe)
        #expect(agent.waitForExit() == 2)
        let message = agent.stderr?.readLine(deadline: deadline(seconds: 5)) ?? ""
        #expect(message.contains("CAP_BPF") && message.contains("CAP_PERFMON"), "message: \(message)")
        #expect(agent.stderr?.readLine(deadline: deadline(seconds: 1)) == nil, "more than one line on stderr")
    }

    @Test("on a kernel whose BTF cannot be parsed, run exits 2 with one line saying the program cannot load and why")
    func unusableKernelBTFExitsTwo() throws {
        // the kernel itself cannot be swapped here, so its BTF is: random bytes bind-mounted over
        // /sys/kernel/btf/vmlinux in a private mount namespace make libbpf's load fail for real
        // (the preflight sees a readable file), as on a kernel built without usable BTF
        let garbage = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-btf-\(getpid())")
        var bytes = [UInt8](repeating: 0, count: 4096)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        try Data(bytes).write(to: garbage)
        defer { try? FileManager.default.removeItem(at: garbage) }
        let agent = try ChildProcess(
            "/usr/bin/unshare",
            ["--mount", "--propagation", "private", "/bin/sh", "-c",
             "mount --bind \"$0\" /sys/kernel/btf/vmlinux && exec \"$1\" run --listen 127.0.0.1:0",
             garbage.path, try Self.memwarden()],
            stdout: .pipe, stderr: .pipe)
        #expect(agent.waitForExit() == 2)
        var reason: String?
        while let line = agent.stderr?.readLine(deadline: deadline(seconds: 5)) {
            if line.hasPrefix("memwarden: ") { reason = line; break }
        }
        let line = try #require(reason, "no 'memwarden: ' line on stderr")
        #expect(line.contains("cannot load") && line.contains("/sys/kernel/btf/vmlinux"), "reason: \(line)")
        // libbpf's log follows, indented under the reason; log lines of the shutdown may come
        // too, but no second reason
        var after: [String] = []
        while let next = agent.stderr?.readLine(deadline: deadline(seconds: 1)) { after.append(next) }
        #expect(after.contains { $0.hasPrefix("  libbpf: ") }, "no indented libbpf log: \(after)")
        #expect(!after.contains { $0.hasPrefix("memwarden: ") }, "a second reason: \(after)")
    }

    @Test("a --writable-cgroup that is not an absolute cgroup path stops run before anything loads, naming it")
    func relativeWritableCgroupIsRefused() throws {
        let agent = try ChildProcess(
            try Self.memwarden(), ["run", "--writable-cgroup", "kubepods.slice", "--duration", "1"], stdout: .pipe, stderr: .pipe)
        #expect(agent.waitForExit() == 64)
        let message = agent.stderr?.readLine(deadline: deadline(seconds: 5)) ?? ""
        #expect(message.contains("--writable-cgroup kubepods.slice") && message.contains("starting with '/'"), "message: \(message)")
    }
}
