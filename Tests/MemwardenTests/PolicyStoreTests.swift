import Foundation
import Logging
import MemwardenTestSupport
import ServiceLifecycle
import Synchronization
import Testing

@testable import MemwardenModel
@testable import MemwardenPolicy

/// The store's hot reload against real files in a temp directory: edits in
/// place, renames over, a Kubernetes ConfigMap `..data` swap, bad content and
/// a deleted file. Every wait has a deadline and names what it waits for.
struct PolicyStoreTests {
    static let good = "apiVersion: memwarden.io/v1\nrules:\n  - {name: one, match: {namespace: a}, budget: 1Gi}\n"
    static let better = "apiVersion: memwarden.io/v1\nrules:\n  - {name: one, match: {namespace: a}, budget: 2Gi}\n"
    static let bad = "apiVersion: memwarden.io/v1\nrules:\n  - {name: one, match: {namespace: a}, budget: 2GB}\n"
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    static let target = TargetIdentity(cgroup: "/kubepods/p/c", pod: PodMetadata(name: "p", namespace: "a", uid: "u"))

    /// A temp directory removed at the end.
    final class Directory {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-policy-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }

        func write(_ text: String, to name: String) throws {
            try text.write(toFile: path + "/" + name, atomically: false, encoding: .utf8)
        }
    }

    final class Events: Sendable {
        private let events = Mutex<[AgentEvent]>([])
        func append(_ event: AgentEvent) { events.withLock { $0.append(event) } }
        var all: [AgentEvent] { events.withLock { $0 } }
        func count(_ type: AgentEvent.EventType) -> Int { all.filter { $0.type == type }.count }
        func last(_ type: AgentEvent.EventType) -> PolicyDetails? {
            guard case .policy(let details) = all.last(where: { $0.type == type })?.details else { return nil }
            return details
        }
    }

    final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// Waits until the events hold what `condition` asks, naming `what`.
    @discardableResult
    static func wait(for what: String, in events: Events, _ condition: () -> Bool) async throws -> Duration {
        try await waitUntil(what, seen: { "\(events.all.map(\.type.rawValue))" }, condition)
    }

    /// Runs the store's Service for the duration of `body`.
    static func running(_ store: PolicyStore, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            do {
                try await body()
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
            try await group.waitForAll()
        }
    }

    static func budget(_ store: PolicyStore) -> Budget? { store.resolve(for: target).budget }

    @Test func editInPlaceIsReloaded() async throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let store = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet, onEvent: events.append)
        #expect(Self.budget(store) == .bytes(1 << 30))
        try await Self.running(store) {
            // same inode, new content: truncate and write
            let handle = try #require(FileHandle(forWritingAtPath: directory.path + "/policy.yaml"))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(Self.better.utf8))
            try handle.close()
            let took = try await Self.wait(for: "policy.reloaded after an edit in place", in: events) { events.count(.policyReloaded) == 1 }
            print("policy reload after an edit in place: \(took)")
        }
        #expect(Self.budget(store) == .bytes(2 << 30))
        #expect(store.statistics.reloads == 1)
        #expect(store.statistics.generation == 1)
        #expect(events.last(.policyReloaded) == PolicyDetails(file: directory.path + "/policy.yaml", rules: 1))
    }

    @Test func renameOverIsReloaded() async throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let store = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet, onEvent: events.append)
        try await Self.running(store) {
            try directory.write(Self.better, to: ".policy.yaml.tmp")
            #expect(rename(directory.path + "/.policy.yaml.tmp", directory.path + "/policy.yaml") == 0)
            let took = try await Self.wait(for: "policy.reloaded after a rename over the file", in: events) { events.count(.policyReloaded) == 1 }
            print("policy reload after a rename: \(took)")
        }
        #expect(Self.budget(store) == .bytes(2 << 30))
        #expect(events.count(.policyRejected) == 0)
    }

    /// The kubelet's layout: `policy.yaml -> ..data/policy.yaml`, `..data ->
    /// ..<timestamp>`; an update writes a new timestamped directory and renames
    /// a new `..data` symlink over the old one, then removes the old directory.
    @Test func configMapDataSymlinkSwapIsReloaded() async throws {
        let directory = try Directory()
        let fm = FileManager.default
        let first = "..2024_01_01_00_00_00.123"
        try fm.createDirectory(atPath: directory.path + "/" + first, withIntermediateDirectories: false)
        try directory.write(Self.good, to: first + "/policy.yaml")
        try fm.createSymbolicLink(atPath: directory.path + "/..data", withDestinationPath: first)
        try fm.createSymbolicLink(atPath: directory.path + "/policy.yaml", withDestinationPath: "..data/policy.yaml")
        let events = Events()
        let store = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet, onEvent: events.append)
        #expect(Self.budget(store) == .bytes(1 << 30))
        #expect(PolicyStore.configMapData(of: store.path) == first)
        try await Self.running(store) {
            let second = "..2024_01_01_00_05_00.456"
            try fm.createDirectory(atPath: directory.path + "/" + second, withIntermediateDirectories: false)
            try directory.write(Self.better, to: second + "/policy.yaml")
            try fm.createSymbolicLink(atPath: directory.path + "/..data_tmp", withDestinationPath: second)
            #expect(rename(directory.path + "/..data_tmp", directory.path + "/..data") == 0)
            try fm.removeItem(atPath: directory.path + "/" + first)
            let took = try await Self.wait(for: "policy.reloaded after the ..data swap", in: events) { events.count(.policyReloaded) == 1 }
            print("policy reload after a ConfigMap ..data swap: \(took)")
            #expect(PolicyStore.configMapData(of: store.path) == second)
        }
        #expect(Self.budget(store) == .bytes(2 << 30))
        #expect(events.count(.policyRejected) == 0)
    }

    @Test func badReloadKeepsTheLastGoodPolicyAndSaysWhy() async throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let path = directory.path + "/policy.yaml"
        let store = try PolicyStore(path: path, logger: Self.quiet, onEvent: events.append)
        try await Self.running(store) {
            try directory.write(Self.bad, to: "policy.yaml")
            try await Self.wait(for: "policy.rejected for the bad file", in: events) { events.count(.policyRejected) == 1 }
            #expect(Self.budget(store) == .bytes(1 << 30))
            #expect(store.statistics.rejections == 1)
            #expect(events.last(.policyRejected)?.problems == ["\(path):3:48: rules[0].budget: '2GB': unknown unit 'GB' (expected Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or none)"])
            #expect(store.statistics.lastProblems.map(\.path) == ["rules[0].budget"])
            // the same bad content is not reported again, however long it stays: the store
            // judges it twice more (a sleep would not prove it looked at all)
            let polls = store.statistics.polls
            try await waitUntil("two more polls of the unchanged bad file") { store.statistics.polls >= polls + 2 }
            #expect(store.statistics.rejections == 1)
            try directory.write(Self.good, to: "policy.yaml")
            try await Self.wait(for: "policy.reloaded when the file is good again", in: events) { events.count(.policyReloaded) == 1 }
            try directory.write(Self.better, to: "policy.yaml")
            try await Self.wait(for: "policy.reloaded with the new content", in: events) { events.count(.policyReloaded) == 2 }
        }
        #expect(Self.budget(store) == .bytes(2 << 30))
        #expect(events.count(.policyRejected) == 1)
        #expect(store.statistics.lastProblems.isEmpty)
        // the event's JSON line carries the problems
        let rejected = try #require(events.all.first { $0.type == .policyRejected })
        #expect(rejected.severity == .warning)
        #expect(rejected.jsonLine().contains(#""problems":["#))
    }

    @Test func deletedFileKeepsTheLastGoodPolicyAndSaysSo() async throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let path = directory.path + "/policy.yaml"
        let store = try PolicyStore(path: path, logger: Self.quiet, onEvent: events.append)
        try await Self.running(store) {
            try FileManager.default.removeItem(atPath: path)
            try await Self.wait(for: "policy.rejected for the missing file", in: events) { events.count(.policyRejected) == 1 }
            #expect(Self.budget(store) == .bytes(1 << 30))
            let problems = events.last(.policyRejected)?.problems ?? []
            #expect(problems == ["\(path): the file is gone; keeping the last good policy (1 rule, digest \(PolicyStore.digest(Self.good)))"])
            // it comes back unchanged: said once, nothing swapped
            try directory.write(Self.good, to: "policy.yaml")
            try await Self.wait(for: "policy.reloaded when the file is back", in: events) { events.count(.policyReloaded) == 1 }
        }
        #expect(store.statistics.generation == 0)
        #expect(events.count(.policyRejected) == 1)
    }

    @Test func invalidContentIsReportedOnlyWhenStableAndOnlyOnce() throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let store = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet, onEvent: events.append)
        // an editor caught half way: the next poll sees the whole file
        try directory.write("apiVersion: memwarden.io/v1\nrules:\n  - {name: one, match: {names", to: "policy.yaml")
        store.poll()
        #expect(events.all.isEmpty)
        try directory.write(Self.better, to: "policy.yaml")
        store.poll()
        #expect(events.all.map(\.type) == [.policyReloaded])
        try directory.write(Self.bad, to: "policy.yaml")
        store.poll()
        store.poll()
        store.poll()
        store.poll()
        #expect(events.all.map(\.type) == [.policyReloaded, .policyRejected])
        #expect(Self.budget(store) == .bytes(2 << 30))
    }

    @Test func startRefusesAnInvalidFile() throws {
        let directory = try Directory()
        try directory.write(Self.bad, to: "policy.yaml")
        #expect {
            _ = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet)
        } throws: { error in
            (error as? PolicyError)?.problems.map(\.path) == ["rules[0].budget"]
        }
    }

    @Test func missingFileIsTheBuiltInPolicyOrAnErrorAsAsked() async throws {
        let directory = try Directory()
        let path = directory.path + "/policy.yaml"
        #expect(throws: PolicyError.self) { _ = try PolicyStore(path: path, missingFile: .fail, logger: Self.quiet) }
        let events = Events()
        let store = try PolicyStore(path: path, missingFile: .useBuiltIn, logger: Self.quiet, onEvent: events.append)
        #expect(store.policy == .builtIn)
        #expect(store.resolve(for: Self.target) == .builtIn)
        #expect(!store.statistics.fromFile)
        store.poll()
        store.poll()
        #expect(events.all.isEmpty, "no file and never had one: nothing to say")
        // a ConfigMap created later is picked up
        try await Self.running(store) {
            try directory.write(Self.good, to: "policy.yaml")
            try await Self.wait(for: "policy.reloaded when the file appears", in: events) { events.count(.policyReloaded) == 1 }
        }
        #expect(Self.budget(store) == .bytes(1 << 30))
        #expect(store.statistics.fromFile)
    }
}

extension PolicyStoreTests {
    /// The way `run` wires it: one Service of the agent's ServiceGroup, which
    /// ends when the group shuts down gracefully.
    @Test func endsOnGracefulShutdownOfItsServiceGroup() async throws {
        let directory = try Directory()
        try directory.write(Self.good, to: "policy.yaml")
        let events = Events()
        let store = try PolicyStore(path: directory.path + "/policy.yaml", logger: Self.quiet, onEvent: events.append)
        let group = ServiceGroup(services: [store], logger: Self.quiet)
        let ended = Flag()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                defer { ended.set() }
                try await group.run()
            }
            try directory.write(Self.better, to: "policy.yaml")
            try await Self.wait(for: "policy.reloaded under a ServiceGroup", in: events) { events.count(.policyReloaded) == 1 }
            await group.triggerGracefulShutdown()
            // a store that ignored the shutdown would hold the group forever: fail instead of hanging
            try await waitUntil("the ServiceGroup to end after its graceful shutdown") { ended.isSet }
            try await tasks.waitForAll()
        }
        #expect(Self.budget(store) == .bytes(2 << 30))
    }
}

