import Foundation
import MemwardenModel
import MemwardenResponse
import Testing

/// The growth cap in the responder, against cgroupfs-shaped temp trees: a
/// leak of anonymous memory on a node without swap (issue 13: leaksim steady
/// at 1 MiB/s under memory.max 384M, throttle from warning), which the
/// pressure controller could only skip as below its floor.
@Suite struct GrowthCapResponderTests {
    static let page: UInt64 = 4096
    static let rate: UInt64 = 128 << 10
    static let limit: UInt64 = 384 * mebibyte
    let tree: FakeCgroupTree
    let clock = TestClock()
    let statePath: String

    init() throws {
        tree = try FakeCgroupTree()
        statePath = tree.root + "/state/state.json"
    }

    func responder(dryRun: Bool = false) -> Responder {
        fakeTreeResponder(tree: tree, statePath: statePath, clock: clock, pageSize: Self.page, dryRun: dryRun)
    }

    /// The rule: throttle from warning, the default growth rate.
    static let policy = TargetPolicy(
        rule: "leaky", budget: .limit, mode: .throttle, throttle: ThrottleSettings(fromTier: .warning, minSuspected: .zero))

    /// memory.max 384 MiB, 86 % of it in use, all of it anonymous.
    @discardableResult
    func anonymousGroup(_ path: String, high: String = "max") throws -> String {
        try tree.v2Group(path, current: 330 * mebibyte, max: String(Self.limit), high: high)
    }

    func suspect(_ r: inout Responder, _ path: String) -> [AgentEvent] {
        let target = cgroupTarget(path)
        var events = r.leakSuspected(target, policy: Self.policy, verdict: LeakVerdict(confidence: 0.9))
        events += r.budgetTier(.high, target: target, policy: Self.policy)
        return events + r.tick()
    }

    /// One second of the leak as the kernel lets it run: 1 MiB more, but not
    /// past memory.high (past it, reclaim finds nothing to take and the
    /// allocating task is stalled), each breach counted in memory.events.
    func leakOneSecond(_ path: String, breaches: inout UInt64) throws {
        let usage = try UInt64(tree.read(path, "memory.current").trimmingCharacters(in: .whitespacesAndNewlines))!
        let high = try tree.high(path) ?? .max
        var next = usage + mebibyte
        if next > high {
            next = max(usage, high)
            breaches += 1
            try tree.setHighEvents(path, breaches)
        }
        try tree.setAnonymous(path, next)
    }

    func stateRecords() -> [ResponseStateRecord] { loadedStateRecords(statePath) }

