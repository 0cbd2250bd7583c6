import ArgumentParser

/// Benchmarks print a table; their figures go to BENCHMARKS.md with the command
/// that made them. Speed and memory goals are checked here, never in timed tests.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print a table (see BENCHMARKS.md).",
        subcommands: [
            BenchKernelCommand.self,
            BenchReplayCommand.self,
            BenchPipelineCommand.self,
            BenchDetectionCommand.self,
            BenchSoakCommand.self,
        ])
}
