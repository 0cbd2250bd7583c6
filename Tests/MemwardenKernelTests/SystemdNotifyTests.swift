import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport

/// `memwarden run` under systemd's notify protocol: the test plays systemd,
/// listening on a Unix datagram socket named by NOTIFY_SOCKET.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct SystemdNotifyTests {
    /// A bound AF_UNIX datagram socket in a fresh temp directory; removed on close.
    final class NotifySocket {
        let directory: String
        let path: String
        let fd: Int32

        init() throws {
            var template = Array((FileManager.default.temporaryDirectory.path + "/memwarden-notify-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
            directory = String(cString: made)
            path = directory + "/notify.sock"
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { throw TestFailure("bind \(path): \(String(cString: strerror(errno)))") }
        }

        deinit {
            close(fd)
            unlink(path)
            rmdir(directory)
        }

        /// The next datagram, or nil when none arrives before the deadline.
        func receive(deadline: UInt64) -> String? {
            while true {
                let now = monotonicNanoseconds()
                guard now < deadline else { return nil }
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&descriptor, 1, Int32(min((deadline - now) / 1_000_000 + 1, 1000)))
                guard ready > 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { return String(decoding: buffer[0..<n], as: UTF8.self) }
            }
        }
    }

    /// Reads datagrams until one starts with `prefix` or the deadline passes; returns all read.
    static func receive(_ socket: NotifySocket, until prefix: String, seconds: Double) -> [(text: String, at: UInt64)] {
        var messages: [(text: String, at: UInt64)] = []
        let end = deadline(seconds: seconds)
        while let message = socket.receive(deadline: end) {
            messages.append((message, monotonicNanoseconds()))
            if message.hasPrefix(prefix) { break }
        }
        return messages
    }

    @Test("run sends READY=1 once attached, WATCHDOG=1 at half WATCHDOG_USEC, STOPPING=1 on SIGTERM, and exits 0")
    func readyWatchdogStopping() throws {
        let socket = try NotifySocket()
        let agent = try ChildProcess(
            try AgentCommandTests.memwarden(), ["run", "--listen", "127.0.0.1:0"], stdout: .null, stderr: .pipe,
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000"])
        defer { agent.signal(SIGKILL) }
        // loading the program takes seconds on a busy machine: READY=1 says when it is done
        let start = Self.receive(socket, until: "READY=1", seconds: 60)
        try #require(start.last?.text == "READY=1\nSTATUS=watching", "no READY=1 within 60 s: \(start.map(\.text))")
        // waiting for five pings after READY=1 (10 s at most; they are due every 0.5 s)
        var pings: [UInt64] = []
        let end = deadline(seconds: 10)
        while pings.count < 5, let message = socket.receive(deadline: end) {
            #expect(message == "WATCHDOG=1", "unexpected message while running: \(message)")
            pings.append(monotonicNanoseconds())
        }
        try #require(pings.count == 5, "\(pings.count) pings within 10 s of READY=1 for WATCHDOG_USEC=1 s")
        let gaps = zip(pings.dropFirst(), pings).map { Double($0 - $1) / 1e9 }
        // half the interval: sleeps only overshoot (allow the receiver's own scheduling jitter)
        // and a ping never comes later than the interval itself
        #expect(gaps.allSatisfy { $0 > 0.4 && $0 < 1.0 }, "gaps between pings in seconds: \(gaps)")
        agent.signal(SIGTERM)
        let stop = Self.receive(socket, until: "STOPPING=1", seconds: 30)
        #expect(stop.last?.text == "STOPPING=1\nSTATUS=shutting down", "no STOPPING=1 within 30 s of SIGTERM: \(stop.map(\.text))")
        #expect(stop.dropLast().allSatisfy { $0.text == "WATCHDOG=1" }, "\(stop.map(\.text))")
        let code = agent.waitForExit(deadline: deadline(seconds: 30))
        #expect(code == 0, "exit code: \(String(describing: code))")
        #expect(socket.receive(deadline: deadline(seconds: 0.2)) == nil, "a message after STOPPING=1")
    }

    @Test("WATCHDOG_PID of another process turns the watchdog off (it was meant for a parent), READY/STOPPING still go out")
    func watchdogForAnotherPid() throws {
        let socket = try NotifySocket()
        let agent = try ChildProcess(
            try AgentCommandTests.memwarden(), ["run", "--listen", "127.0.0.1:0", "--stats-interval", "0.5"], stdout: .pipe, stderr: .pipe,
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "\(getpid())"])
        defer { agent.signal(SIGKILL) }
        let start = Self.receive(socket, until: "READY=1", seconds: 60)
        try #require(start.last?.text.hasPrefix("READY=1") == true, "no READY=1 within 60 s: \(start.map(\.text))")
        // three stats lines (1.5 s at --stats-interval 0.5) span the time of three pings, had the watchdog been on
        var stats = 0
        while stats < 3, agent.stdout?.readLine(until: deadline(seconds: 10), where: { $0.contains("\"type\":\"stats\"") }) != nil {
            stats += 1
        }
        try #require(stats == 3, "only \(stats) stats lines within 10 s")
        agent.signal(SIGTERM)
        let stop = Self.receive(socket, until: "STOPPING=1", seconds: 30)
        #expect(stop.map(\.text) == ["STOPPING=1\nSTATUS=shutting down"], "between READY=1 and shutdown: \(stop.map(\.text))")
        #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0)
    }
}
