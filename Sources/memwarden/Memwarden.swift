import ArgumentParser
import Logging

#if canImport(Glibc)
import Glibc
#endif
import MemwardenKernel
import MemwardenModel

@main
struct MemwardenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memwarden",
        abstract: "Watches every process's memory through eBPF and reports growth that looks like a leak.",
        version: MemwardenVersion.current,
        subcommands: [
            RunCommand.self, RecordCommand.self, ReplayCommand.self, IdentifyCommand.self, CheckConfigCommand.self,
            RecommendCommand.self, RestoreCommand.self, BenchCommand.self, CorpusCommand.self, VersionCommand.self,
        ]
    )
}

/// Options that shape the kernel program, shared by `run` and `record`.
struct KernelOptions: ParsableArguments {
    @Option(help: "Report a process or cgroup when its RSS moved this many KiB since its last sample.")
    var stepKib: UInt64 = 1024

    @Option(help: "Also report it after this many seconds without a sample, at its next memory event.")
    var heartbeatSeconds: Double = 10

    @Option(help: "Processes tracked in the kernel (LRU; evictions are counted). Each costs ~1.6 KiB of locked kernel memory.")
    var maxProcesses: UInt32 = 8192

    @Option(help: "Memory cgroups tracked in the kernel (~1.5 KiB each).")
    var maxCgroups: UInt32 = 2048

    @Option(help: "Ring buffer size in KiB (a power of two).")
    var ringBufferKib: UInt32 = 1024

    @Option(help: "Slots of the kernel's per-event cache (a power of two; 64 bytes each).")
    var hotSlots: UInt32 = 65536

    @Option(help: "Detector thresholds: standard, or accelerated (time compressed, for leaksim's short scenarios).")
    var detectorProfile: DetectorConfiguration.Profile = .standard

    @Option(help: "Log level for stderr: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        guard stepKib > 0 else { throw ValidationError("--step-kib must be more than 0") }
        guard heartbeatSeconds > 0, heartbeatSeconds.isFinite else {
            throw ValidationError("--heartbeat-seconds must be more than 0")
        }
        guard ringBufferKib >= 4, ringBufferKib.nonzeroBitCount == 1 else {
            throw ValidationError("--ring-buffer-kib must be a power of two of at least 4")
        }
        guard hotSlots > 0, hotSlots.nonzeroBitCount == 1 else {
            throw ValidationError("--hot-slots must be a power of two")
        }
    }

    var kernel: KernelConfiguration {
        var configuration = KernelConfiguration()
        configuration.stepBytes = stepKib * 1024
        configuration.heartbeatNanoseconds = UInt64(heartbeatSeconds * 1e9)
        configuration.maxProcesses = maxProcesses
        configuration.maxCgroups = maxCgroups
        configuration.ringBufferBytes = ringBufferKib * 1024
        configuration.hotSlots = hotSlots
        configuration.detectors = DetectorConfiguration(profile: detectorProfile).raw
        return configuration
    }

    func makeLogger() -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        return Logger(label: "memwarden")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs the kernel preflight so a missing privilege, BTF or tracepoint ends
/// the command with exit code 2 and one line that names it.
func requireKernel() throws {
    do {
        try KernelPreflight.check()
    } catch {
        throw KernelFailure(error)
    }
}

struct KernelFailure: Error, CustomStringConvertible {
    let error: KernelError
    init(_ error: KernelError) { self.error = error }
    var description: String { error.description }
}

/// Maps errors to the documented exit codes: 2 when the kernel side cannot run.
func exitOnKernelError<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let failure as KernelFailure {
        reportAndExit(failure.error)
    } catch let error as KernelError {
        reportAndExit(error)
    }
}

func reportAndExit(_ error: KernelError) -> Never {
    var line = "memwarden: \(error.description)\n"
    if let detail = error.detail, !detail.isEmpty {
        line += detail.split(separator: "\n").map { "  \($0)\n" }.joined()
    }
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(2)
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print memwarden's version.")

    func run() {
        print("memwarden \(MemwardenVersion.current)")
    }
}
