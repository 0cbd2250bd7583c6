import Logging
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// The watchdog's timing and its STOPPING=1 at shutdown, through the notifier's
/// transport seam (the real sd_notify path is tested end to end in
/// MemwardenKernelTests.SystemdNotifyTests).
@Suite struct SystemdWatchdogTests {
    /// What the notifier sent, with the monotonic time of each message.
    final class Recorder: Sendable {
        private let messages = Mutex<[(String, UInt64)]>([])
        var sent: [(String, UInt64)] { messages.withLock { $0 } }
        func transport(_ message: String) -> Int32 {
            messages.withLock { $0.append((message, monotonicNanoseconds())) }
            return 1
        }
    }

    /// Runs the watchdog in a ServiceGroup until what it sent satisfies `until` (named by
    /// `what`), then shuts the group down gracefully and returns what was sent.
    static func run(
        interval: Duration?, until what: String, _ until: @escaping @Sendable ([(String, UInt64)]) -> Bool
    ) async throws -> [(String, UInt64)] {
        let recorder = Recorder()
        let notifier = SystemdNotifier(watchdogInterval: interval, logger: Logger(label: "test"), transport: recorder.transport)
        let group = ServiceGroup(services: [SystemdWatchdog(notifier: notifier)], logger: Logger(label: "test"))
        try await withThrowingTaskGroup { tasks in
            tasks.addTask { try await group.run() }
            try await waitUntil(what, seen: { "\(recorder.sent.map(\.0)) at gaps in ms \(gaps(recorder.sent))" }) {
                until(recorder.sent)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        return recorder.sent
    }

    /// Milliseconds between consecutive pings.
    static func gaps(_ sent: [(String, UInt64)]) -> [Double] {
        let pings = sent.filter { $0.0 == "WATCHDOG=1" }
        return zip(pings.dropFirst(), pings).map { Double($0.1 - $1.1) / 1e6 }
    }

    @Test("pings at half the watchdog interval until graceful shutdown, then sends STOPPING=1 once")
    func pingsAtHalfInterval() async throws {
        // a loaded machine delays some pings past 190 ms (sleeps only overshoot); waiting for one
        // that ran on time keeps the check whether the schedule is half the interval, which a ping
        // at the full 200 ms could never pass
        let sent = try await Self.run(interval: .milliseconds(200), until: "8 pings, two of them under 190 ms apart") {
            Self.gaps($0).count >= 7 && Self.gaps($0).contains { $0 < 190 }
        }
        let pings = sent.filter { $0.0 == "WATCHDOG=1" }
        #expect(pings.count >= 8, "pings: \(pings.count)")
        // half of 200 ms: never sooner than 100 ms apart, and, whenever the pool lets it run on
        // time, well before the 200 ms at which systemd would restart
        let gaps = Self.gaps(sent)
        #expect(gaps.allSatisfy { $0 >= 99 }, "gaps in ms: \(gaps)")
        #expect(gaps.min().map { $0 < 190 } == true, "gaps in ms: \(gaps)")
        #expect(sent.last?.0.hasPrefix("STOPPING=1") == true, "last message: \(String(describing: sent.last))")
        #expect(sent.filter { $0.0.hasPrefix("STOPPING=1") }.count == 1)
    }

    @Test("without a watchdog it sends nothing until shutdown, then only STOPPING=1")
    func noWatchdog() async throws {
        let sent = try await Self.run(interval: nil, until: "nothing") { _ in true }
        #expect(sent.map(\.0) == ["STOPPING=1\nSTATUS=shutting down"])
    }

    @Test("a failing socket is logged, never fatal: every message is still attempted")
    func failingTransportIsNotFatal() {
        let attempts = Mutex<[String]>([])
        let notifier = SystemdNotifier(watchdogInterval: nil, logger: Logger(label: "test")) { message in
            attempts.withLock { $0.append(message) }
            return -111  // -ECONNREFUSED: systemd went away
        }
        notifier.ready()
        notifier.watchdogPing()
        notifier.status("two\nlines")
        notifier.stopping()
        #expect(attempts.withLock { $0 } == ["READY=1\nSTATUS=watching", "WATCHDOG=1", "STATUS=twolines", "STOPPING=1\nSTATUS=shutting down"])
    }

    @Test("READY=1 after STOPPING=1 is not sent: a shutdown overtook a slow start")
    func noReadyAfterStopping() {
        let recorder = Recorder()
        let notifier = SystemdNotifier(watchdogInterval: nil, logger: Logger(label: "test"), transport: recorder.transport)
        let copy = notifier  // the kernel source holds a copy of the agent's notifier
        notifier.stopping()
        copy.ready()
        #expect(recorder.sent.map(\.0) == ["STOPPING=1\nSTATUS=shutting down"])
    }
}
