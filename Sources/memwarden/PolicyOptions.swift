import ArgumentParser
import Logging

#if canImport(Glibc)
import Glibc
#endif
import MemwardenModel
import MemwardenPolicy

/// `--policy FILE` for `run` (an `@OptionGroup`): opens the policy store, or
/// ends the command with exit code 1 and every problem of an invalid file on
/// stderr, so the agent never starts on a policy it cannot read.
struct PolicyOptions: ParsableArguments {
    @Option(
        name: .customLong("policy"),
        help: ArgumentHelp(
            "The policy file (YAML). Default \(Policy.defaultPath); without a file there, the built-in observe-only policy.",
            valueName: "file"))
    var file: String?

    /// The store for the agent's ServiceGroup. `onEvent` gets policy.reloaded /
    /// policy.rejected (forward to the sinks; it must not block).
    func makeStore(
        node: String?, logger: Logger, onEvent: @escaping @Sendable (AgentEvent) -> Void
    ) throws -> PolicyStore {
        do {
            // an explicit --policy that names nothing is a typo, not "no policy"
            return try PolicyStore(
                path: file ?? Policy.defaultPath, missingFile: file == nil ? .useBuiltIn : .fail, node: node,
                logger: logger, onEvent: onEvent)
        } catch {
            var text = "memwarden: cannot start: invalid policy \(error.file)\n"
            text += error.problems.map { "  \($0)\n" }.joined()
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            throw ExitCode(1)
        }
    }
}
