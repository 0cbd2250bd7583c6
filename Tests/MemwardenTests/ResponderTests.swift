import Foundation
import MemwardenIdentity
import MemwardenModel
import MemwardenResponse
import Testing

/// The responder against cgroupfs-shaped temp trees: step-down, back-off,
/// restores, crash recovery, external writes, dry-run, the unsupported paths.
@Suite struct ResponderTests {
    static let page: UInt64 = 4096
    let tree: FakeCgroupTree
    let clock = TestClock()
    let statePath: String

    init() throws {
        tree = try FakeCgroupTree()
        statePath = tree.root + "/state/state.json"
    }

    func responder(dryRun: Bool = false, version: CgroupHierarchy.Version? = .v2, writable: [String] = []) -> Responder {
        fakeTreeResponder(
            tree: tree, statePath: statePath, clock: clock, pageSize: Self.page, dryRun: dryRun, version: version,
            writableSubtrees: writable)
    }

    static func policy(
        mode: ResponseMode = .throttle, minimum: UInt64 = 100 * mebibyte, rule: String = "leaky"
    ) -> TargetPolicy {
        // confirmation is tested on its own below: these tests start on the first tick
        TargetPolicy(
            rule: rule, budget: .limit, mode: mode, throttle: ThrottleSettings(minimumBytes: minimum, minSuspected: .zero))
    }

    /// A verdict the default policy lets throttle (confidence ≥ 0.8, past its grace).
    static let confirmed = LeakVerdict(confidence: 0.9)

    @discardableResult
    /// A v2 group of 900 MiB in use (800 MiB anon, 100 MiB page cache) under a 1 GiB memory.max.
    func leakingGroup(_ path: String = "/kubepods/pod1/app", high: String = "max") throws -> String {
        try tree.v2Group(
            path, current: 900 * mebibyte, max: String(1024 * mebibyte), high: high,
            stat: ["anon": 800 * mebibyte, "file": 100 * mebibyte, "active_file": 60 * mebibyte, "inactive_file": 40 * mebibyte])
    }

    /// Suspects a leak in the cgroup at the critical tier and runs one tick.
    func startThrottle(_ r: inout Responder, _ path: String, policy: TargetPolicy = Self.policy()) -> [AgentEvent] {
        let target = cgroupTarget(path)
        var events = r.leakSuspected(target, policy: policy, verdict: Self.confirmed)
        events += r.budgetTier(.critical, target: target, policy: policy)
        events += r.tick()
        return events
    }

    func stateRecords() -> [ResponseStateRecord] { loadedStateRecords(statePath) }

    @Test("throttle starts at usage, records the original first, steps down 1 % per interval to the floor, then caps growth")
    func stepDownToFloor() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        let started = startThrottle(&r, path)
        let start = try #require(started.first { $0.type == .responseThrottle }?.response)
        #expect(start.memoryHighBefore == nil)  // was "max"
        #expect(start.memoryHighAfter == 900 * mebibyte)
        // floor: usage less the page cache (800 MiB) beats the 100 MiB minimum
        #expect(start.floorBytes == 800 * mebibyte)
        #expect(try tree.high(path) == 900 * mebibyte)
        let record = try #require(stateRecords().first)
        #expect(record.original == "max")
        // recorded before the write, as the value about to be written
        #expect(record.pending == String(900 * mebibyte) && record.written == nil)

        // within the interval nothing moves
        clock.advance(seconds: 5)
        #expect(r.tick().isEmpty)
        #expect(try tree.high(path) == 900 * mebibyte)

        var previous = 900 * mebibyte
        var steps = 0
        var sawFloor = false
        for _ in 0..<30 {
            clock.advance(seconds: 6)
            for event in r.tick() {
                if event.type == .responseSkipped, event.response?.reason == "below_floor" { sawFloor = true }
                guard event.type == .responseThrottle, let details = event.response else { continue }
                let expected = max(800 * mebibyte, UInt64(Double(previous) * 0.99) / Self.page * Self.page)
                #expect(details.reason == "probe")
                #expect(details.memoryHighBefore == previous)
                #expect(details.memoryHighAfter == expected)
                #expect(try tree.high(path) == expected)
                // each save holds the last value written and the next one: whatever a crash leaves is recognised
                let saved = try #require(stateRecords().first)
                #expect(saved.written == String(previous) && saved.pending == String(expected))
                previous = expected
                steps += 1
            }
        }
        // 900 → 800 MiB at 1 % a step takes 12 steps; then the floor holds and is said once
        #expect(steps == 12)
        #expect(previous == 800 * mebibyte)
        #expect(sawFloor)
        #expect(try tree.high(path) == 800 * mebibyte)

