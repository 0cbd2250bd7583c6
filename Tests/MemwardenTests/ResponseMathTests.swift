import Foundation
import MemwardenModel
import MemwardenResponse
import Testing

@Suite struct MemoryHighControllerTests {
    let settings = ThrottleSettings()  // senpai's defaults: 10 ms target, 6 s interval, 1 % probe, 100 % back-off

    @Test(
        "probe share: min((target/integral/10)² × 1 %, 1 %)",
        arguments: [(UInt64(0), 0.01), (1_000, 0.01), (2_000, 0.0025), (5_000, 0.0004), (10_000, 0.0001)])
    func probeShare(integral: UInt64, expected: Double) {
        #expect(abs(MemoryHighController.probeShare(integral: integral, settings: settings) - expected) < 1e-12)
    }

    @Test(
        "back-off share: min((integral/target/20)² × 100 %, 100 %)",
        arguments: [(UInt64(20_000), 0.01), (100_000, 0.25), (200_000, 1.0), (2_000_000, 1.0)])
    func backoffShare(integral: UInt64, expected: Double) {
        #expect(abs(MemoryHighController.backoffShare(integral: integral, settings: settings) - expected) < 1e-12)
    }

    @Test(
        "values are page-aligned and held within [floor, ceiling]",
        arguments: [
            (UInt64(10_000), UInt64(0), UInt64?.none, UInt64(8192)),
            (10_000, 12_000, nil, 12_288),  // the floor rounds up to a page
            (50_000, 0, 40_000, 36_864),  // the ceiling rounds down
            (4095, 0, nil, 0),
        ])
    func clamp(value: UInt64, floor: UInt64, ceiling: UInt64?, expected: UInt64) {
        #expect(MemoryHighController.clamp(value, floor: floor, ceiling: ceiling, pageSize: 4096) == expected)
    }

    @Test("holds within the interval, probes after it, backs off at once over the target, and restarts the integral")
    func sequence() {
        let second: UInt64 = 1_000_000_000
        var controller = MemoryHighController(settings: settings, pageSize: 4096, now: 0, pressureTotal: 500)
        let current: UInt64 = 1 << 30
        // 4 ms of stall over 5 s: under the target, before the interval
        var total: UInt64 = 500
        for tick in 1...5 {
            total += 800
            let decision = controller.observe(pressureTotal: total, now: UInt64(tick) * second, current: current, floor: 0, ceiling: nil)
            #expect(decision.step == .hold)
            #expect(decision.value == current)
        }
        #expect(controller.integral == 4_000)
        total += 1_000
        let probe = controller.observe(pressureTotal: total, now: 6 * second, current: current, floor: 0, ceiling: nil)
        #expect(probe.step == .probe)
        #expect(probe.pressureMicroseconds == 5_000)
        // (10/5/10)² × 1 % = 0.04 %
        #expect(abs(probe.adjustment - 0.0004) < 1e-12)
        #expect(probe.value == UInt64(Double(current) * 0.9996) / 4096 * 4096)
        #expect(controller.integral == 0)

        total += 12_000  // over the target in one tick
        let backoff = controller.observe(pressureTotal: total, now: 7 * second, current: probe.value, floor: 0, ceiling: current)
        #expect(backoff.step == .backoff)
        #expect(backoff.value > probe.value && backoff.value <= current)

        // a counter that went backwards counts as no stall
        let reset = controller.observe(pressureTotal: 10, now: 8 * second, current: backoff.value, floor: 0, ceiling: nil)
        #expect(reset.step == .hold && reset.pressureMicroseconds == 0)
    }
}

