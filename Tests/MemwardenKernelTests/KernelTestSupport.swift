import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenKernel
import MemwardenModel
import MemwardenTestSupport

/// Kernel tests need root (or CAP_BPF + CAP_PERFMON), kernel BTF and tracefs.
/// Elsewhere they skip and say why; with CI=true they never skip: they run and
/// fail on the missing piece, so a CI machine without it cannot pass quietly.
enum KernelAccess {
    static let isCI = getenv("CI").map { String(cString: $0) == "true" } ?? false

    /// Why the kernel tests cannot run here, or nil when they can.
    static let unavailableReason: String? = {
        guard geteuid() == 0 else {
            return "kernel tests need root (CAP_BPF + CAP_PERFMON) to load BPF programs; running as uid \(geteuid())"
        }
        do {
            try KernelPreflight.check()
            return nil
        } catch {
            return "kernel tests cannot load BPF here: \(error)"
        }
    }()

    static var enabled: Bool { isCI || unavailableReason == nil }
    static var comment: Comment { Comment(rawValue: unavailableReason ?? "kernel available") }
}

/// A `leaksim serve` child: one command per line, one answer per command.
final class Simulator {
    let process: ChildProcess
    var pid: Int32 { process.pid }

    init() throws {
        guard let path = ChildProcess.sibling("leaksim") else { throw TestFailure("leaksim not built next to the tests") }
        process = try ChildProcess(path, ["serve"], stdin: .pipe, stdout: .pipe)
        guard let ready = process.stdout?.readLine(deadline: deadline(seconds: 20)), ready.hasPrefix("ready") else {
            throw TestFailure("leaksim serve did not say ready within 20 s")
        }
    }

    /// Sends a command and waits (up to 60 s) for its "ok" answer.
    @discardableResult
    func run(_ command: String) throws -> String {
        process.send(command)
        guard let answer = process.stdout?.readLine(deadline: deadline(seconds: 60)) else {
            throw TestFailure("leaksim gave no answer to '\(command)' within 60 s")
        }
        guard answer.hasPrefix("ok") else { throw TestFailure("leaksim answered '\(answer)' to '\(command)'") }
        return answer
    }

    /// The value of `key=` in an answer such as "ok addr=0x7f… bytes=…".
    static func field(_ key: String, in answer: String) -> String? {
        answer.split(separator: " ").first(where: { $0.hasPrefix(key + "=") }).map { String($0.dropFirst(key.count + 1)) }
    }

    func kill() {
        process.signal(SIGKILL)
        process.waitForExit()
    }
}

/// Polls a KernelMonitor and keeps every record, so tests can wait for a
/// condition with a deadline and then look back at what came before it.
final class RecordLog {
    let monitor: KernelMonitor
    private(set) var records: [KernelRecord] = []

    init(_ monitor: KernelMonitor) {
        self.monitor = monitor
    }

    /// Polls until a record matches, or the deadline passes (nil).
    func waitFor(seconds: Double, _ match: (KernelRecord) -> Bool) -> KernelRecord? {
        let end = deadline(seconds: seconds)
        var checked = 0
        repeat {
            if let found = records[checked...].first(where: match) { return found }
            checked = records.count
            records += monitor.poll(timeoutMilliseconds: 50)
        } while monotonicNanoseconds() < end
        return records[checked...].first(where: match)
    }

    func poll(seconds: Double) {
        let end = deadline(seconds: seconds)
        while monotonicNanoseconds() < end { records += monitor.poll(timeoutMilliseconds: 50) }
    }

    func processRecords(pid: Int32) -> [ProcessRecord] {
        records.compactMap { if case .process(let p) = $0, p.pid == pid { return p } else { return nil } }
    }
}

extension KernelRecord {
    var process: ProcessRecord? { if case .process(let p) = self { return p } else { return nil } }
    var cgroup: CgroupRecord? { if case .cgroup(let c) = self { return c } else { return nil } }
}

/// A field of /proc/PID/status in bytes (e.g. "RssAnon:").
func statusBytes(pid: Int32, _ key: String) throws -> UInt64 {
    let fd = open("/proc/\(pid)/status", O_RDONLY)
    guard fd >= 0 else { throw TestFailure("cannot open /proc/\(pid)/status") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    let n = read(fd, &buffer, buffer.count)
    let text = String(decoding: buffer[0..<max(0, n)], as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        return (UInt64(String(line.dropFirst(key.count).filter(\.isNumber))) ?? 0) * 1024
    }
    throw TestFailure("no \(key) in /proc/\(pid)/status")
}

let mib: UInt64 = 1 << 20