        // the leak pushes on (anon 850 MiB, the cache gone): memory that cannot be reclaimed outgrew
        // memory.high. Following that floor up would let the leak run at its own pace; instead a
        // growth cap takes over a page above it (GrowthCapResponderTests has the rest)
        try tree.write(path, "memory.current", "\(850 * mebibyte)\n")
        try tree.write(path, "memory.stat", "anon \(850 * mebibyte)\nactive_file 0\ninactive_file 0\n")
        clock.advance(seconds: 6)
        let capped = try #require(r.tick().first { $0.type == .responseThrottle }?.response)
        #expect(capped.reason == "growth_cap")
        #expect(capped.memoryHighAfter == 850 * mebibyte + Self.page && capped.floorBytes == 850 * mebibyte)
        #expect(capped.growthCap?.rateBytesPerSecond == 128 << 10)
        #expect(try tree.high(path) == 850 * mebibyte + Self.page)
    }

    @Test("only a confirmed leak is throttled: low confidence, a target in its grace and a young suspicion wait")
    func confirmationGates() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        // the built-in gates: confidence 0.8, suspected for 2 minutes
        let policy = TargetPolicy(rule: "leaky", budget: .limit, mode: .throttle)
        let target = cgroupTarget(path)
        func reasons(_ events: [AgentEvent]) -> [String] { events.compactMap { $0.response?.reason } }

        var events = r.leakSuspected(target, policy: policy, verdict: LeakVerdict(confidence: 0.6))
        events += r.budgetTier(.critical, target: target, policy: policy)
        events += r.tick()
        #expect(reasons(events) == ["leak_unconfirmed"])
        #expect(try tree.high(path) == nil)

        // confident now, but the target is still young
        clock.advance(seconds: 200)
        #expect(r.leakUpdated(target, policy: policy, verdict: LeakVerdict(confidence: 0.95, inGrace: true)).isEmpty)
        #expect(!r.tick().contains { $0.type == .responseThrottle })
        #expect(try tree.high(path) == nil)

        // past its grace and suspected for over 2 minutes: throttled, and the event names the verdict
        _ = r.leakUpdated(target, policy: policy, verdict: LeakVerdict(confidence: 0.95))
        let throttle = try #require(r.tick().first { $0.type == .responseThrottle }?.response)
        let verdict = try #require(throttle.verdict)
        #expect(verdict.target == target.key)
        #expect(verdict.confidence == 0.95)
        #expect(throttle.memoryHighAfter == 900 * mebibyte)
    }

    @Test("a suspicion younger than throttle.minSuspected waits however confident")
    func minimumSuspectedDuration() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        let policy = TargetPolicy(
            rule: "leaky", budget: .limit, mode: .throttle, throttle: ThrottleSettings(minSuspected: .seconds(300)))
        let target = cgroupTarget(path)
        _ = r.leakSuspected(target, policy: policy, verdict: LeakVerdict(confidence: 1))
        _ = r.budgetTier(.critical, target: target, policy: policy)
        clock.advance(seconds: 299)
        #expect(!r.tick().contains { $0.type == .responseThrottle })
        clock.advance(seconds: 2)
        let throttle = try #require(r.tick().first { $0.type == .responseThrottle }?.response)
        #expect(throttle.verdict?.suspectedSince == clock.reading().epochNanoseconds - 301_000_000_000)
        #expect(throttle.verdict?.confidence == 1)
    }

    @Test("pressure over the target backs off at once, by (integral/target/20)² of the value")
    func backOffOnPressure() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        // a lower floor, so the back-off is not the floor's doing
        var r = responder()
        _ = startThrottle(&r, path, policy: Self.policy())
        try tree.write(path, "memory.stat", "anon 300000000\nactive_file 600000000\ninactive_file 0\n")
        clock.advance(seconds: 6)
        _ = r.tick()  // one probe down
        let probed = try #require(try tree.high(path))
        #expect(probed < 900 * mebibyte)

        // 30 ms of stall in one second: 3× the 10 ms target
        try tree.setPressure(path, total: 30_000)
        clock.advance(seconds: 1)
        let events = r.tick()
        let backoff = try #require(events.first { $0.type == .responseThrottle }?.response)
        #expect(backoff.reason == "backoff")
        #expect(backoff.pressureMicroseconds == 30_000)
        let share = MemoryHighController.backoffShare(integral: 30_000, settings: ThrottleSettings())
        #expect(abs(share - 0.0225) < 1e-9)  // (3/20)² × 100 %
        let expected = UInt64(Double(probed) * 1.0225) / Self.page * Self.page
        #expect(expected < 1024 * mebibyte)
        #expect(backoff.memoryHighAfter == expected)
        #expect(try tree.high(path) == expected)

        // a back-off never goes above memory.max
        try tree.setPressure(path, total: 10_000_000)
        clock.advance(seconds: 1)
        _ = r.tick()
        #expect(try tree.high(path) == 1024 * mebibyte)
    }

    enum Ending: String, CaseIterable, Sendable {
        case leakCleared = "leak_cleared"
        case targetGone = "target_gone"
        case policyChanged = "policy_changed"
        case shutdown = "agent_stopping"
    }

    @Test(
        "every ending writes the original back exactly and empties the state file",
        arguments: Ending.allCases, ["max", "1048571904"])
    func restores(ending: Ending, original: String) throws {
        defer { tree.remove() }
        let path = "/system.slice/app.service"
        try leakingGroup(path, high: original)
        var r = responder()
        let policy = Self.policy()
        _ = startThrottle(&r, path, policy: policy)
        clock.advance(seconds: 6)
        _ = r.tick()
        #expect(try tree.high(path)! < 900 * mebibyte)
        #expect(stateRecords().count == 1)

        let target = cgroupTarget(path)
        let events: [AgentEvent] =
            switch ending {
            case .leakCleared: r.leakCleared(target)
            case .targetGone: r.targetGone(target)
            case .policyChanged: r.policyChanged(target, policy: Self.policy(mode: .observe, rule: "relaxed"))
            case .shutdown: r.restoreAll()
            }
        let restore = try #require(events.first { $0.type == .responseRestore })
        #expect(restore.response?.reason == ending.rawValue)
        #expect(restore.response?.memoryHighAfter == MemoryKnob(parsing: original)?.bytes)
        #expect(restore.response?.rule == "leaky")
        #expect(try tree.read(path, "memory.high") == original)
        #expect(stateRecords().isEmpty)
        #expect(r.throttled.isEmpty)
    }

    @Test("a restart after a crash (kill -9) restores every recorded original, including a write in flight")
    func recoveryAfterCrash() throws {
        defer { tree.remove() }
        let first = "/kubepods/pod1/a"
        let second = "/kubepods/pod2/b"
        try leakingGroup(first)
        try leakingGroup(second, high: "1000000000")
        do {
            // the crashed run: it throttles both and vanishes without restoring
            var crashed = responder()
            _ = startThrottle(&crashed, first)
            _ = startThrottle(&crashed, second)
            clock.advance(seconds: 6)
            _ = crashed.tick()
        }
        #expect(try tree.high(first)! < 900 * mebibyte)
        #expect(stateRecords().count == 2)
        // a write in flight: recorded as pending, done, then the crash before the record caught up
        var records = stateRecords()
        let index = try #require(records.firstIndex { $0.cgroup == second })
        records[index].pending = "700000256"
        try ResponseStateFile(path: statePath).save(records)
        try tree.write(second, "memory.high", "700000256\n")

        var restarted = responder()
        let events = restarted.start()
        #expect(events.filter { $0.type == .responseRestore }.count == 2)
        #expect(events.allSatisfy { $0.response?.reason == "agent_restarted" })
        #expect(try tree.read(first, "memory.high") == "max")
        #expect(try tree.read(second, "memory.high") == "1000000000")
        #expect(stateRecords().isEmpty)
    }

    @Test("memory.high changed behind the responder's back: hands off, said once, never written again")
    func externalWrite() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        _ = startThrottle(&r, path)
        // the kubelet resizes the container
        try tree.write(path, "memory.high", "1006632960\n")
        clock.advance(seconds: 6)
        let events = r.tick()
        let skipped = try #require(events.first { $0.type == .responseSkipped }?.response)
        #expect(skipped.reason == "external_write")
        #expect(skipped.memoryHighBefore == 900 * mebibyte)
        #expect(skipped.memoryHighAfter == 1_006_632_960)
        #expect(stateRecords().isEmpty)
        for _ in 0..<5 {
            clock.advance(seconds: 20)
            #expect(r.tick().isEmpty)
        }
        #expect(r.leakCleared(cgroupTarget(path)).isEmpty)
        #expect(r.restoreAll().isEmpty)
        #expect(try tree.read(path, "memory.high") == "1006632960\n")
    }

    @Test("after a crash, a value someone else wrote since is left alone")
    func recoveryLeavesExternalValue() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        do {
            var crashed = responder()
            _ = startThrottle(&crashed, path)
        }
        try tree.write(path, "memory.high", "999997440\n")
        var restarted = responder()
        let events = restarted.start()
        #expect(events.map(\.type) == [.responseSkipped])
        #expect(events.first?.response?.reason == "external_write")
        #expect(try tree.read(path, "memory.high") == "999997440\n")
        #expect(stateRecords().isEmpty)
    }

    @Test("a cgroup that went away, or was recreated under the same path, is not written")
    func goneAndReplaced() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        _ = startThrottle(&r, path)
        try tree.removeGroup(path)
        clock.advance(seconds: 6)
        #expect(r.tick().first?.response?.reason == "cgroup_gone")
        #expect(stateRecords().isEmpty)

        // a crashed run's record for a path now used by a new group (new inode)
        try leakingGroup(path)
        do {
            var crashed = responder()
            clock.advance(seconds: 60)
            _ = startThrottle(&crashed, path)
        }
        // moved aside, not removed: the new group cannot reuse the old inode
        try FileManager.default.moveItem(atPath: tree.root + path, toPath: tree.root + "/old-app")
        try leakingGroup(path)
        var restarted = responder()
        #expect(restarted.start().first?.response?.reason == "cgroup_replaced")
        #expect(try tree.read(path, "memory.high") == "max\n")
    }

    @Test("with writable subtrees, a throttle writes only below them: a system service matched by a rule is skipped, untouched")
    func throttlesOnlyUnderTheWritableSubtrees() throws {
        defer { tree.remove() }
        let pod = "/kubepods.slice/kubepods-burstable.slice/pod1/app"
        try leakingGroup(pod)
        // a sibling whose name starts like the subtree's, and a system service
        for outside in ["/kubepods.slice2/app", "/system.slice/db.service"] { try leakingGroup(outside) }
        var r = responder(writable: ["/kubepods.slice/"])
        for outside in ["/kubepods.slice2/app", "/system.slice/db.service"] {
            let events = startThrottle(&r, outside)
            #expect(events.compactMap { $0.response?.reason } == ["outside_writable_subtree"], "\(outside): \(events)")
            #expect(try tree.read(outside, "memory.high") == "max\n", "\(outside)")
        }
        #expect(stateRecords().isEmpty)
        let events = startThrottle(&r, pod)
        #expect(events.contains { $0.type == .responseThrottle }, "\(events.map { $0.response?.reason ?? "-" })")
        #expect(try tree.read(pod, "memory.high") != "max\n")
        #expect(stateRecords().map(\.cgroup) == [pod])
    }

    @Test(arguments: [("/kubepods.slice", nil), ("kubepods.slice", "a cgroup path starting with '/'"), ("/kubepods/../x", "without '.' or '..'")])
    func writableSubtreesMustBeAbsoluteCleanPaths(path: String, problem: String?) {
        let found = ResponderConfiguration.subtreeProblem(path)
        if let problem { #expect(found?.contains(problem) == true, "\(path): \(String(describing: found))") } else { #expect(found == nil) }
    }

    @Test("a cgroup path that leaves the cgroup root ('..', a symlink out) is never opened, nor a state-file record outside it")
    func pathsOutsideTheRootAreRefused() throws {
        defer { tree.remove() }
        // a cgroup-shaped directory outside the root, which a path could reach
        let outside = try FakeCgroupTree()
        defer { outside.remove() }
        let victim = try outside.v2Group(
            "/victim", current: 900 * mebibyte, max: String(1024 * mebibyte),
            stat: ["anon": 800 * mebibyte, "file": 100 * mebibyte])
        try leakingGroup("/kubepods/pod1/app")
        try FileManager.default.createSymbolicLink(atPath: tree.root + "/kubepods/pod1/link", withDestinationPath: victim)
        let escape = "/kubepods/../.." + outside.root + "/victim"
        var r = responder()
        for path in [escape, "/kubepods/pod1/link"] {
            let events = startThrottle(&r, path)
            #expect(events.contains { $0.response?.reason == "unsafe_path" }, "\(path): \(events.map { $0.response?.reason ?? "-" })")
            #expect(!events.contains { $0.type == .responseThrottle }, "\(path)")
        }
        #expect(try outside.read("/victim", "memory.high") == "max\n")
        #expect(stateRecords().isEmpty)

        // a state file that names a directory outside the root, or a value memory.high cannot hold
        var crashed = responder()
        _ = startThrottle(&crashed, "/kubepods/pod1/app")
        var records = stateRecords()
        #expect(records.count == 1)
        var forged = try #require(records.first)
        forged.cgroup = "/victim"
        forged.directory = victim
        forged.inode = try CgroupMemoryFiles(directory: victim).inode()
        try outside.write("/victim", "memory.high", "943718400\n")
        forged.pending = "943718400"
        records[0].original = "not a value"
        try ResponseStateFile(path: statePath).save(records + [forged])
        var restarted = responder()
        let reasons = restarted.start().compactMap { $0.response?.reason }
        #expect(reasons.sorted() == ["state_invalid", "unsafe_path"], "\(reasons)")
        #expect(try outside.read("/victim", "memory.high") == "943718400\n")
    }

    @Test("dry run: says what it would write, writes nothing, keeps no state")
    func dryRun() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder(dryRun: true)
        let started = startThrottle(&r, path)
        let start = try #require(started.first { $0.type == .responseThrottle }?.response)
        #expect(start.dryRun)
        #expect(start.memoryHighAfter == 900 * mebibyte)
        clock.advance(seconds: 6)
        let probe = try #require(r.tick().first?.response)
        #expect(probe.dryRun && probe.reason == "probe")
        #expect(probe.memoryHighAfter! < 900 * mebibyte)
        let restore = try #require(r.leakCleared(cgroupTarget(path)).first)
        #expect(restore.type == .responseRestore && restore.response?.dryRun == true)
        #expect(try tree.read(path, "memory.high") == "max\n")
        #expect(!FileManager.default.fileExists(atPath: statePath))
    }

    @Test("modes below throttle, v1, no memory controller, below the floor: skipped once, with the reason, nothing written")
    func skippedReasons() throws {
        defer { tree.remove() }
        try leakingGroup("/a")
        try tree.v1Group("/v1", usage: 900 * mebibyte)
        try tree.v2GroupWithoutMemory("/bare")
        try leakingGroup("/small")

        func reasons(_ r: inout Responder, _ path: String, _ policy: TargetPolicy, request: UInt64? = nil) -> [String] {
            let target = cgroupTarget(path, request: request)
            _ = r.leakSuspected(target, policy: policy, verdict: Self.confirmed)
            _ = r.budgetTier(.emergency, target: target, policy: policy)
            var all: [String] = []
            for _ in 0..<3 {
                all += r.tick().compactMap { $0.type == .responseSkipped ? $0.response?.reason : nil }
                clock.advance(seconds: 1)
            }
            return all
        }
        var r = responder()
        #expect(reasons(&r, "/a", Self.policy(mode: .observe)) == ["mode_observe"])
        var annotate = responder()
        #expect(reasons(&annotate, "/a", Self.policy(mode: .annotate)) == ["mode_annotate"])
        var v1Tree = responder()
        #expect(reasons(&v1Tree, "/v1", Self.policy()) == ["cgroup_v1"])
        var v1Node = responder(version: .v1)
        #expect(reasons(&v1Node, "/a", Self.policy()) == ["cgroup_v1"])
        var bare = responder()
        #expect(reasons(&bare, "/bare", Self.policy()) == ["memory_controller_missing"])
        // the container's request (950 MiB) is above what it uses: no room to throttle
        var floor = responder()
        #expect(reasons(&floor, "/small", Self.policy(), request: 950 * mebibyte) == ["below_floor"])
        var missing = responder()
        #expect(reasons(&missing, "/nowhere", Self.policy()) == ["cgroup_gone"])
        var root = responder()
        #expect(reasons(&root, "", Self.policy()) == ["cgroup_unknown"])
        #expect(reasons(&root, "/", Self.policy()) == ["cgroup_unknown"])
        #expect(try tree.read("/a", "memory.high") == "max\n")
        #expect(try tree.read("/small", "memory.high") == "max\n")
        #expect(!FileManager.default.fileExists(atPath: tree.root + "/bare/memory.high"))
        #expect(!FileManager.default.fileExists(atPath: statePath))
    }

    @Test("no throttle without both a suspected leak and the policy's tier; a new one waits the response cooldown")
    func ladderConditionsAndCooldown() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        let policy = Self.policy()
        let process = EventTarget(scope: .process, pid: 42, comm: "app", identity: TargetIdentity(cgroup: path))
        _ = r.budgetTier(.emergency, target: cgroupTarget(path), policy: policy)
        #expect(r.tick().isEmpty)  // at the tier, no leak
        _ = r.leakSuspected(process, policy: policy, verdict: Self.confirmed)
        _ = r.budgetTier(.warning, target: cgroupTarget(path), policy: policy)
        #expect(r.tick().isEmpty)  // a leak, under the default fromTier (high)
        _ = r.budgetTier(.high, target: cgroupTarget(path), policy: policy)
        #expect(r.tick().first?.type == .responseThrottle)

        // a second suspect in the same cgroup: the first one clearing is not enough
        let other = EventTarget(scope: .process, pid: 43, comm: "app", identity: TargetIdentity(cgroup: path))
        _ = r.leakSuspected(other, policy: policy, verdict: Self.confirmed)
        #expect(r.leakCleared(process).isEmpty)
        #expect(r.leakCleared(other).first?.type == .responseRestore)

        // a process leaving ends its own suspicion, not the cgroup's other ones
        let third = EventTarget(scope: .process, pid: 44, comm: "app", identity: TargetIdentity(cgroup: path))
        _ = r.leakSuspected(process, policy: policy, verdict: Self.confirmed)
        _ = r.leakSuspected(third, policy: policy, verdict: Self.confirmed)
        clock.advance(seconds: 15)
        #expect(r.tick().first?.type == .responseThrottle)
        #expect(r.targetGone(third).isEmpty)
        #expect(r.throttled.count == 1)
        #expect(r.targetGone(process).first?.response?.reason == "target_gone")
        #expect(try tree.read(path, "memory.high") == "max")

        // suspected again at once: the response cooldown (15 s) holds it back, said once
        _ = r.leakSuspected(other, policy: policy, verdict: Self.confirmed)
        #expect(r.tick().first?.response?.reason == "cooldown")
        clock.advance(seconds: 5)
        #expect(r.tick().isEmpty)
        clock.advance(seconds: 10)
        #expect(r.tick().first?.type == .responseThrottle)
    }

    @Test("a corrupt state file is kept aside as .corrupt and the responder starts empty")
    func corruptStateFile() throws {
        defer { tree.remove() }
        try FileManager.default.createDirectory(atPath: tree.root + "/state", withIntermediateDirectories: true)
        let truncated = "{\"version\":1,\"targets\":[{\"key\":"
        try truncated.write(toFile: statePath, atomically: false, encoding: .utf8)
        var r = responder()
        #expect(r.start().isEmpty)
        #expect(try String(contentsOfFile: statePath + ".corrupt", encoding: .utf8) == truncated)
        #expect(stateRecords().isEmpty)  // a fresh, valid file in its place

        try "[1,2]".write(toFile: statePath, atomically: false, encoding: .utf8)
        let (records, problem) = ResponseStateFile(path: statePath).load()
        #expect(records.isEmpty)
        let error = try #require(problem)
        #expect(error.code == .corrupt)
        #expect(error.description.contains(statePath))
    }

    @Test("the state file round-trips and leaves no temp file behind")
    func stateFileRoundTrip() throws {
        defer { tree.remove() }
        let file = ResponseStateFile(path: tree.root + "/deep/er/state.json")
        let record = ResponseStateRecord(
            key: "cgroup:/x", cgroup: "/x", directory: "/sys/fs/cgroup/x", inode: 77, original: "max", written: "4096",
            rule: "r", sinceEpochNanoseconds: 5)
        try file.save([record])
        #expect(file.load().records == [record])
        #expect(try FileManager.default.contentsOfDirectory(atPath: tree.root + "/deep/er") == ["state.json"])
        try file.save([])
        #expect(file.load().records.isEmpty)
        #expect(record.isOurs(.bytes(4096)) && record.isOurs(.max) && !record.isOurs(.bytes(8192)))
    }

    @Test("response events as JSON lines: the original's 'max' is an absent value, dry_run always present")
    func json() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        var r = responder()
        let start = try #require(startThrottle(&r, path).first { $0.type == .responseThrottle })
        let restore = try #require(r.restoreAll().first)
        let throttleObject = try #require(try JSONSerialization.jsonObject(with: Data(start.jsonLine().utf8)) as? [String: Any])
        #expect(throttleObject["type"] as? String == "response.throttle")
        #expect(throttleObject["node"] as? String == "node-a")
        #expect(throttleObject["mode"] as? String == "throttle" && throttleObject["rule"] as? String == "leaky")
        #expect(throttleObject["dry_run"] as? Bool == false)
        #expect(throttleObject["memory_high_before"] == nil)
        #expect(throttleObject["memory_high_after"] as? Int == 900 * 1_048_576)
        #expect(throttleObject["floor_bytes"] as? Int == 800 * 1_048_576)
        #expect(throttleObject["reason"] as? String == "start")
        #expect(throttleObject["cgroup"] as? String == path)
        let restoreObject = try #require(try JSONSerialization.jsonObject(with: Data(restore.jsonLine().utf8)) as? [String: Any])
        #expect(restoreObject["type"] as? String == "response.restore")
        #expect(restoreObject["memory_high_before"] as? Int == 900 * 1_048_576)
        #expect(restoreObject["memory_high_after"] == nil)
        #expect(restoreObject["reason"] as? String == "agent_stopping")
    }

    @Test("no write without the original on disk first: an unwritable state file stops the throttle")
    func unwritableStateFile() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try leakingGroup(path)
        // a regular file where the state directory should be: mkdir fails, as root too
        try "".write(toFile: tree.root + "/blocker", atomically: false, encoding: .utf8)
        var r = Responder(
            configuration: ResponderConfiguration(
                cgroupRoot: tree.root, version: .v2, stateFile: ResponseStateFile(path: tree.root + "/blocker/state.json"),
                pageSize: Self.page),
            clock: clock.reading, logger: silentLogger)
        let events = startThrottle(&r, path)
        #expect(events.map(\.type) == [.responseSkipped])
        #expect(events.first?.response?.reason == "state_file_unwritable")
        #expect(try tree.read(path, "memory.high") == "max\n")
        #expect(r.throttled.isEmpty)
        let error = try #require(throws: ResponseStateFileError.self) {
            try ResponseStateFile(path: tree.root + "/blocker/state.json").save([])
        }
        #expect(error.code == .unwritable && error.description.contains("/blocker"))
    }
}
