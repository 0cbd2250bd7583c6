import ArgumentParser
import Memwarden

#if canImport(Glibc)
import Glibc
#endif

/// `memwarden check-config FILE`: the same validation `run` and a reload do,
/// for CI and for editing by hand. Exit 0 when valid; 1 with every problem as
/// `file:line:column: path: message` on stderr.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a policy file and print every problem with its line, column and field.",
        discussion: "Exit status: 0 when the file is valid, 1 when it is not (or cannot be read)."
    )

    @Argument(help: "The policy file (YAML, apiVersion: \(Policy.apiVersion)).")
    var file: String

    @Flag(help: "Print nothing on success.")
    var quiet = false

    func run() throws {
        do {
            let policy = try PolicyLoader.load(file: file)
            guard !quiet else { return }
            print("\(file): valid (\(Self.summary(policy)))")
        } catch {
            var text = error.problems.map { "\($0)\n" }.joined()
            let count = error.problems.count
            text += "\(file): \(count) problem\(count == 1 ? "" : "s")\n"
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            throw ExitCode(1)
        }
    }

    static func summary(_ policy: Policy) -> String {
        var parts = ["\(policy.rules.count) rule\(policy.rules.count == 1 ? "" : "s")"]
        let budget: String
        switch policy.defaults.budget {
        case .none: budget = "none"
        case .limit: budget = "the cgroup's limit"
        case .bytes(let bytes): budget = "\(bytes) bytes"
        }
        parts.append("default budget \(budget), mode \(policy.defaults.mode.rawValue)")
        var outputs: [String] = []
        if policy.outputs.stdout { outputs.append("stdout") }
        if policy.outputs.webhook != nil { outputs.append("webhook") }
        if policy.outputs.alertmanager != nil { outputs.append("alertmanager") }
        if policy.outputs.kubernetes.events { outputs.append("kubernetes events") }
        if policy.outputs.kubernetes.annotations { outputs.append("pod annotations") }
        parts.append("outputs: " + (outputs.isEmpty ? "none" : outputs.joined(separator: ", ")))
        return parts.joined(separator: "; ")
    }
}