/// The controller in a closed loop with a toy cgroup: 500 MiB it cannot give
/// back, 300 MiB of hot cache, and every MiB of hot cache squeezed out costs
/// 2 ms of stall a second (refaults). The loop must squeeze the cold part,
/// stop at the knee where stall reaches the target, and never run away.
@Suite struct MemoryHighControllerLoopTests {
    @Test("squeezes down to the knee, settles there with back-offs, never below the floor")
    func settlesAtTheKnee() {
        let second: UInt64 = 1_000_000_000
        let floor: UInt64 = 500 * mebibyte
        let knee: UInt64 = 800 * mebibyte  // non-reclaimable + hot cache
        var high: UInt64 = 1024 * mebibyte  // start: usage with 224 MiB of cold cache
        var stallTotal: UInt64 = 0
        var controller = MemoryHighController(settings: ThrottleSettings(), pageSize: 4096, now: 0, pressureTotal: 0)
        var lowest = high
        var backoffs = 0
        var late: [UInt64] = []
        for tick in 1...3600 {
            let deficit = knee > high ? Double(knee - high) / Double(mebibyte) : 0
            stallTotal += UInt64(deficit * 2_000)
            let decision = controller.observe(
                pressureTotal: stallTotal, now: UInt64(tick) * second, current: high, floor: floor, ceiling: 1024 * mebibyte)
            if decision.step == .backoff { backoffs += 1 }
            high = decision.value
            lowest = min(lowest, high)
            if tick > 1800 { late.append(high) }
        }
        #expect(lowest >= floor)
        #expect(backoffs > 0)
        // the second half of the hour: within a few MiB of the knee, either side
        #expect(late.min()! >= knee - 12 * mebibyte, "lowest late value \(late.min()! / mebibyte) MiB")
        #expect(late.max()! <= knee + 12 * mebibyte, "highest late value \(late.max()! / mebibyte) MiB")
    }
}

@Suite struct BudgetEvaluatorTests {
    let policy = TargetPolicy(rule: "team-a", budget: .bytes(1000 * mebibyte))
    let target = EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/pod1/app"))

    func at(_ seconds: Double) -> ClockReading {
        ClockReading(monotonicNanoseconds: UInt64(seconds * 1e9), epochNanoseconds: 1_800_000_000_000_000_000, t: seconds)
    }

    /// Feeds usage in MiB, one sample a second from `start`, and returns the event types.
    func feed(
        _ evaluator: inout BudgetEvaluator, _ usage: [UInt64], start: Double = 0, growth: Int64? = nil
    ) -> [AgentEvent] {
        var events: [AgentEvent] = []
        for (i, mib) in usage.enumerated() {
            events += evaluator.evaluate(
                target: target, now: at(start + Double(i)), usage: mib * mebibyte, budget: 1000 * mebibyte, growth: growth,
                policy: policy)
        }
        return events
    }

    @Test("rising usage announces each tier it crosses, with severity, share and the forecast")
    func risingTiers() throws {
        var evaluator = BudgetEvaluator(node: "n1")
        let events = feed(&evaluator, [500, 690, 700, 750, 800, 850, 900, 960], growth: 10 * Int64(mebibyte))
        #expect(events.map(\.type) == [.budgetWarning, .budgetHigh, .budgetCritical, .budgetEmergency])
        #expect(events.map(\.severity) == [.warning, .warning, .critical, .critical])
        let warning = try #require(events.first?.budget)
        #expect(warning.tier == .warning && warning.rule == "team-a")
        #expect(warning.usageBytes == 700 * mebibyte && warning.budgetBytes == 1000 * mebibyte)
        #expect(abs(warning.share - 0.7) < 1e-12)
        #expect(warning.secondsToBudget == 30)  // 300 MiB at 10 MiB/s
        #expect(events.last?.budget?.secondsToBudget == 4)
        #expect(events.first?.node == "n1")
        #expect(evaluator.tier(of: target.key) == .emergency)
    }

    @Test("a jump straight to critical announces critical only")
    func jump() {
        var evaluator = BudgetEvaluator()
        #expect(feed(&evaluator, [100, 920]).map(\.type) == [.budgetCritical])
    }

    @Test("usage hovering at a threshold announces once (hysteresis), and recovers only below warning − 5 %")
    func hysteresis() throws {
        var evaluator = BudgetEvaluator()
        let events = feed(&evaluator, [705, 695, 660, 702, 655, 700, 649])
        #expect(events.map(\.type) == [.budgetWarning, .budgetRecovered])
        let recovered = try #require(events.last?.budget)
        #expect(recovered.tier == .warning)
        #expect(recovered.usageBytes == 649 * mebibyte)
        #expect(events.last?.severity == .info)
        #expect(evaluator.tier(of: target.key) == nil)
    }

