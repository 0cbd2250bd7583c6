import ArgumentParser
import Memwarden

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent: JSON lines on stdout (samples, cgroup samples, stats); logs on stderr.",
        discussion: "Exits 0 on SIGTERM/SIGINT or after --duration; 2 when the kernel side cannot run (privileges, BTF, tracepoint)."
    )

    @OptionGroup var kernel: KernelOptions

    @Option(help: "Stop after this many seconds (exit 0).")
    var duration: Double?

    @Option(help: "Seconds between stats lines.")
    var statsInterval: Double = 5

    @Flag(help: "Also print every detector verdict change (type \"verdict\"), as `replay --verdicts` does.")
    var verdicts = false

    func validate() throws {
        if let duration, !(duration > 0) { throw ValidationError("--duration must be more than 0 seconds") }
        guard statsInterval > 0 else { throw ValidationError("--stats-interval must be more than 0 seconds") }
    }

    func run() async throws {
        let logger = kernel.makeLogger()
        try await exitOnKernelError {
            try requireKernel()
            try await Agent.run(
                kernel: kernel.kernel, output: .events(verdicts: verdicts), duration: duration.map { .milliseconds(Int($0 * 1000)) },
                statsInterval: .milliseconds(Int(statsInterval * 1000)), logger: logger)
        }
    }
}
