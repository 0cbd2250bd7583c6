import CSystemd
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The agent's side of systemd's notify protocol (`Type=notify`, `WatchdogSec=`):
/// READY=1 once the agent really watches (program attached, policy loaded),
/// STOPPING=1 when graceful shutdown begins, WATCHDOG=1 while it is alive.
///
/// Outside systemd (no `NOTIFY_SOCKET`: a container, a shell) every call is a
/// no-op, so the agent calls it unconditionally.
public struct SystemdNotifier: Sendable {
    /// Sends one notify message; returns sd_notify's result (> 0 sent, 0 no
    /// socket, < 0 a negative errno). A seam only so the watchdog's timing can
    /// be tested without a socket; the agent uses libsystemd.
    public typealias Transport = @Sendable (String) -> Int32

    /// How often systemd expects a WATCHDOG=1 (`WatchdogSec=`), or nil when
    /// the watchdog is off.
    public let watchdogInterval: Duration?
    private let transport: Transport
    private let logger: Logger
    /// Shared by the copies of one notifier: a shutdown that overtakes a slow
    /// start (the program attaching after SIGTERM) must not announce READY=1.
    private let stopped = SharedFlag()

    private final class SharedFlag: Sendable {
        let value = Atomic<Bool>(false)
    }

    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (through sd_watchdog_enabled,
    /// which also honours `WATCHDOG_PID`) from the environment systemd gave us.
    public init(logger: Logger) {
        var microseconds: UInt64 = 0
        let enabled = sd_watchdog_enabled(0, &microseconds)
        if enabled < 0 {
            logger.warning(
                "systemd watchdog settings unreadable, watchdog off",
                metadata: ["WATCHDOG_USEC": "\(getenv("WATCHDOG_USEC").map { String(cString: $0) } ?? "")",
                           "error": "\(String(cString: strerror(-enabled)))"])
        }
        self.init(
            watchdogInterval: enabled > 0 && microseconds > 0 ? .microseconds(Int64(clamping: microseconds)) : nil,
            logger: logger,
            transport: { message in sd_notify(0, message) })
    }

    public init(watchdogInterval: Duration?, logger: Logger, transport: @escaping Transport) {
        self.watchdogInterval = watchdogInterval
        self.transport = transport
        self.logger = logger
    }

    /// The agent is up: the kernel program is attached and the policy loaded.
    public func ready() {
        guard !stopped.value.load(ordering: .acquiring) else { return }
        send("READY=1\nSTATUS=watching")
    }

    /// Graceful shutdown has begun: systemd shows "deactivating" and waits
    /// for the exit (`TimeoutStopSec=`) instead of treating it as a crash.
    public func stopping() {
        stopped.value.store(true, ordering: .releasing)
        send("STOPPING=1\nSTATUS=shutting down")
    }

    /// The agent is alive; systemd restarts it when pings stop for `WatchdogSec=`.
    public func watchdogPing() { send("WATCHDOG=1") }

    /// A free-form status line for `systemctl status`.
    public func status(_ text: String) {
        send("STATUS=" + text.filter { $0 != "\n" })
    }

    private func send(_ message: String) {
        let result = transport(message)
        if result < 0 {
            // never fatal: a lost notification makes systemd time out, which it reports itself
            logger.warning(
                "sd_notify failed",
                metadata: ["message": "\(message.prefix { $0 != "\n" })", "error": "\(String(cString: strerror(-result)))"])
        }
    }
}

/// Pings systemd's watchdog at half its interval (sd_watchdog_enabled(3)'s
/// advice: a late ping is a restart) until graceful shutdown, then sends
/// STOPPING=1. Without a watchdog it only waits for the shutdown to send
/// STOPPING=1, so the agent can add it unconditionally.
///
/// Add it last to the ServiceGroup: graceful shutdown runs in reverse order,
/// so STOPPING=1 goes out first, before the source and sinks finish.
public struct SystemdWatchdog: Service {
    public let notifier: SystemdNotifier

    public init(notifier: SystemdNotifier) {
        self.notifier = notifier
    }

    public func run() async throws {
        if let interval = notifier.watchdogInterval {
            // a WatchdogSec= of a few microseconds would make this a busy loop
            let period = max(interval / 2, .milliseconds(1))
            // a shutdown cancels the sleep; a cancelled group ends the loop the same way
            try? await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    notifier.watchdogPing()
                    try await Task.sleep(for: period)
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        notifier.stopping()
    }
}
