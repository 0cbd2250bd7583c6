import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenModel

/// Runs the real agent for minutes under everything at once: fault storms,
/// process and cgroup churn, policy reloads (one in three invalid) and a
/// webhook that goes down and comes back, and prints its footprint at
/// intervals and the slope of its RSS. A leak in the agent itself, a
/// descriptor or thread it never gives back, or a queue that only grows shows
/// here, where no unit test runs long enough to see it.
struct BenchSoakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "The agent under storms, churn, policy reloads and a flapping webhook: RSS, fds, threads, maps, queues, and the RSS slope.",
        discussion: """
            Needs root (the agent loads its program). Exits 1 when the agent dies, does not stop \
            cleanly, keeps descriptors or threads it opened, or (runs of 30 minutes or more) its RSS \
            grows by more than 2 MiB an hour after its first quarter.
            """)

    @Option(help: "How long the load runs.")
    var minutes: Double = 2

    @Option(help: "Seconds between rows of the table.")
    var interval: Double = 30

    @Option(help: "MiB mapped and touched per storm.")
    var stormMib: Int = 128

    @Option(help: "Seconds the webhook stays up, then down, in turn.")
    var flapSeconds: Double = 20

    @Option(help: "Seconds between rounds of load (a storm, 20 processes, a cgroup).")
    var pauseSeconds: Double = 0.5

    @Option(help: "The leaksim executable (default: next to memwarden).")
    var leaksim: String?

    func validate() throws {
        guard minutes > 0, interval > 0, stormMib > 0, flapSeconds > 0, pauseSeconds >= 0 else {
            throw ValidationError("--minutes, --interval, --storm-mib and --flap-seconds must be positive, --pause-seconds not negative")
        }
    }

    func run() throws {
        guard let simulator = leaksim ?? ChildProcess.sibling("leaksim") else {
            throw ValidationError("leaksim not found next to memwarden: pass --leaksim PATH")
        }
        guard let memwarden = ChildProcess.sibling("memwarden") else { throw ValidationError("memwarden executable not found") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-soak-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let webhook = try FlappingWebhook()
        defer { webhook.stop() }
        let policyPath = directory + "/policy.yaml"
        var policies = PolicyVersions(webhookPort: webhook.port)
        try policies.next().write(toFile: policyPath, atomically: true, encoding: .utf8)

        let agent = try ChildProcess(
            memwarden,
            ["run", "--policy", policyPath, "--listen", "127.0.0.1:0", "--stats-interval", "5", "--state-file", directory + "/state.json"],
            stdout: .pipe, stderr: .pipe)
        // both lines, in whichever order the services log them
        var port = 0
        var attached = false
        guard agent.stderr?.readLine(until: deadline(seconds: 60), where: { line in
            if line.contains("HTTP server listening"), let value = Self.port(in: line) { port = value }
            if line.contains("kernel program attached") { attached = true }
            return attached && port > 0
        }) != nil else {
            agent.signal(SIGKILL)
            throw ValidationError("the agent did not start its HTTP server and attach its program within 60 s")
        }
        var churn = CgroupChurn()
        defer { churn.remove() }

        print("## memwarden bench soak: \(fmt(minutes, 1)) min, storms of \(stormMib) MiB, webhook flapping every \(fmt(flapSeconds, 0)) s\n")
        print("| minute | RSS (MiB) | fds | threads | tracked processes | tracked cgroups | confirmation targets | webhook queue | webhook delivered / failed / dropped | lost (all stages) | policy reloads ok / rejected | webhook received |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        let start = monotonicNanoseconds()
        let end = start + UInt64(minutes * 60 * 1e9)
        var nextRow = start
        var nextPolicy = start + 15_000_000_000
        var lines = 0
        var rows: [SoakRow] = []
        var storms = 0, processes = 0
        while monotonicNanoseconds() < end {
            lines += Self.drain(agent)
            guard agent.exitCodeIfEnded() == nil else {
                throw ValidationError("the agent died during the soak (exit \(agent.exitCodeIfEnded() ?? -1))")
            }
            webhook.flap(every: flapSeconds)
            // one round of load: a storm, short-lived processes, a cgroup that comes and goes
            let storm = try ChildProcess(simulator, ["storm", "--mib", "\(stormMib)", "--passes", "1"], stdout: .null)
            for _ in 0..<20 {
                let child = try ChildProcess("/bin/true", [])
                _ = child.waitForExit()
                processes += 1
            }
            churn.cycle()
            while storm.exitCodeIfEnded() == nil { lines += Self.drain(agent); usleep(20_000) }
            storms += 1
            let pauseEnd = monotonicNanoseconds() + UInt64(pauseSeconds * 1e9)
            while monotonicNanoseconds() < pauseEnd { lines += Self.drain(agent); usleep(50_000) }
            let now = monotonicNanoseconds()
            if now >= nextPolicy {
                try policies.next().write(toFile: policyPath, atomically: true, encoding: .utf8)
                nextPolicy = now + 15_000_000_000
            }
            if now >= nextRow {
                let row = try SoakRow.read(pid: agent.pid, port: port, minute: Double(now - start) / 60e9, webhook: webhook.received)
                rows.append(row)
                print(row.markdown)
                // each row as it comes, also into a file or a CI log: a long run shows its progress
                fflush(nil)
                nextRow = now + UInt64(interval * 1e9)
            }
        }
        let last = try SoakRow.read(pid: agent.pid, port: port, minute: Double(monotonicNanoseconds() - start) / 60e9, webhook: webhook.received)
        rows.append(last)
        print(last.markdown)
        agent.signal(SIGTERM)
        let code = agent.waitForExit()
        lines += Self.drain(agent)

        let settled = rows.filter { $0.minute >= minutes / 4 }
        let slope = Self.slope(settled.map { ($0.minute / 60, $0.rssMiB) })
        let first = settled.first ?? rows[0]
        print("")
        print("| figure | value |")
        print("|---|---|")
        print("| storms, short-lived processes, cgroups created and removed | \(storms), \(processes), \(churn.cycles) |")
        print("| policy writes (one in three invalid) | \(policies.written) |")
        print("| agent lines read | \(lines) |")
        print("| RSS slope after the first quarter (MiB/hour) | \(fmt(slope, 2)) |")
        print("| RSS first quarter's end → last (MiB) | \(fmt(first.rssMiB, 1)) → \(fmt(last.rssMiB, 1)) |")
        print("| fds, threads first quarter's end → last | \(first.fds) → \(last.fds), \(first.threads) → \(last.threads) |")
        print("| agent exit on SIGTERM | \(code) |")
        if churn.unavailable { print("\n(cgroup churn was not possible here: \(churn.problem))") }

        var failures: [String] = []
        if code != 0 { failures.append("the agent exited \(code) on SIGTERM") }
        // a few descriptors come and go with connections in flight; a leak keeps climbing
        if last.fds > first.fds + 16 { failures.append("descriptors grew from \(first.fds) to \(last.fds)") }
        if last.threads > first.threads + 4 { failures.append("threads grew from \(first.threads) to \(last.threads)") }
        if minutes >= 30, slope > 2 { failures.append("RSS grows by \(fmt(slope, 2)) MiB an hour") }
        if minutes < 30 { print("\n(RSS slope not judged: runs under 30 minutes are warm-up)") }
        if !failures.isEmpty {
            print("\nFAIL: " + failures.joined(separator: "; "))
            throw ExitCode(1)
        }
        print("\nPASS")
    }

    /// The agent's stdout lines read now; its log (stderr) is read too, or a full pipe
    /// would block the agent's logging.
    static func drain(_ agent: ChildProcess) -> Int {
        _ = agent.stderr?.drainAvailable()
        return agent.stdout?.drainAvailable() ?? 0
    }

    /// "address=127.0.0.1:43210" in the agent's log line.
    static func port(in line: String) -> Int? {
        guard let range = line.range(of: "address=") else { return nil }
        let address = line[range.upperBound...].prefix { !$0.isWhitespace }
        return address.split(separator: ":").last.flatMap { Int($0) }
    }

    /// Least-squares slope of y over x.
    static func slope(_ points: [(Double, Double)]) -> Double {
        guard points.count >= 2 else { return 0 }
        let n = Double(points.count)
        let mx = points.map(\.0).reduce(0, +) / n
        let my = points.map(\.1).reduce(0, +) / n
        let sxx = points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
        guard sxx > 0 else { return 0 }
        return points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +) / sxx
    }
}

