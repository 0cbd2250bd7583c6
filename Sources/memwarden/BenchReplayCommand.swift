import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenDetection

/// Replay throughput: a synthetic trace in memory, parsed alone and then
/// parsed and run through the detectors (per process and per cgroup), best of
/// a few rounds. The goal is a million samples a second on one core; build
/// with `-c release` for figures worth writing down.
struct BenchReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Trace parsing and detector replay throughput on a synthetic trace (samples/s).")

    @Option(help: "Samples (trace lines) to generate.")
    var samples: Int = 2_000_000

    @Option(help: "Processes in the trace.")
    var processes: Int = 500

    @Option(help: "Memory cgroups the processes are spread over.")
    var cgroups: Int = 50

    @Option(help: "Rounds; the best is reported.")
    var rounds: Int = 3

    func validate() throws {
        guard samples > 0, processes > 0, cgroups > 0, rounds > 0 else {
            throw ValidationError("--samples, --processes, --cgroups and --rounds must be positive")
        }
    }

    func run() throws {
        let trace = SyntheticTrace.make(samples: samples, processes: processes, cgroups: cgroups)
        print("trace: \(samples) samples, \(processes) processes, \(cgroups) cgroups, \(trace.count / 1_048_576) MiB")
        var parseBest = Double.infinity
        var replayBest = Double.infinity
        var events = 0
        var changes = 0
        for _ in 0..<rounds {
            let reader = TraceReader(bytes: trace, name: "synthetic")
            var start = monotonicSeconds()
            var count = 0
            while try reader.next() != nil { count += 1 }
            parseBest = min(parseBest, monotonicSeconds() - start)
            precondition(count == samples, "the synthetic trace has \(count) samples, not \(samples)")

            let replayReader = TraceReader(bytes: trace, name: "synthetic")
            start = monotonicSeconds()
            var emitted = 0
            let summary = try TraceReplay().run(replayReader) { _ in emitted += 1 }
            replayBest = min(replayBest, monotonicSeconds() - start)
            events = emitted
            changes = summary.verdictChanges
        }
        let rows = [
            ("parse", parseBest),
            ("parse + detect", replayBest),
        ]
        print("")
        print("| phase           | samples    | seconds  | samples/s   |")
        print("|-----------------|------------|----------|-------------|")
        for (name, seconds) in rows {
            let rate = Double(samples) / seconds
            print("| \(pad(name, 15)) | \(pad(String(samples), 10)) | \(pad(format(seconds, 3), 8)) | \(pad(String(Int(rate)), 11)) |")
        }
        print("")
        print("verdict changes: \(changes), events: \(events), best of \(rounds) rounds")
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    private func format(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = Int((value * scale).rounded())
        let whole = scaled / Int(scale)
        let fraction = String(scaled % Int(scale))
        return "\(whole)." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }

    private func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// A trace shaped like a recorder's: processes take turns, each line is a
/// coalesced sample (a 1 MiB move or a 10 s heartbeat), a few processes leak,
/// some saw-tooth, the rest sit still with noise; some exit and are replaced.
enum SyntheticTrace {
    static func make(samples: Int, processes: Int, cgroups: Int) -> [UInt8] {
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            return random
        }
        struct Process {
            var pid: Int
            var cgroup: Int
            var anon: UInt64
            var shape: UInt64
        }
        let mib: UInt64 = 1 << 20
        var table: [Process] = (0..<processes).map {
            Process(pid: 1000 + $0, cgroup: $0 % cgroups, anon: 64 * mib + UInt64($0) * mib, shape: UInt64($0 % 10))
        }
        var nextPid = 1000 + processes
        var bytes: [UInt8] = []
        bytes.reserveCapacity(samples * 190)
        var micros: UInt64 = 0
        for i in 0..<samples {
            micros += 50 + next() % 100
            let slot = i % processes
            var process = table[slot]
            switch process.shape {
            case 0: process.anon += mib + next() % mib  // leak
            case 1: process.anon = process.anon > 512 * mib ? 64 * mib : process.anon + 8 * mib  // sawtooth
            default: process.anon = max(32 * mib, process.anon + next() % (2 * mib)) - mib  // noise
            }
            var event = ""
            if next() % 5000 == 0 {
                event = ",\"event\":\"exit\""
            }
            let line =
                "{\"t\":\(micros / 1_000_000).\(sixDigits(micros % 1_000_000)),\"pid\":\(process.pid),\"comm\":\"worker-\(process.pid % 97)\","
                + "\"cgroup\":\"/kubepods.slice/kubepods-burstable.slice/pod-\(process.cgroup).slice/cri-containerd-\(process.cgroup).scope\","
                + "\"anon\":\(process.anon),\"file\":\(32 * mib),\"shmem\":\(4 * mib),\"swap\":0,\"vsz\":\(process.anon * 3),"
                + "\"limit\":\(4096 * mib)\(event)}\n"
            bytes.append(contentsOf: line.utf8)
            if event.isEmpty {
                table[slot] = process
            } else {
                table[slot] = Process(pid: nextPid, cgroup: process.cgroup, anon: 64 * mib, shape: process.shape)
                nextPid += 1
            }
        }
        return bytes
    }

    private static func sixDigits(_ value: UInt64) -> String {
        let text = String(value)
        return String(repeating: "0", count: 6 - text.count) + text
    }
}
