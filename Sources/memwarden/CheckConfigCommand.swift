import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenModel
import MemwardenPolicy

/// `memwarden check-config FILE`: the same validation `run` and a reload do,
/// for CI and for editing by hand. Exit 0 when valid; 1 with every problem as
/// `file:line:column: path: message` on stderr.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a policy file and print every problem with its line, column and field.",
        discussion: "Exit status: 0 when the file is valid, 1 when it is not (or cannot be read)."
    )

    @Argument(help: "The policy file (YAML, apiVersion: \(Policy.apiVersion)); - reads standard input.")
    var file: String

    @Flag(help: "Print nothing on success.")
    var quiet = false

    @Option(help: "Show which rule applies to a pod in this namespace (with --label, --container).")
    var namespace: String?

    @Option(help: "A pod label, key=value (repeatable).")
    var label: [String] = []

    @Option(help: "The container's name in the pod.")
    var container: String?

    @Option(help: "Show which rule applies to this systemd unit (nginx.service).")
    var unit: String?

    @Option(help: "The target's cgroup path (/system.slice/nginx.service, /kubepods.slice/…).")
    var cgroup: String?

    /// How problems name the input.
    var name: String { file == "-" ? "<stdin>" : file }

    func validate() throws {
        for item in label where !item.contains("=") {
            throw ValidationError("--label takes key=value; got '\(item)'")
        }
        if namespace == nil, !label.isEmpty || container != nil {
            throw ValidationError("--label and --container describe a pod: give its --namespace too")
        }
    }

    /// The target described by the options, nil when none was given.
    var target: TargetIdentity? {
        guard namespace != nil || unit != nil || cgroup != nil else { return nil }
        var labels: [String: String] = [:]
        for item in label {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            labels[String(parts[0])] = String(parts[1])
        }
        let pod = namespace.map { PodMetadata(name: "", namespace: $0, uid: "", labels: labels, container: container) }
        return TargetIdentity(cgroup: cgroup ?? "", systemdUnit: unit, pod: pod)
    }

    func run() throws {
        do {
            let policy =
                try file == "-" ? PolicyLoader.parse(Self.readStandardInput(), file: name) : PolicyLoader.load(file: file)
            if let target {
                print(Self.explain(policy, for: target))
                return
            }
            guard !quiet else { return }
            print("\(name): valid (\(Self.summary(policy)))")
        } catch {
            var text = error.problems.map { "\($0)\n" }.joined()
            let count = error.problems.count
            text += "\(name): \(count) problem\(count == 1 ? "" : "s")\n"
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            throw ExitCode(1)
        }
    }

    static func readStandardInput() -> String {
        var lines: [String] = []
        while let line = readLine(strippingNewline: false) { lines.append(line) }
        return lines.joined()
    }

    /// Which rule a target gets and what it says, one setting a line.
    static func explain(_ policy: Policy, for target: TargetIdentity) -> String {
        let rule = policy.matchingRule(for: target)
        let resolved = policy.resolve(for: target)
        func percent(_ share: Double) -> String {
            let value = (share * 1000).rounded() / 10
            return value == value.rounded() ? "\(Int(value))%" : "\(value)%"
        }
        let budget: String
        switch resolved.budget {
        case .none: budget = "none"
        case .limit: budget = "limit (the cgroup's own)"
        case .bytes(let bytes): budget = bytesText(bytes)
        }
        let tiers = resolved.tiers
        let throttle = resolved.throttle
        var lines = [
            "rule: " + (rule.map { "\($0.name) (\($0.specificity))" } ?? "default (no rule matches)"),
            "budget: \(budget)",
            "tiers: warning \(percent(tiers.warning)), high \(percent(tiers.high)), critical \(percent(tiers.critical)), "
                + "emergency \(percent(tiers.emergency)), hysteresis \(percent(tiers.hysteresis))",
            "mode: \(resolved.mode.rawValue)",
        ]
        if resolved.mode == .throttle {
            lines.append(
                "throttle: from \(throttle.fromTier.rawValue), minimum \(bytesText(throttle.minimumBytes)), "
                    + "interval \(durationText(throttle.interval)), pressure target \(durationText(throttle.pressureTarget)), "
                    + "max probe \(percent(throttle.maxProbe)), "
                    + "max backoff \(percent(throttle.maxBackoff)), "
                    + "max growth rate \(rateText(throttle.maxGrowthRate))")
        }
        lines.append(
            "cooldowns: event \(durationText(resolved.cooldowns.event)), response \(durationText(resolved.cooldowns.response))")
        lines.append("detectors: " + (resolved.detectorProfile?.rawValue ?? "the agent's profile"))
        return lines.joined(separator: "\n")
    }

    /// 805306368 → "805306368 bytes (768Mi)".
    static func bytesText(_ bytes: UInt64) -> String {
        for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] where bytes >= 1 << shift {
            if bytes % (1 << shift) == 0 { return "\(bytes) bytes (\(bytes >> shift)\(unit))" }
        }
        return "\(bytes) bytes"
    }

    /// 131072 → "131072 bytes/s (128Ki/s)".
    static func rateText(_ bytesPerSecond: UInt64) -> String {
        for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] where bytesPerSecond >= 1 << shift {
            if bytesPerSecond % (1 << shift) == 0 { return "\(bytesPerSecond) bytes/s (\(bytesPerSecond >> shift)\(unit)/s)" }
        }
        return "\(bytesPerSecond) bytes/s"
    }

    /// The policy file's own spelling: 300 s → "5m", 1.5 s → "1500ms".
    static func durationText(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        if nanoseconds % 1_000_000_000 == 0 {
            if seconds > 0, seconds % 3600 == 0 { return "\(seconds / 3600)h" }
            if seconds > 0, seconds % 60 == 0 { return "\(seconds / 60)m" }
            return "\(seconds)s"
        }
        if nanoseconds % 1_000_000 == 0 { return "\(nanoseconds / 1_000_000)ms" }
        if nanoseconds % 1000 == 0 { return "\(nanoseconds / 1000)us" }
        return "\(nanoseconds)ns"
    }

    static func summary(_ policy: Policy) -> String {
        var parts = ["\(policy.rules.count) rule\(policy.rules.count == 1 ? "" : "s")"]
        let budget: String
        switch policy.defaults.budget {
        case .none: budget = "none"
        case .limit: budget = "the cgroup's limit"
        case .bytes(let bytes): budget = bytesText(bytes)
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