/// One row of the soak's table: the agent's footprint from /proc and its own /metrics.
struct SoakRow {
    var minute: Double
    var rssMiB: Double
    var fds: Int
    var threads: Int
    var metrics: [String: Double]
    var webhook: Int

    static func read(pid: Int32, port: Int, minute: Double, webhook: Int) throws -> SoakRow {
        let usage: ProcessUsage
        do { usage = try ProcessUsage.read(pid: pid) } catch { throw ValidationError("\(error)") }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let threads = status.split(separator: "\n").first { $0.hasPrefix("Threads:") }.flatMap { Int($0.dropFirst(8).trimmingCharacters(in: .whitespaces)) } ?? -1
        return SoakRow(
            minute: minute, rssMiB: Double(usage.residentBytes) / 1_048_576, fds: fds, threads: threads,
            metrics: MetricsScrape.get(port: port), webhook: webhook)
    }

    func metric(_ name: String) -> String {
        // a whole series name, a name (all its series), or a name with its first labels (an open "{…")
        let prefix = name.contains("{") ? name : name + "{"
        let matching = metrics.filter { $0.key == name || $0.key.hasPrefix(prefix) }
        return matching.isEmpty ? "-" : String(Int(matching.values.reduce(0, +)))
    }

    var markdown: String {
        let cells = [
            fmt(minute, 1), fmt(rssMiB, 1), "\(fds)", "\(threads)",
            metric("memwarden_kernel_tracked{map=\"process\"}"), metric("memwarden_kernel_tracked{map=\"cgroup\"}"),
            metric("memwarden_confirmation_targets{state=\"tracked\"}"), metric("memwarden_sink_queue_depth{sink=\"webhook\"}"),
            "\(metric("memwarden_sink_delivered_total{sink=\"webhook\"}")) / \(metric("memwarden_sink_failures_total{sink=\"webhook\"")) / \(metric("memwarden_sink_dropped_total{sink=\"webhook\""))",
            metric("memwarden_events_lost_total"),
            "\(metric("memwarden_policy_reloads_total")) / \(metric("memwarden_policy_reload_errors_total"))", "\(webhook)",
        ]
        return "| " + cells.joined(separator: " | ") + " |"
    }
}

