import Foundation
import Logging
import MemwardenIdentity
import MemwardenModel
import MemwardenResponse
import MemwardenTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// Collects what a stage or service submits.
final class CollectingSink: EventSink {
    let name = "test"
    private let events = Mutex<[AgentEvent]>([])

    func submit(_ event: AgentEvent) { events.withLock { $0.append(event) } }

    var all: [AgentEvent] { events.withLock { $0 } }

    /// Waits for an event that matches; the failure lists the types seen.
    func waitFor(_ what: String, _ match: (AgentEvent) -> Bool) async throws -> AgentEvent {
        try await MemwardenTestSupport.waitFor(what, seen: { "\(all.map(\.type.rawValue))" }) { all.first(where: match) }
    }
}

/// The responder as the agent runs it: in a ServiceGroup, fed through the
/// ResponseStage, restoring at start and at graceful shutdown.
@Suite struct ResponderServiceTests {
    @Test("start restores a crashed run's records; budget and leak facts start a throttle; graceful shutdown restores it")
    func lifecycle() async throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        let clock = TestClock()
        let path = "/kubepods/pod1/app"
        let leftover = "/kubepods/pod0/old"
        try tree.v2Group(path, current: 900 * mebibyte, max: String(1024 * mebibyte), stat: ["anon": 800 * mebibyte, "inactive_file": 100 * mebibyte])
        let old = try tree.v2Group(leftover, current: 10 * mebibyte, high: "4194304")
        let stateFile = ResponseStateFile(path: tree.root + "/state.json")
        let inode = try #require(FileManager.default.attributesOfItem(atPath: old)[.systemFileNumber] as? UInt64)
        try stateFile.save([
            ResponseStateRecord(
                key: "cgroup:\(leftover)", cgroup: leftover, directory: old, inode: inode, original: "max", written: "4194304",
                rule: "r", sinceEpochNanoseconds: 1)
        ])

        let sink = CollectingSink()
        let responder = Responder(
            configuration: ResponderConfiguration(cgroupRoot: tree.root, version: .v2, stateFile: stateFile, pageSize: 4096),
            clock: clock.reading, logger: silentLogger)
        let service = ResponderService(responder: responder, sink: sink, tickInterval: .milliseconds(10))
        let stage = ResponseStage(responder: service, sink: sink, node: "n1", clock: clock.reading)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [service], logger: silentLogger))

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let recovered = try await sink.waitFor("restore of the leftover record") {
                $0.type == .responseRestore && $0.target?.identity.cgroup == leftover
            }
            #expect(recovered.response?.reason == "agent_restarted")
            #expect(try tree.read(leftover, "memory.high") == "max")

            let policy = TargetPolicy(
                rule: "shop", budget: .limit, mode: .throttle, throttle: ThrottleSettings(minSuspected: .zero))
            let target = cgroupTarget(path)
            let leak = AgentEvent(
                type: .leakSuspected, severity: .warning, epochNanoseconds: 0,
                target: EventTarget(scope: .process, pid: 7, comm: "app", identity: TargetIdentity(cgroup: path)),
                details: .leak(
                    LeakDetails(
                        detectors: ["trend"], confidence: 0.9, growthBytesPerSecond: 1 << 20, secondsToLimit: nil, limit: nil,
                        reasons: [], suspectedSeconds: nil)))
            stage.leak(leak, policy: policy)
            stage.usage(target, usage: 900 * mebibyte, limit: 1024 * mebibyte, growth: 1 << 20, policy: policy)
            // 900 of 1024 MiB: 88 %, the high tier
            let budget = try await sink.waitFor("budget event") { $0.type == .budgetHigh }
            #expect(budget.budget?.secondsToBudget == 124)
            let throttle = try await sink.waitFor("throttle") { $0.type == .responseThrottle }
            #expect(throttle.response?.memoryHighAfter == 900 * mebibyte)
            #expect(try tree.high(path) == 900 * mebibyte)
            #expect(service.throttled == ["cgroup:\(path)": 900 * mebibyte])

            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
        let restore = try #require(sink.all.first { $0.type == .responseRestore && $0.target?.identity.cgroup == path })
        #expect(restore.response?.reason == "agent_stopping")
        #expect(try tree.read(path, "memory.high") == "max")
        #expect(stateFile.load().records.isEmpty)
    }

    @Test("facts return at once: the write happens on the service's own tick; a full inbox drops the oldest and counts them")
    func factsWaitInABoundedInbox() async throws {
        let tree = try FakeCgroupTree()
        defer { tree.remove() }
        let path = "/kubepods/pod1/app"
        try tree.v2Group(path, current: 900 * mebibyte, max: String(1024 * mebibyte), stat: ["anon": 800 * mebibyte, "inactive_file": 100 * mebibyte])
        let sink = CollectingSink()
        let responder = Responder(
            configuration: ResponderConfiguration(
                cgroupRoot: tree.root, version: .v2, stateFile: ResponseStateFile(path: tree.root + "/state.json"), pageSize: 4096),
            clock: TestClock().reading, logger: silentLogger)
        let service = ResponderService(responder: responder, sink: sink, tickInterval: .milliseconds(10))
        let policy = TargetPolicy(rule: "shop", budget: .limit, mode: .throttle, throttle: ThrottleSettings(minSuspected: .zero))
        let target = cgroupTarget(path)
        let verdict = LeakVerdict(confidence: 0.9)
        // before the service runs: nothing is done on the caller's task, however many facts come
        let facts = ResponderService.inboxCapacity + 100
        for _ in 0..<facts { service.leakSuspected(target, policy: policy, verdict: verdict) }
        for _ in 0..<1000 { service.budgetTier(.high, target: target, policy: policy) }
        #expect(service.dropped == 100, "the oldest beyond the capacity; a tier keeps only its newest value")
        #expect(sink.all.isEmpty)
        #expect(try tree.read(path, "memory.high") == "max\n", "untouched, as the fixture wrote it")

        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [service], logger: silentLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let throttle = try await sink.waitFor("the throttle, on the service's tick") { $0.type == .responseThrottle }
            #expect(throttle.response?.memoryHighAfter == 900 * mebibyte)
            #expect(try tree.high(path) == 900 * mebibyte)
            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
        #expect(try tree.read(path, "memory.high").trimmingCharacters(in: .newlines) == "max")
    }
}
