import Foundation
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenIdentity
import MemwardenModel
import MemwardenResponse
import MemwardenTestSupport

/// The responder's file access on this machine's real cgroups: a v1 memory
/// group below the test's own (usage, limit, stat; throttling unsupported),
/// and a cgroup2 group without the memory controller (PSI present,
/// memory.high absent), so both unsupported paths are taken for real.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct ResponderCgroupTests {
    let logger = Logger(label: "memwarden.test", factory: { _ in SwiftLogNoOpLogHandler() })

    func responder(root: String, version: CgroupHierarchy.Version, stateDirectory: String) -> Responder {
        Responder(
            configuration: ResponderConfiguration(
                cgroupRoot: root, version: version, stateFile: ResponseStateFile(path: stateDirectory + "/state.json")),
            clock: { ClockReading.system() }, logger: logger)
    }

    func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.path + "/memwarden-responder-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Suspects a leak at the emergency tier and ticks twice; the skip reasons said.
    func skipReasons(_ r: inout Responder, cgroup: String) -> [String] {
        let target = EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: cgroup))
        let policy = TargetPolicy(rule: "test", budget: .limit, mode: .throttle, throttle: ThrottleSettings(minSuspected: .zero))
        _ = r.start()
        _ = r.leakSuspected(target, policy: policy, verdict: LeakVerdict(confidence: 0.9))
        _ = r.budgetTier(.emergency, target: target, policy: policy)
        return (r.tick() + r.tick()).compactMap { event in
            guard event.type == .responseSkipped, case .response(let details) = event.details else { return nil }
            return details.reason
        }
    }

    @Test("a v1 memory child: usage, limit and stat read for real, budget events from its usage, throttling said unsupported")
    func v1MemoryGroup() throws {
        let cgroup = try ScratchCgroup()
        defer { cgroup.remove() }
        guard cgroup.hierarchy.version == .v1 else {
            throw TestFailure("this test expects a v1 memory hierarchy (found v2 at \(cgroup.hierarchy.mountPoint))")
        }
        let limit = 128 * mib
        try String(limit).write(toFile: cgroup.directory + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
        let simulator = try Simulator()
        defer { simulator.kill() }
        try simulator.run("cgroup \(cgroup.directory)")
        try simulator.run("touch 96")

        let files = try CgroupMemoryFiles(root: cgroup.hierarchy.mountPoint, path: cgroup.path)
        #expect(files.kind == .v1)
        #expect(try files.limit() == .bytes(limit))
        // the charge is visible once the touched pages are accounted: wait for it
        let end = deadline(seconds: 10)
        var usage = try files.usage()
        while usage < 95 * mib && monotonicNanoseconds() < end {
            usleep(UInt32(20_000_000 / 1000))
            usage = try files.usage()
        }
        #expect(usage >= 95 * mib && usage < limit, "usage \(usage)")
        let stat = try files.memoryStat()
        #expect((stat.anonBytes ?? 0) >= 95 * mib, "total_rss \(stat.anonBytes ?? 0)")
        // anonymous memory without swap is not reclaimable: most of the usage
        #expect(try files.nonReclaimable(usage: usage) >= 95 * mib)
        let noHigh = try #require(throws: CgroupFileError.self) { try files.high() }
        #expect(noHigh.code == .unsupportedOnV1)
        #expect(noHigh.path == cgroup.directory + "/memory.high")
        #expect(throws: CgroupFileError.self) { try files.pressure() }

        // usage fed to the budget evaluator with the v1 limit as the budget
        var evaluator = BudgetEvaluator()
        let target = EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: cgroup.path))
        let events = evaluator.evaluate(
            target: target, now: .system(), usage: usage, budget: BudgetEvaluator.resolve(.limit, limit: limit),
            growth: nil, policy: TargetPolicy(rule: "test"))
        #expect(events.map(\.type) == [.budgetWarning], "usage \(usage) of \(limit)")

        // the node is v1, and so is the group even when the node's version is mistaken
        let state = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        var onV1 = responder(root: cgroup.hierarchy.mountPoint, version: .v1, stateDirectory: state)
        #expect(skipReasons(&onV1, cgroup: cgroup.path) == ["cgroup_v1"])
        var mistaken = responder(root: cgroup.hierarchy.mountPoint, version: .v2, stateDirectory: state)
        #expect(skipReasons(&mistaken, cgroup: cgroup.path) == ["cgroup_v1"])
        #expect(try files.limit() == .bytes(limit))  // untouched
        #expect(!FileManager.default.fileExists(atPath: state + "/state.json"))
    }

    @Test("a cgroup2 group without the memory controller: PSI read for real, memory.high absent, throttling skipped")
    func v2GroupWithoutMemoryController() throws {
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let unified = try #require(
            mountinfo.split(separator: "\n").first { $0.contains(" - cgroup2 ") }.map { String($0.split(separator: " ")[4]) },
            "no cgroup2 mount on this machine")
        let controllers = try String(contentsOfFile: unified + "/cgroup.controllers", encoding: .utf8)
        guard !controllers.split(whereSeparator: \.isWhitespace).contains("memory") else {
            throw TestFailure("\(unified) has the memory controller; this test needs a memory-less cgroup2 tree (hybrid node)")
        }
        let name = "/memwarden-test-\(getpid())-\(monotonicNanoseconds() % 1_000_000)"
        let directory = unified + name
        guard mkdir(directory, 0o755) == 0 else { throw TestFailure("mkdir \(directory): errno \(errno)") }
        defer { rmdir(directory) }

        let files = try CgroupMemoryFiles(root: unified, path: name)
        #expect(files.kind == .v2WithoutMemoryController)
        #expect(FileManager.default.fileExists(atPath: directory + "/memory.pressure"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/memory.high"))
        let pressure = try files.pressure()
        #expect(pressure.fullTotalMicroseconds != nil)
        let noHigh = try #require(throws: CgroupFileError.self) { try files.high() }
        #expect(noHigh.code == .memoryControllerMissing)
        #expect(noHigh.path == directory + "/memory.high")
        #expect(throws: CgroupFileError.self) { try files.writeHigh(.bytes(1 << 30)) }
        #expect(throws: CgroupFileError.self) { try files.usage() }

        let state = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        var r = responder(root: unified, version: .v2, stateDirectory: state)
        #expect(skipReasons(&r, cgroup: name) == ["memory_controller_missing"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/memory.high"))
        #expect(!FileManager.default.fileExists(atPath: state + "/state.json"))
    }
}
