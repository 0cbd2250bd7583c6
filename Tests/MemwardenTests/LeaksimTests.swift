import Glibc
import MemwardenAgent
import MemwardenModel
import Testing

/// leaksim's command line and serve protocol, run as the real binary next to the test bundle.
/// The memory shapes themselves are checked by the scenario tests under the agent.
struct LeaksimTests {
    static func leaksim() throws -> String {
        try #require(
            ChildProcess.sibling("leaksim"), "leaksim is not built next to the tests (swift build --product leaksim)")
    }

    /// Runs leaksim to the end; returns its exit code, stdout lines and stderr lines.
    static func run(_ arguments: [String]) throws -> (code: Int32, out: [String], err: [String]) {
        let child = try ChildProcess(try leaksim(), arguments, stdout: .pipe, stderr: .pipe)
        let end = deadline(seconds: 30)
        var out: [String] = []
        var err: [String] = []
        while let line = child.stdout?.readLine(deadline: end) { out.append(line) }
        while let line = child.stderr?.readLine(deadline: end) { err.append(line) }
        return (child.waitForExit(), out, err)
    }

    /// A field of /proc/PID/status in bytes ("RssAnon", "RssShmem", ...).
    static func status(_ pid: Int32, _ field: String) throws -> Int {
        let fd = open("/proc/\(pid)/status", O_RDONLY)
        guard fd >= 0 else { throw TestError("open /proc/\(pid)/status: errno \(errno)") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 8192)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        let text = String(decoding: bytes[0..<max(count, 0)], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let kilobytes = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first
            if let kilobytes, let value = Int(kilobytes) { return value * 1024 }
        }
        throw TestError("no \(field) in /proc/\(pid)/status")
    }

    struct TestError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    @Test func helpListsEveryScenario() throws {
        let result = try Self.run(["--help"])
        #expect(result.code == 0)
        for name in [
            "steady", "fast", "staircase", "sawtooth-leak", "fragmentation", "shmem", "children",
            "stable", "sawtooth", "warmup", "step", "filecache", "spike", "periodic",
        ] {
            #expect(result.out.contains { $0.hasPrefix("  \(name) ") }, "\(name) missing from --help")
        }
    }

    @Test(arguments: [
        ["nonsense"],
        ["steady", "--rate", "-1"],
        ["steady", "--rate", "nan"],
        ["steady", "--rate"],
        ["steady", "--amplitude", "3"],
        ["steady", "--rate", "1", "--rate", "2"],
        ["periodic", "--width", "8", "--period", "8"],
        ["children", "--children", "0"],
        ["storm", "--mib", "1.5"],
        ["serve", "extra"],
        ["filecache", "--dir", "/dev/shm"],
    ])
    func badCommandLinesExitTwo(arguments: [String]) throws {
        let result = try Self.run(arguments)
        #expect(result.code == 2)
        #expect(result.out.isEmpty, "printed before failing: \(result.out)")
        #expect(result.err.first?.hasPrefix("leaksim: ") == true, "stderr: \(result.err)")
    }

    @Test func stormPrintsOneLinePerPassAndATotal() throws {
        let result = try Self.run(["storm", "--mib", "4", "--passes", "2"])
        #expect(result.code == 0)
        let pages = 4 << 20 / Int(sysconf(Int32(_SC_PAGESIZE)))
        try #require(result.out.count == 3, "\(result.out)")
        for pass in 1...2 {
            let line = result.out[pass - 1]
            #expect(line.hasPrefix("{\"pass\":\(pass),\"seconds\":"), "\(line)")
            #expect(line.hasSuffix(",\"pages\":\(pages)}"), "\(line)")
        }
        #expect(result.out[2].hasPrefix("{\"total_seconds\":"))
        #expect(result.out[2].hasSuffix(",\"passes\":2,\"pages\":\(2 * pages)}"), "\(result.out[2])")
    }

    @Test func scenarioSaysReadyThenDone() throws {
        let result = try Self.run(["steady", "--duration", "0.3", "--base", "1"])
        #expect(result.code == 0)
        #expect(result.out.count == 2)
        let ready = try #require(result.out.first)
        #expect(ready.hasPrefix("ready pid="))
        #expect(ready.hasSuffix(" scenario=steady"))
        #expect(result.out.last == "done")
    }

    @Test func serveAnswersEachCommandAndMovesTheCounters() throws {
        let child = try ChildProcess(try Self.leaksim(), ["serve"], stdin: .pipe, stdout: .pipe)
        defer {
            child.signal(SIGKILL)
            child.waitForExit()
        }
        let ready = try #require(child.stdout?.readLine(deadline: deadline(seconds: 20)))
        #expect(ready == "ready pid=\(child.pid)")
        func ask(_ command: String) throws -> String {
            child.send(command)
            return try #require(child.stdout?.readLine(deadline: deadline(seconds: 30)), "no answer to \(command)")
        }
        let mib = 1 << 20
        let anonBefore = try Self.status(child.pid, "RssAnon")
        #expect(try ask("touch 16") == "ok touched=\(16 * mib)")
        #expect(try Self.status(child.pid, "RssAnon") >= anonBefore + 16 * mib)

        let reserve = try ask("reserve 8")
        #expect(reserve.hasPrefix("ok addr=0x") && reserve.hasSuffix(" bytes=\(8 * mib)"), "\(reserve)")
        #expect(try Self.status(child.pid, "RssAnon") < anonBefore + 20 * mib, "reserve touched its pages")

        #expect(try ask("thread 4").hasPrefix("ok thread-exited tid="))
        #expect(try Self.status(child.pid, "RssAnon") >= anonBefore + 20 * mib)

        #expect(try ask("shm 8") == "ok shmem=\(8 * mib)")
        #expect(try Self.status(child.pid, "RssShmem") >= 8 * mib)

        #expect(try ask("free") == "ok")
        #expect(try Self.status(child.pid, "RssAnon") < anonBefore + 4 * mib)
        #expect(try Self.status(child.pid, "RssShmem") < mib)

        #expect(try ask("comm leaksim-test") == "ok")
        #expect(try ask("frobnicate 3") == "error unknown command: frobnicate 3")
        #expect(try ask("touch lots").hasPrefix("error "))
        #expect(try ask("exec /nonexistent/program").hasPrefix("error "))

        child.closeStdin()
        #expect(child.waitForExit() == 0)
    }
}