/// GET /metrics over a plain socket (the bench needs nothing more than one request).
enum MetricsScrape {
    static func get(port: Int) -> [String: Double] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return [:] }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return [:] }
        let request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        var values: [String: Double] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("memwarden_") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }
}

func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// Two valid policies in turn, and every third write a broken one (the agent must keep
/// the last good policy and say so). Each sends events to the webhook.
struct PolicyVersions {
    let webhookPort: Int
    private(set) var written = 0

    mutating func next() -> String {
        written += 1
        if written % 3 == 0 { return "apiVersion: memwarden.io/v1\nkind: MemwardenPolicy\ndefaults: [this is not a mapping\n" }
        let warning = written % 2 == 0 ? "70%" : "75%"
        return """
            apiVersion: memwarden.io/v1
            kind: MemwardenPolicy
            defaults:
              tiers: {warning: \(warning), high: 80%, critical: 90%, emergency: 95%}
            outputs:
              webhook:
                url: http://127.0.0.1:\(webhookPort)/soak
                queueSize: 100

            """
    }
}

/// A cgroup below our own memory cgroup, created, given a short-lived process, and removed,
/// once per round (what a pod's containers do to the agent's cgroup index). Best effort: a
/// node where we may not create one says so in the output.
struct CgroupChurn {
    private(set) var cycles = 0
    private(set) var problem = ""
    var unavailable: Bool { !problem.isEmpty }
    private var created: [String] = []

