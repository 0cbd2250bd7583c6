import ArgumentParser
import MemwardenAgent
import MemwardenOutput

struct RecordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record a trace of process samples (JSON Lines, docs/trace-format.md) for replay.",
        discussion: "Exits 0 when the duration is over or on SIGTERM/SIGINT (the trace is complete up to then)."
    )

    @OptionGroup var kernel: KernelOptions

    @Option(help: "Seconds to record.")
    var duration: Double

    @Option(help: "The trace file to write (created or replaced).")
    var out: String

    @Option(help: "Keep only this process.")
    var pid: Int32?

    @Option(help: "Keep only processes in this memory cgroup or below it (path as in /proc/PID/cgroup).")
    var cgroup: String?

    @Option(help: "Also write the kernel's detector verdict changes for the kept processes and their cgroups here (the form of `replay --verdicts`).")
    var verdicts: String?

    func validate() throws {
        guard duration > 0 else { throw ValidationError("--duration must be more than 0 seconds") }
        if let cgroup, !cgroup.hasPrefix("/") { throw ValidationError("--cgroup must be a path starting with '/': \(cgroup)") }
    }

    func run() async throws {
        let logger = kernel.makeLogger()
        try await exitOnKernelError {
            try requireKernel()
            let writer: LineWriter
            do {
                writer = try LineWriter.create(path: out)
            } catch {
                throw ValidationError("cannot write the trace: \(error)")
            }
            defer { writer.close() }
            var verdictWriter: LineWriter?
            if let verdicts {
                do {
                    verdictWriter = try LineWriter.create(path: verdicts)
                } catch {
                    throw ValidationError("cannot write the verdicts: \(error)")
                }
            }
            defer { verdictWriter?.close() }
            try await Agent.run(
                kernel: kernel.kernel, output: .trace(writer, TraceFilter(pid: pid, cgroup: cgroup), verdicts: verdictWriter),
                duration: .milliseconds(Int(duration * 1000)), logger: logger)
        }
    }
}
