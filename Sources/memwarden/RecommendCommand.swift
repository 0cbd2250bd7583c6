import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenDetection
import MemwardenIdentity
import MemwardenModel
import MemwardenOutput

/// `memwarden recommend FILE`: leak-aware right-sizing from a recorded trace
/// (docs/recommendations.md).
struct RecommendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recommend",
        abstract: "Right-size memory limits from a trace: VPA-style, KRR-style and leak-aware figures per container.",
        discussion: """
            The trace is replayed through the detectors, so each container's leak verdict is known, and its \
            usage (anon + shmem + swap of its processes) is kept per minute. For each cgroup: the observed daily \
            peaks; what VPA would recommend (p90 of the daily peaks of 8 days + 15 %) and KRR (the maximum of \
            14 days + 15 %); and memwarden's figure, the peak without the leak's growth + 15 %. For a leaking \
            container, when its limit, the recommended one and a doubled one are reached at the current growth. \
            A trace has no pod labels: each cgroup is its own target (the agent's /api/v1/recommendations \
            aggregates a workload's pods). A bad line stops with exit 1 and a message naming the file, the line \
            and the field.
            """)

    @Argument(help: "The trace (JSON Lines, one sample a line); '-' reads standard input.")
    var file: String

    @Flag(help: "Print one JSON object (the /api/v1/recommendations document) instead of a table.")
    var json = false

    @Option(help: "Detector thresholds: standard, or accelerated (time compressed, for leaksim's short scenarios).")
    var detectorProfile: DetectorConfiguration.Profile = .standard

    func run() throws {
        var work = TraceRecommendations()
        work.configuration = DetectorConfiguration(profile: detectorProfile)
        work.confirmation = ConfirmationSettings(profile: detectorProfile)
        let targets: [TraceRecommendations.Target]
        do {
            targets = try work.run(try TraceReader(path: file))
        } catch {
            // TraceError's text names the file, the line and the field
            printError("\(error)")
            Glibc.exit(1)
        }
        var identities = IdentityResolver()
        let rows = targets.map {
            RecommendedTarget(identity: identities.identity(cgroupPath: $0.cgroup), recommendation: $0.recommendation)
        }
        let lines = json ? [RecommendedTarget.document(rows)] : Self.table(rows)
        do {
            try LineWriter.standardOutput.write(lines: lines)
        } catch {
            printError("\(error)")
            Glibc.exit(1)
        }
    }

    /// Sizes in MiB, rates per hour, one row a container and the leak's sentence under a leaking one.
    static func table(_ rows: [RecommendedTarget]) -> [String] {
        let header = ["TARGET", "DAYS", "CURRENT PEAK", "VPA-STYLE", "KRR-STYLE", "MEMWARDEN", "LIMIT", "LEAK"]
        var cells: [[String]] = [header]
        var notes: [Int: String] = [:]
        for row in rows {
            let r = row.recommendation
            let identity = row.identity
            let name =
                identity.systemdUnit ?? identity.containerID.map { "container " + String($0.prefix(12)) } ?? identity.cgroup
            cells.append([
                name, JSONLine.format(r.historySeconds / 86_400, decimals: 1), mib(r.currentPeak), mib(r.vpaStyle),
                mib(r.krrStyle), mib(r.memwarden), r.limit.map(mib) ?? "-",
                r.trend.map { Recommendation.bytesText($0.bytesPerSecond * 3600) + "/h" } ?? "-",
            ])
            if let sentence = r.sentence { notes[cells.count - 1] = sentence }
        }
        let widths = header.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
        var lines: [String] = []
        for (index, row) in cells.enumerated() {
            let padded = row.enumerated().map { column, text in
                // names left, figures right, as a reader compares them
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return column == 0 ? text + pad : pad + text
            }
            lines.append(padded.joined(separator: "  "))
            if let note = notes[index] { lines.append("  ↳ " + note) }
        }
        if rows.isEmpty { lines.append("(no cgroup with usage in the trace)") }
        return lines
    }

    static func mib(_ bytes: Double) -> String {
        JSONLine.format(bytes / 1_048_576, decimals: 0) + " MiB"
    }

    private func printError(_ message: String) {
        let line = "memwarden: \(message)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }
}