    init() {
        guard let base = Self.ownMemoryCgroup() else {
            problem = "no memory cgroup of ours found in /proc/self/cgroup"
            return
        }
        self.base = base
    }

    private var base = ""

    static func ownMemoryCgroup() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[1].split(separator: ",").contains("memory") { return "/sys/fs/cgroup/memory" + fields[2] }
            if fields[0] == "0", FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
                return "/sys/fs/cgroup" + fields[2]
            }
        }
        return nil
    }

    mutating func cycle() {
        guard !unavailable else { return }
        let path = base + "/memwarden-soak-\(getpid())-\(cycles % 4)"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            problem = "mkdir \(path): \(String(cString: strerror(errno)))"
            return
        }
        created.append(path)
        if let child = try? ChildProcess("/bin/sh", ["-c", "echo $$ > \"$0/cgroup.procs\" && exec /bin/true", path]) {
            _ = child.waitForExit()
        }
        // an emptied cgroup can be removed once the kernel has seen its last process go
        for _ in 0..<100 where rmdir(path) != 0 { usleep(10_000) }
        created.removeAll { !FileManager.default.fileExists(atPath: $0) }
        cycles += 1
    }

    func remove() {
        for path in created { rmdir(path) }
    }
}

/// An HTTP receiver on a loopback port that answers 200 while up and refuses connections
/// while down (its listening socket closed), in turns: the agent's webhook sink must queue,
/// drop the oldest and count, and go on.
final class FlappingWebhook: @unchecked Sendable {
    let port: Int
    private let lock = NSLock()
    private var listener: Int32 = -1
    private var up = true
    private var changed = monotonicNanoseconds()
    private var count = 0
    private var stopped = false
    private var thread: Thread?

    var received: Int { lock.withLock { count } }

    init() throws {
        let fd = Self.listen(port: 0)
        guard fd >= 0 else { throw ValidationError("cannot listen for the soak's webhook on 127.0.0.1") }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        listener = fd
        let thread = Thread { [self] in serve() }
        self.thread = thread
        thread.start()
    }

    static func listen(port: Int) -> Int32 {
        // close-on-exec: the agent and the load are spawned from this process, and a copy of
        // the listening socket in them would keep the port taken while the webhook is "down"
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    /// Up for `seconds`, then down for as long, and so on.
    func flap(every seconds: Double) {
        lock.withLock {
            guard monotonicNanoseconds() - changed >= UInt64(seconds * 1e9) else { return }
            changed = monotonicNanoseconds()
            up.toggle()
            if up {
                listener = Self.listen(port: port)
            } else {
                close(listener)
                listener = -1
            }
        }
    }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let fd: Int32 = lock.withLock { stopped ? -2 : listener }
            if fd == -2 { return }
            guard fd >= 0 else {
                usleep(50_000)
                continue
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let connection = accept(fd, nil, nil)
            if connection >= 0 { _ = fcntl(connection, F_SETFD, FD_CLOEXEC) }
            guard connection >= 0 else { continue }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // read the headers and the body its Content-Length announces
            var request: [UInt8] = []
            while true {
                let n = recv(connection, &buffer, buffer.count, 0)
                if n <= 0 { break }
                request += buffer[0..<n]
                let text = String(decoding: request, as: UTF8.self)
                if let headerEnd = text.range(of: "\r\n\r\n") {
                    let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                    if text.utf8.distance(from: headerEnd.upperBound, to: text.endIndex) >= length { break }
                }
            }
            let response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            _ = response.withCString { send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            close(connection)
            if !request.isEmpty { lock.withLock { count += 1 } }
        }
    }

    func stop() {
        lock.withLock {
            stopped = true
            if listener >= 0 { close(listener) }
            listener = -1
        }
    }
}
