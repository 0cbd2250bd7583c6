import Foundation
import Logging
import MemwardenIdentity
import MemwardenModel
import MemwardenResponse
import Synchronization
import Testing

let mebibyte: UInt64 = 1 << 20

/// A cgroupfs-shaped tree in a temp directory (after oomd's test fixtures):
/// groups are directories, knobs are plain files. Removed by `remove()`.
final class FakeCgroupTree {
    let root: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path + "/memwarden-cgroupfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        root = base
    }

    /// A cgroup v2 group with the memory controller.
    @discardableResult
    func v2Group(
        _ path: String, current: UInt64, max: String = "max", high: String = "max", pressureTotal: UInt64 = 0,
        stat: [String: UInt64] = [:]
    ) throws -> String {
        let directory = root + path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write(path, "cgroup.controllers", "cpu io memory pids\n")
        try write(path, "memory.current", "\(current)\n")
        try write(path, "memory.max", max + "\n")
        try write(path, "memory.high", high + "\n")
        try setPressure(path, total: pressureTotal)
        try setHighEvents(path, 0)
        var stats = ["anon": current, "file": 0, "active_file": 0, "inactive_file": 0, "slab_reclaimable": 0, "shmem": 0]
        stats.merge(stat) { $1 }
        try write(path, "memory.stat", stats.keys.sorted().map { "\($0) \(stats[$0]!)\n" }.joined())
        return directory
    }

    /// A cgroup v1 memory group.
    @discardableResult
    func v1Group(_ path: String, usage: UInt64, limit: UInt64 = 9_223_372_036_854_771_712) throws -> String {
        let directory = root + path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write(path, "memory.usage_in_bytes", "\(usage)\n")
        try write(path, "memory.limit_in_bytes", "\(limit)\n")
        try write(path, "memory.stat", "cache 0\nrss \(usage)\ntotal_rss \(usage)\ntotal_active_file 0\ntotal_inactive_file 0\n")
        return directory
    }

    /// A cgroup v2 group without the memory controller (as under a hybrid
    /// node's /sys/fs/cgroup/unified): PSI files, no memory knobs.
    @discardableResult
    func v2GroupWithoutMemory(_ path: String) throws -> String {
        let directory = root + path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write(path, "cgroup.controllers", "\n")
        try setPressure(path, total: 0)
        return directory
    }

    func setPressure(_ path: String, total: UInt64) throws {
        try write(
            path, "memory.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=\(total)\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=\(total / 2)\n")
    }

    /// memory.events with `high` at `count` (the kernel's count of breaches of memory.high).
    func setHighEvents(_ path: String, _ count: UInt64) throws {
        try write(path, "memory.events", "low 0\nhigh \(count)\nmax 0\noom 0\noom_kill 0\n")
    }

    /// A leak of anonymous memory only (no swap: none of it reclaimable).
    func setAnonymous(_ path: String, _ bytes: UInt64) throws {
        try write(path, "memory.current", "\(bytes)\n")
        try write(path, "memory.stat", "anon \(bytes)\nfile 0\nactive_file 0\ninactive_file 0\nslab_reclaimable 0\n")
    }

    func write(_ path: String, _ file: String, _ text: String) throws {
        try text.write(toFile: root + path + "/" + file, atomically: false, encoding: .utf8)
    }

    func read(_ path: String, _ file: String) throws -> String {
        try String(contentsOfFile: root + path + "/" + file, encoding: .utf8)
    }

    /// memory.high as bytes (nil: "max").
    func high(_ path: String) throws -> UInt64? {
        let text = try read(path, "memory.high").trimmingCharacters(in: .whitespacesAndNewlines)
        return text == "max" ? nil : UInt64(text)
    }

    func removeGroup(_ path: String) throws {
        try FileManager.default.removeItem(atPath: root + path)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// A clock the test moves by hand: no sleeping.
final class TestClock: Sendable {
    private let nanoseconds = Mutex<UInt64>(1_000_000_000)

    func advance(seconds: Double) {
        nanoseconds.withLock { $0 += UInt64(seconds * 1e9) }
    }

    var reading: @Sendable () -> ClockReading {
        { [self] in
            let now = nanoseconds.withLock { $0 }
            return ClockReading(monotonicNanoseconds: now, epochNanoseconds: 1_800_000_000_000_000_000 + now, t: Double(now) / 1e9)
        }
    }
}

extension AgentEvent {
    var response: ResponseDetails? {
        if case .response(let details) = details { return details }
        return nil
    }

    var budget: BudgetDetails? {
        if case .budget(let details) = details { return details }
        return nil
    }
}

func cgroupTarget(_ path: String, request: UInt64? = nil) -> EventTarget {
    let pod = request.map { PodMetadata(name: "app", namespace: "default", uid: "u", memoryRequest: $0) }
    return EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: path, pod: pod))
}

let silentLogger = Logger(label: "memwarden.test", factory: { _ in SwiftLogNoOpLogHandler() })

/// A responder over a fake cgroupfs tree, its state file inside the tree and
/// the test's clock: the setup every responder suite shares.
func fakeTreeResponder(
    tree: FakeCgroupTree, statePath: String, clock: TestClock, pageSize: UInt64, dryRun: Bool = false,
    version: CgroupHierarchy.Version? = .v2, writableSubtrees: [String] = []
) -> Responder {
    Responder(
        configuration: ResponderConfiguration(
            cgroupRoot: tree.root, version: version, stateFile: ResponseStateFile(path: statePath), dryRun: dryRun,
            pageSize: pageSize, node: "node-a", writableSubtrees: writableSubtrees),
        clock: clock.reading, logger: silentLogger)
}

/// The records a responder's state file holds; a file that does not load fails the test.
func loadedStateRecords(_ statePath: String) -> [ResponseStateRecord] {
    let (records, problem) = ResponseStateFile(path: statePath).load()
    #expect(problem == nil, "the state file \(statePath) did not load: \(String(describing: problem))")
    return records
}