    @Test("falling from critical keeps the highest tier still within its hysteresis; rising again re-announces after the cooldown")
    func fallAndCooldown() {
        var evaluator = BudgetEvaluator()
        #expect(feed(&evaluator, [910]).map(\.type) == [.budgetCritical])
        #expect(feed(&evaluator, [870], start: 1).isEmpty)  // 0.87 ≥ 0.85: still critical
        #expect(evaluator.tier(of: target.key) == .critical)
        #expect(feed(&evaluator, [770], start: 2).isEmpty)  // below 0.85, 0.77 ≥ 0.75: high
        #expect(evaluator.tier(of: target.key) == .high)
        // back up within the 300 s event cooldown: held, not announced
        #expect(feed(&evaluator, [910], start: 3).isEmpty)
        #expect(evaluator.tier(of: target.key) == .critical)
        #expect(feed(&evaluator, [770], start: 4).isEmpty)
        #expect(feed(&evaluator, [910], start: 310).map(\.type) == [.budgetCritical])
    }

    @Test("no budget, or a forgotten target: nothing held")
    func noBudgetAndForget() {
        var evaluator = BudgetEvaluator()
        #expect(
            evaluator.evaluate(target: target, now: at(0), usage: 1 << 40, budget: nil, growth: nil, policy: policy).isEmpty)
        _ = feed(&evaluator, [960])
        evaluator.forget(target.key)
        #expect(evaluator.tier(of: target.key) == nil)
        // forgotten means no cooldown either: announced again at once
        #expect(feed(&evaluator, [960], start: 1).map(\.type) == [.budgetEmergency])
    }

    @Test("resolving the budget: bytes, the cgroup's limit, or none")
    func resolve() {
        #expect(BudgetEvaluator.resolve(.bytes(5), limit: 9) == 5)
        #expect(BudgetEvaluator.resolve(.limit, limit: 9) == 9)
        #expect(BudgetEvaluator.resolve(.limit, limit: nil) == nil)
        #expect(BudgetEvaluator.resolve(nil, limit: 9) == nil)
        #expect(BudgetEvaluator.secondsToBudget(usage: 10, budget: 5, growth: nil) == 0)
        #expect(BudgetEvaluator.secondsToBudget(usage: 1, budget: 5, growth: -3) == nil)
    }

    @Test("budget events as JSON lines")
    func json() throws {
        var evaluator = BudgetEvaluator(node: "n1")
        let line = try #require(feed(&evaluator, [850], growth: 1_048_576).first).jsonLine()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "budget.high")
        #expect(object["tier"] as? String == "high")
        #expect(object["budget_bytes"] as? Int == 1000 * 1_048_576)
        #expect(object["seconds_to_budget"] as? Double == 150)
        #expect(object["cgroup"] as? String == "/kubepods/pod1/app")
    }
}

