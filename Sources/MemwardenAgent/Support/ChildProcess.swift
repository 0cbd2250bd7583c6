import CMemwarden
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// A child process started with posix_spawn, with optional pipes to its
/// stdin and from its stdout/stderr. Used by the benchmarks and the kernel
/// tests to drive simulators and the agent itself. Not Sendable: one owner.
public final class ChildProcess {
    public enum Stream {
        case inherit
        case null
        case pipe
    }

    public let pid: pid_t
    public let executable: String
    /// Write end of the child's stdin, when piped.
    public private(set) var stdinFD: Int32?
    public let stdout: LineReader?
    public let stderr: LineReader?
    private var exitStatus: Int32?

    public struct SpawnError: Error, CustomStringConvertible {
        public var executable: String
        public var errno: Int32
        public var description: String { "cannot start \(executable): \(String(cString: strerror(errno)))" }
    }

    /// - Parameter environment: variables set (or replaced) for the child on top of ours.
    public init(
        _ executable: String, _ arguments: [String], stdin: Stream = .null, stdout: Stream = .inherit,
        stderr: Stream = .inherit, environment: [String: String] = [:]
    ) throws(SpawnError) {
        self.executable = executable
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var closeInParent: [Int32] = []
        var parentEnds: [Int32?] = [nil, nil, nil]
        for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .inherit:
                break
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .pipe:
                var fds: [Int32] = [0, 0]
                // close-on-exec on both ends from the start (another thread's spawn between
                // pipe() and fcntl() would inherit them): dup2 gives the child a clean copy of its end
                guard mw_pipe_cloexec(&fds) == 0 else { throw SpawnError(executable: executable, errno: errno) }
                let (childEnd, parentEnd) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
                posix_spawn_file_actions_adddup2(&actions, childEnd, target)
                closeInParent.append(childEnd)
                parentEnds[Int(target)] = parentEnd
            }
        }
        // nothing but its three streams: a descriptor another part of the process opened
        // without close-on-exec (a test's pipe() whose reader waits for its end of file) must
        // not live on in a child
        _ = mw_spawn_close_from(&actions, 3)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var inherited: [String] = []
        var entry = environ
        while let variable = entry.pointee {
            let text = String(cString: variable)
            let name = text.prefix { $0 != "=" }
            if environment[String(name)] == nil { inherited.append(text) }
            entry += 1
        }
        let envp = (inherited + environment.map { "\($0.key)=\($0.value)" }).map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var child = pid_t()
        let result = posix_spawn(&child, executable, &actions, nil, argv, envp)
        closeInParent.forEach { close($0) }
        guard result == 0 else {
            parentEnds.compactMap { $0 }.forEach { close($0) }
            throw SpawnError(executable: executable, errno: result)
        }
        pid = child
        stdinFD = parentEnds[0]
        self.stdout = parentEnds[1].map(LineReader.init)
        self.stderr = parentEnds[2].map(LineReader.init)
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = waitForExit()
        }
        closeStdin()
    }

    /// Sends one line to the child's stdin.
    public func send(_ line: String) {
        guard let fd = stdinFD else { return }
        let text = line + "\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    public func closeStdin() {
        if let fd = stdinFD { close(fd) }
        stdinFD = nil
    }

    public func signal(_ signal: Int32) {
        if exitStatus == nil { kill(pid, signal) }
    }

    /// Blocks until the child ends; returns its exit code (128 + signal when killed).
    @discardableResult
    public func waitForExit() -> Int32 {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exitStatus = code
        return code
    }

    /// Waits for the child to end until a deadline (monotonic ns); nil if it had not.
    public func waitForExit(deadline: UInt64) -> Int32? {
        while monotonicNanoseconds() < deadline {
            if let code = exitCodeIfEnded() { return code }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
        }
        return exitCodeIfEnded()
    }

    /// The exit code if the child has ended, without blocking.
    public func exitCodeIfEnded() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exitStatus = code
        return code
    }

    /// The executable next to the running one (the build folder holds memwarden,
    /// leaksim and the test bundle side by side).
    public static func sibling(_ name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        var path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // a test bundle runs as .build/<config>/<pkg>PackageTests.xctest (a file on Linux)
        while let slash = path.lastIndex(of: "/") {
            path = String(path[..<slash])
            let candidate = path + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
            if path.isEmpty { break }
        }
        return nil
    }
}

/// Reads lines from a file descriptor with deadlines (poll(2)), never blocking forever.
public final class LineReader {
    public let fd: Int32
    private var buffer: [UInt8] = []
    public private(set) var ended = false

    init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// The next line, or nil if none arrived before the deadline (or the stream ended).
    public func readLine(deadline: UInt64) -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            if ended { return nil }
            let now = monotonicNanoseconds()
            let remaining = deadline > now ? deadline - now : 0
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, remaining == 0 ? 0 : Int32(min(remaining / 1_000_000 + 1, 1000)))
            if ready < 0 && errno != EINTR { ended = true }
            if ready <= 0 {
                if remaining == 0 { return nil }
                continue
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                ended = true
                continue
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Reads lines until one satisfies `match` or the deadline passes.
    public func readLine(until deadline: UInt64, where match: (String) -> Bool) -> String? {
        while let line = readLine(deadline: deadline) {
            if match(line) { return line }
        }
        return nil
    }

    /// Consumes whatever is available now (for counting output without keeping it).
    public func drainAvailable() -> Int {
        var lines = 0
        while let _ = readLine(deadline: monotonicNanoseconds()) { lines += 1 }
        return lines
    }
}