    @Test("a leak the kernel cannot reclaim is capped a page above usage, not skipped as below_floor")
    func startsWhereBelowFloorDid() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path)
        var r = responder()
        let events = suspect(&r, path)
        #expect(!events.contains { $0.type == .responseSkipped })
        let start = try #require(events.first { $0.type == .responseThrottle }?.response)
        #expect(start.reason == "growth_cap")
        #expect(start.memoryHighBefore == nil)
        #expect(start.memoryHighAfter == 330 * mebibyte + Self.page)
        #expect(start.floorBytes == 330 * mebibyte)
        #expect(start.pressureMicroseconds == nil)
        #expect(start.verdict != nil)
        let cap = try #require(start.growthCap)
        #expect(cap == GrowthCapDetails(rateBytesPerSecond: Self.rate, allowanceBytes: 0, usageBytes: 330 * mebibyte, ceilingBytes: Self.limit))
        #expect(try tree.high(path) == 330 * mebibyte + Self.page)
        #expect(r.throttled == ["cgroup:" + path: 330 * mebibyte + Self.page])

        // recorded before the write, with the mode, so a restart knows what it finds
        let record = try #require(stateRecords().first)
        #expect(record.original == "max" && record.pending == String(330 * mebibyte + Self.page))
        #expect(record.throttleMode == "growth_cap")
        #expect(record.growthCap == .init(start: 330 * mebibyte + Self.page, rateBytesPerSecond: Self.rate))
    }

    @Test("the 1 MiB/s leak runs at 128 KiB/s: memory.high rises by rate × interval, never past memory.max; restore puts max back")
    func allowanceRisesAtTheRateToTheCeiling() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path)
        var r = responder()
        _ = suspect(&r, path)
        let start = 330 * mebibyte + Self.page
        var breaches: UInt64 = 0
        var previous = start
        var raises = 0
        var seconds = 0
        // without the cap the leak would reach memory.max in 54 s; with it, the 54 MiB last 7 minutes
        while seconds < 600 {
            clock.advance(seconds: 1)
            seconds += 1
            try leakOneSecond(path, breaches: &breaches)
            for event in r.tick() {
                let details = try #require(event.response)
                #expect(event.type == .responseThrottle, "\(details)")
                #expect(details.reason == "growth_cap_raise")
                #expect(details.memoryHighBefore == previous)
                let after = try #require(details.memoryHighAfter)
                #expect(after == min(previous + 6 * Self.rate, Self.limit))
                #expect(details.growthCap?.allowanceBytes == after - start)
                #expect(try tree.high(path) == after)
                let saved = try #require(stateRecords().first)
                #expect(saved.written == String(previous) && saved.pending == String(after))
                previous = after
                raises += 1
            }
            let usage = try UInt64(tree.read(path, "memory.current").trimmingCharacters(in: .whitespacesAndNewlines))!
            #expect(usage <= Self.limit)
            if seconds == 300 {
                // five minutes: 50 raises of 768 KiB, 37.5 MiB where the leak alone would have taken 300
                #expect(raises == 50)
                #expect(previous == start + 50 * 6 * Self.rate)
            }
        }
        // the last raise stops at memory.max (a page short of 72 full ones), then it holds
        #expect(raises == 72)
        #expect(previous == Self.limit)
        #expect(try tree.high(path) == Self.limit)

        // the detectors saw only the capped rate and cleared the suspicion: while the leak still
        // breaches the cap, the cap stays (without it the leak would run at 1 MiB/s again)
        #expect(r.leakCleared(cgroupTarget(path)).isEmpty)
        for _ in 0..<120 {
            clock.advance(seconds: 1)
            try leakOneSecond(path, breaches: &breaches)
            #expect(r.tick().isEmpty)
        }
        #expect(try tree.high(path) == Self.limit)
        // the allocations stop: a minute without a breach, and the original goes back
        var ended: [AgentEvent] = []
        var quiet = 0
        while ended.isEmpty && quiet < 120 {
            clock.advance(seconds: 1)
            quiet += 1
            ended = r.tick()
        }
        #expect(quiet == 60)
        let restore = try #require(ended.first)
        #expect(restore.type == .responseRestore)
        #expect(restore.response?.reason == "leak_cleared")
        #expect(restore.response?.memoryHighBefore == Self.limit && restore.response?.memoryHighAfter == nil)
        #expect(restore.response?.growthCap?.allowanceBytes == Self.limit - start)
        #expect(try tree.read(path, "memory.high") == "max")
        #expect(stateRecords().isEmpty)
        #expect(r.throttled.isEmpty)
    }

    @Test("usage far below the cap for a minute (the leak let go of memory): growth_stopped puts the original back")
    func releasedWhenItStopsPressing() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path, high: "390000640")
        var r = responder()
        _ = suspect(&r, path)
        #expect(try tree.high(path) == 330 * mebibyte + Self.page)
        // the process freed 100 MiB (a restart inside the container, a cache of its own dropped)
        try tree.setAnonymous(path, 230 * mebibyte)
        var ended: AgentEvent?
        var seconds = 0
        while ended == nil && seconds < 120 {
            clock.advance(seconds: 1)
            seconds += 1
            ended = r.tick().first
        }
        let restore = try #require(ended)
        #expect(restore.type == .responseRestore)
        #expect(restore.response?.reason == "growth_stopped")
        #expect(restore.response?.memoryHighAfter == 390_000_640)
        // quiet from the first tick; the window is a minute
        #expect(seconds == 61)
        #expect(try tree.read(path, "memory.high") == "390000640")
        #expect(stateRecords().isEmpty)
    }

    @Test("a ceiling (a lower original memory.high) under what cannot be reclaimed: at_ceiling, nothing written")
    func atCeiling() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path, high: String(300 * mebibyte))
        var r = responder()
        let events = suspect(&r, path)
        #expect(events.map(\.type) == [.responseSkipped])
        #expect(events.first?.response?.reason == "at_ceiling")
        clock.advance(seconds: 1)
        #expect(r.tick().isEmpty)  // said once
        #expect(try tree.read(path, "memory.high") == "\(300 * mebibyte)\n")
        #expect(!FileManager.default.fileExists(atPath: statePath))
    }

    @Test("a restart after a crash puts the original back under a growth cap, and says how far it had let the cgroup grow")
    func recoveryAfterCrash() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path)
        do {
            var crashed = responder()
            _ = suspect(&crashed, path)
            var breaches: UInt64 = 0
            for _ in 0..<6 {
                clock.advance(seconds: 1)
                try leakOneSecond(path, breaches: &breaches)
                _ = crashed.tick()
            }
        }
        let start = 330 * mebibyte + Self.page
        #expect(try tree.high(path) == start + 6 * Self.rate)
        var restarted = responder()
        let events = restarted.start()
        let restore = try #require(events.first)
        #expect(events.count == 1 && restore.type == .responseRestore)
        #expect(restore.response?.reason == "agent_restarted")
        #expect(restore.response?.growthCap == GrowthCapDetails(rateBytesPerSecond: Self.rate, allowanceBytes: 6 * Self.rate))
        #expect(try tree.read(path, "memory.high") == "max")
        #expect(stateRecords().isEmpty)
    }

    @Test("a state file from before growth caps (no throttleMode) loads and restores")
    func oldStateFileLoads() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/old"
        let directory = try anonymousGroup(path, high: "300000000")
        let inode = try #require(try FileManager.default.attributesOfItem(atPath: directory)[.systemFileNumber] as? NSNumber)
        try FileManager.default.createDirectory(atPath: tree.root + "/state", withIntermediateDirectories: true)
        // as an agent without growth caps wrote it
        let old = """
            {"targets":[{"cgroup":"\(path)","directory":"\(directory)","inode":\(inode.uint64Value),"key":"cgroup:\(path)",\
            "original":"max","rule":"leaky","sinceEpochNanoseconds":5,"written":"300000000"}],"version":1}
            """
        try old.write(toFile: statePath, atomically: false, encoding: .utf8)
        let record = try #require(stateRecords().first)
        #expect(record.throttleMode == nil && record.growthCap == nil)
        var r = responder()
        let events = r.start()
        #expect(events.map(\.type) == [.responseRestore])
        #expect(events.first?.response?.growthCap == nil)
        #expect(try tree.read(path, "memory.high") == "max")
    }

    @Test("the pressure controller hands over to a growth cap once what cannot be reclaimed outgrows memory.high")
    func handOverFromPressure() throws {
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        // 900 MiB in use, 100 MiB of it page cache: room for the pressure controller
        try tree.v2Group(
            path, current: 900 * mebibyte, max: String(1024 * mebibyte),
            stat: ["anon": 800 * mebibyte, "active_file": 60 * mebibyte, "inactive_file": 40 * mebibyte])
        var r = responder()
        let started = suspect(&r, path)
        #expect(started.first { $0.type == .responseThrottle }?.response?.reason == "start")
        #expect(try tree.high(path) == 900 * mebibyte)

        // the cache is gone and the leak has grown anonymous memory past the value in force
        try tree.setAnonymous(path, 905 * mebibyte)
        clock.advance(seconds: 1)
        let handOver = try #require(r.tick().first?.response)
        #expect(handOver.reason == "growth_cap")
        #expect(handOver.memoryHighBefore == 900 * mebibyte)
        #expect(handOver.memoryHighAfter == 905 * mebibyte + Self.page)
        #expect(handOver.growthCap?.allowanceBytes == 0)
        #expect(stateRecords().first?.throttleMode == "growth_cap")

        // from here the floor no longer drags memory.high up: 10 MiB more in a second (the kernel
        // counting the breaches) buys one raise of 768 KiB
        try tree.setAnonymous(path, 915 * mebibyte)
        try tree.setHighEvents(path, 1)
        var raised: [ResponseDetails] = []
        for _ in 0..<6 {
            clock.advance(seconds: 1)
            raised += r.tick().compactMap(\.response)
        }
        #expect(raised.map(\.reason) == ["growth_cap_raise"])
        #expect(raised.first?.memoryHighAfter == 905 * mebibyte + Self.page + 6 * Self.rate)
    }

    @Test("dry run: says what a growth cap would write and how it would rise, writes nothing")
    func dryRun() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path)
        var r = responder(dryRun: true)
        let start = try #require(suspect(&r, path).first { $0.type == .responseThrottle }?.response)
        #expect(start.dryRun && start.reason == "growth_cap")
        clock.advance(seconds: 6)
        let raise = try #require(r.tick().first?.response)
        #expect(raise.dryRun && raise.reason == "growth_cap_raise")
        #expect(raise.memoryHighAfter == 330 * mebibyte + Self.page + 6 * Self.rate)
        #expect(try tree.read(path, "memory.high") == "max\n")
        #expect(!FileManager.default.fileExists(atPath: statePath))
    }

    @Test("growth-cap events as JSON lines: a growth_cap object beside the throttle's fields")
    func json() throws {
        defer { tree.remove() }
        let path = "/kubepods/burstable/pod1/leaker"
        try anonymousGroup(path)
        var r = responder()
        let start = try #require(suspect(&r, path).first { $0.type == .responseThrottle })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(start.jsonLine().utf8)) as? [String: Any])
        #expect(object["reason"] as? String == "growth_cap")
        #expect(object["memory_high_after"] as? Int == 330 * 1_048_576 + 4096)
        #expect(object["pressure_microseconds"] == nil)
        let cap = try #require(object["growth_cap"] as? [String: Any])
        #expect(cap["rate_bytes_per_second"] as? Int == 131_072)
        #expect(cap["allowance_bytes"] as? Int == 0)
        #expect(cap["usage_bytes"] as? Int == 330 * 1_048_576)
        #expect(cap["ceiling_bytes"] as? Int == 384 * 1_048_576)
        // (384 − 330) MiB left at 128 KiB/s: the forecast under the cap.
        #expect(cap["seconds_to_ceiling"] as? Double == 432)
        #expect(cap.count == 5)
    }
}