@Suite struct CgroupMemoryFilesTests {
    @Test("reads a v2 group: usage, limits, memory.high text, PSI, stat, non-reclaimable")
    func v2() throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        try tree.v2Group(
            "/g", current: 500 * mebibyte, max: "1073741824", high: "max", pressureTotal: 1234,
            stat: ["active_file": 100 * mebibyte, "inactive_file": 50 * mebibyte, "slab_reclaimable": 10 * mebibyte])
        let files = try CgroupMemoryFiles(root: tree.root, path: "/g")
        #expect(files.kind == .v2)
        #expect(try files.usage() == 500 * mebibyte)
        #expect(try files.limit() == .bytes(1 << 30))
        #expect(try files.high() == .max)
        #expect(try files.highText() == "max")
        let pressure = try files.pressure()
        #expect(pressure.someTotalMicroseconds == 1234 && pressure.fullTotalMicroseconds == 617)
        #expect(try files.memoryStat()["anon"] == 500 * mebibyte)
        #expect(try files.nonReclaimable(usage: 500 * mebibyte) == 340 * mebibyte)
        try files.writeHigh(.bytes(4096))
        #expect(try files.high() == .bytes(4096))
        try files.writeHigh(.max)
        #expect(try tree.read("/g", "memory.high") == "max")
    }

    @Test("memory.high breaches: memory.events.local's own count where the kernel has it, else memory.events")
    func highEvents() throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        try tree.v2Group("/pod", current: 500 * mebibyte)
        let files = try CgroupMemoryFiles(root: tree.root, path: "/pod")
        // memory.events counts the containers below breaching their own memory.high too
        try tree.setHighEvents("/pod", 7)
        #expect(try files.highEvents() == 7)
        try tree.write("/pod", "memory.events.local", "low 0\nhigh 2\nmax 0\noom 0\noom_kill 0\n")
        #expect(try files.highEvents() == 2)
        try tree.write("/pod", "memory.events.local", "low 0\n")
        let error = try #require(throws: CgroupFileError.self) { try files.highEvents() }
        #expect(error.code == .malformed && error.path.hasSuffix("/pod/memory.events.local"))
        try tree.v1Group("/v1", usage: mebibyte)
        let v1 = try #require(throws: CgroupFileError.self) { try CgroupMemoryFiles(root: tree.root, path: "/v1").highEvents() }
        #expect(v1.code == .unsupportedOnV1)
    }

    @Test("tells v1, v2 and v2 without the memory controller apart; v1 has no memory.high")
    func kinds() throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        try tree.v1Group("/one", usage: 7 * mebibyte, limit: 64 * mebibyte)
        try tree.v2GroupWithoutMemory("/bare")
        let v1 = try CgroupMemoryFiles(directory: tree.root + "/one/")
        #expect(v1.kind == .v1)
        #expect(try v1.usage() == 7 * mebibyte)
        #expect(try v1.limit() == .bytes(64 * mebibyte))
        #expect(try v1.memoryStat()["total_rss"] == 7 * mebibyte)
        #expect(throws: CgroupFileError(.unsupportedOnV1, path: tree.root + "/one/memory.high", detail: "cgroup v1 has no memory.high")) {
            try v1.high()
        }
        let bare = try CgroupMemoryFiles(root: tree.root, path: "bare")
        #expect(bare.kind == .v2WithoutMemoryController)
        #expect(try bare.pressure().someTotalMicroseconds == 0)
        let error = try #require(throws: CgroupFileError.self) { try bare.usage() }
        #expect(error.code == .memoryControllerMissing && error.path.hasSuffix("/bare/memory.current"))
        let missing = try #require(throws: CgroupFileError.self) { try CgroupMemoryFiles(root: tree.root, path: "/gone") }
        #expect(missing.code == .cgroupMissing && missing.path == tree.root + "/gone")
    }

    @Test(
        "bad file contents name the file",
        arguments: [("memory.current", "lots\n"), ("memory.max", "-1\n"), ("memory.pressure", "nonsense\n"), ("memory.stat", "\n")])
    func malformed(file: String, text: String) throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        try tree.v2Group("/g", current: mebibyte)
        try tree.write("/g", file, text)
        let files = try CgroupMemoryFiles(root: tree.root, path: "/g")
        let error = try #require(throws: CgroupFileError.self) {
            switch file {
            case "memory.current": _ = try files.usage()
            case "memory.max": _ = try files.limit()
            case "memory.pressure": _ = try files.pressure()
            default: _ = try files.memoryStat()
            }
        }
        #expect(error.code == .malformed)
        #expect(error.path == tree.root + "/g/" + file)
        #expect(error.description.hasPrefix(tree.root + "/g/" + file))
    }

    @Test(
        "memory knob values", arguments: [("max\n", MemoryKnob?.some(.max)), ("4096", .bytes(4096)), ("9223372036854771712\n", .max), ("x", nil)])
    func knobs(text: String, expected: MemoryKnob?) {
        #expect(MemoryKnob(parsing: text) == expected)
    }
}
