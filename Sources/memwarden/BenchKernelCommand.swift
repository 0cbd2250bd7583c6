import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenDetection
import MemwardenKernel
import MemwardenModel

/// Measures the kernel hot path against an empty program on the same
/// tracepoint, and the agent's own CPU and memory, under a page-fault storm.
struct BenchKernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Kernel hot path vs an empty program (bpf_stats), and the agent's CPU and peak RSS, under a fault storm.")

    @Option(help: "MiB mapped and touched per storm pass.")
    var mib: Int = 1024

    @Option(help: "Storm passes per measurement.")
    var passes: Int = 3

    @Option(help: "Rounds of (no program, empty program, memwarden) storms; medians are reported.")
    var rounds: Int = 3

    @Option(help: "Seconds the agent is watched while the machine is idle.")
    var idleSeconds: Double = 10

    @Option(help: "The leaksim executable (default: next to memwarden).")
    var leaksim: String?

    func validate() throws {
        guard mib > 0, passes > 0, rounds > 0, idleSeconds > 0 else {
            throw ValidationError("--mib, --passes, --rounds and --idle-seconds must be positive")
        }
    }

    func run() throws {
        guard let simulator = leaksim ?? ChildProcess.sibling("leaksim") else {
            throw ValidationError("leaksim not found next to memwarden; build it (swift build) or pass --leaksim PATH")
        }
        do {
            try KernelPreflight.check()
        } catch {
            reportAndExit(error)
        }
        let stats: BPFStatsSession
        do { stats = try BPFStatsSession() } catch { reportAndExit(error) }
        defer { withExtendedLifetime(stats) {} }

        var wallNone: [Double] = [], wallEmpty: [Double] = [], wallReal: [Double] = []
        var nsEmpty: [Double] = [], nsReal: [Double] = []
        var growthSamplesPerMiB: [Double] = [], shrinkSamplesPerMiB: [Double] = []
        for round in 1...rounds {
            print("round \(round)/\(rounds)…", to: &standardError)
            wallNone.append(try storm(simulator) { _ in })

            let empty: BaselineProgram
            do { empty = try BaselineProgram() } catch { reportAndExit(error) }
            let emptyBefore = empty.runStats()
            wallEmpty.append(try storm(simulator) { _ in })
            if let before = emptyBefore, let after = empty.runStats() { nsEmpty.append((after - before).nanosecondsPerRun) }
            withExtendedLifetime(empty) {}

            let monitor: KernelMonitor
            do { monitor = try KernelMonitor() } catch { reportAndExit(error) }
            _ = monitor.drain()
            let before = monitor.hotPathRunStats()
            // samples while the storm grows (one per MiB is the goal) and while munmap shrinks it
            var growth = 0, shrink = 0
            var lastRSS: UInt64 = 0
            wallReal.append(
                try storm(simulator) { stormPID in
                    for case .process(let p) in monitor.poll(timeoutMilliseconds: 50) where p.pid == stormPID && p.kind == .sample {
                        if p.memory.rss >= lastRSS { growth += 1 } else { shrink += 1 }
                        lastRSS = p.memory.rss
                    }
                })
            if let before, let after = monitor.hotPathRunStats() { nsReal.append((after - before).nanosecondsPerRun) }
            growthSamplesPerMiB.append(Double(growth) / Double(mib * passes))
            shrinkSamplesPerMiB.append(Double(shrink) / Double(mib * passes))
        }

        let agent = try measureAgent(simulator)

        let empty = median(nsEmpty), real = median(nsReal)
        print("## memwarden bench kernel: \(mib) MiB × \(passes) passes per storm, median of \(rounds) rounds\n")
        print("| measure | value |")
        print("|---|---|")
        print("| empty program, ns/event (bpf_stats) | \(fmt(empty, 1)) |")
        print("| memwarden mw_rss_stat, ns/event (bpf_stats) | \(fmt(real, 1)) |")
        print("| ratio memwarden / empty | \(fmt(real / empty, 2)) |")
        print("| storm wall time, no program (s) | \(fmt(median(wallNone), 3)) |")
        print("| storm wall time, empty program (s) | \(fmt(median(wallEmpty), 3)) |")
        print("| storm wall time, memwarden (s) | \(fmt(median(wallReal), 3)) |")
        print("| storm process samples per MiB grown | \(fmt(median(growthSamplesPerMiB), 3)) |")
        print("| storm process samples per MiB freed (munmap) | \(fmt(median(shrinkSamplesPerMiB), 3)) |")
        print("| agent CPU during storm (% of one core) | \(fmt(agent.stormCPUPercent, 2)) |")
        print("| agent peak RSS during storm (MiB) | \(fmt(agent.stormPeakMiB, 1)) |")
        print("| agent CPU idle (% of one core) | \(fmt(agent.idleCPUPercent, 3)) |")
        print("| agent RSS idle (MiB) | \(fmt(agent.idleRSSMiB, 1)) |")
        print("| agent peak RSS since start, incl. program load (MiB) | \(fmt(agent.lifetimePeakMiB, 1)) |")
        print("| agent lines written during storm | \(agent.stormLines) |")
        print("| agent binary size (MiB) | \(fmt(agent.binaryMiB, 1)) |")
    }

    /// Runs one storm in a child process; `tick` runs repeatedly until it ends.
    func storm(_ simulator: String, tick: (Int32) -> Void) throws -> Double {
        let child = try ChildProcess(simulator, ["storm", "--mib", "\(mib)", "--passes", "\(passes)"], stdout: .pipe)
        let start = monotonicNanoseconds()
        while child.exitCodeIfEnded() == nil {
            tick(child.pid)
            _ = child.stdout?.readLine(deadline: deadline(seconds: 0.02))
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        guard child.waitForExit() == 0 else { throw ValidationError("the storm (\(simulator) storm) failed") }
        return seconds
    }

    struct AgentFigures {
        var idleCPUPercent = 0.0, idleRSSMiB = 0.0, stormCPUPercent = 0.0, stormPeakMiB = 0.0, lifetimePeakMiB = 0.0
        var stormLines = 0
        /// The executable's size on disk: most of the agent's RSS is pages of it.
        var binaryMiB = 0.0
    }

    /// Starts the real agent (stdout read and counted here), then watches it idle and under a storm.
    func measureAgent(_ simulator: String) throws -> AgentFigures {
        guard let memwarden = ChildProcess.sibling("memwarden") else { throw ValidationError("memwarden executable not found") }
        let agent = try ChildProcess(memwarden, ["run", "--listen", "127.0.0.1:0"], stdout: .pipe, stderr: .pipe)
        guard agent.stderr?.readLine(until: deadline(seconds: 60), where: { $0.contains("kernel program attached") }) != nil else {
            throw ValidationError("the agent did not report its program attached within 60 s")
        }
        var figures = AgentFigures()
        let executable = open(memwarden, O_RDONLY | O_CLOEXEC)
        if executable >= 0 {
            figures.binaryMiB = Double(lseek(executable, 0, SEEK_END)) / 1048576
            close(executable)
        }
        func usage() throws -> ProcessUsage {
            do { return try ProcessUsage.read(pid: agent.pid) } catch { throw ValidationError("\(error)") }
        }
        let idleStart = try usage()
        let idleEnd = deadline(seconds: idleSeconds)
        while monotonicNanoseconds() < idleEnd { _ = agent.stdout?.readLine(deadline: idleEnd) }
        let idleStop = try usage()
        figures.idleCPUPercent = (idleStop.cpuSeconds - idleStart.cpuSeconds) / idleSeconds * 100
        figures.idleRSSMiB = Double(idleStop.residentBytes) / 1048576
        figures.lifetimePeakMiB = Double(idleStop.peakResidentBytes) / 1048576
        do { try ProcessUsage.resetPeak(pid: agent.pid) } catch { throw ValidationError("\(error)") }
        let before = try usage()
        var lines = 0
        let seconds = try storm(simulator) { _ in
            while agent.stdout?.readLine(deadline: 0) != nil { lines += 1 }
        }
        // what the agent still has to print about the storm counts too
        let tail = deadline(seconds: 1)
        while agent.stdout?.readLine(deadline: tail) != nil { lines += 1 }
        let after = try usage()
        figures.stormCPUPercent = (after.cpuSeconds - before.cpuSeconds) / (seconds + 1) * 100
        figures.stormPeakMiB = Double(after.peakResidentBytes) / 1048576
        figures.stormLines = lines
        agent.signal(SIGTERM)
        let code = agent.waitForExit()
        guard code == 0 else { throw ValidationError("the agent exited with \(code) on SIGTERM") }
        return figures
    }
}

/// NaN (printed "n/a") when a storm gave no figure.
func median(_ values: [Double]) -> Double {
    Quantiles.median(values) ?? .nan
}

func fmt(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let have = text.distance(from: dot, to: text.endIndex) - 1
        if have < decimals { text += String(repeating: "0", count: decimals - have) }
    } else if decimals > 0 {
        text += "." + String(repeating: "0", count: decimals)
    }
    return text
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        _ = string.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
    }
}

nonisolated(unsafe) var standardError = StandardError()
