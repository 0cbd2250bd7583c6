import ArgumentParser

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import MemwardenDetection
import MemwardenModel

/// Detection quality on the labelled corpus: recall, false alarms, delay, lead
/// and forecast accuracy per scenario class (docs/detection-corpus.md).
struct BenchDetectionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detection",
        abstract: "Score the detectors on the labelled scenario corpus (recall, false alarms, lead, forecast).",
        discussion: """
            Without --seed or --corpus, scores the tuning seed (\(ScenarioCorpus.tuningSeed)) and the held-out \
            seed (\(ScenarioCorpus.heldOutSeed)) and prints both tables. A generated corpus is written to a \
            temporary directory and removed afterwards.
            """)

    @Option(help: "Score an existing corpus directory (written by `memwarden corpus`).")
    var corpus: String?

    @Option(help: "Generate the corpus from this seed.")
    var seed: UInt64?

    @Option(help: "Traces per class when generating.")
    var variants: Int = 3

    @Option(help: "Detector thresholds: standard, or accelerated (time compressed, for leaksim's short scenarios).")
    var detectorProfile: DetectorConfiguration.Profile = .standard

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @Flag(help: "Also print one line per trace: first alert, flagged time, forecast against the truth.")
    var details = false

    @Option(name: .customLong("class"), help: "Only this class (repeatable).")
    var classes: [String] = []

    @Option(help: NodeMemoryOption.help)
    var nodeMemory: String?

    func validate() throws {
        guard variants > 0 else { throw ValidationError("--variants must be at least 1") }
        guard corpus == nil || seed == nil else { throw ValidationError("--corpus and --seed exclude each other") }
        _ = try NodeMemoryOption.bytes(nodeMemory)
        for name in classes where !ScenarioCorpus.classNames.contains(name) {
            throw ValidationError(
                "unknown class \(name); classes: \(ScenarioCorpus.classNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        let filter = classes.isEmpty ? nil : Set(classes)
        var reports: [DetectionReport] = []
        if let corpus {
            reports.append(try score(CorpusDirectory.load(corpus), seed: nil, filter: filter, start: monotonicSeconds()))
        } else {
            for seed in seed.map({ [$0] }) ?? [ScenarioCorpus.tuningSeed, ScenarioCorpus.heldOutSeed] {
                let start = monotonicSeconds()
                let directory = FileManager.default.temporaryDirectory.path + "/memwarden-corpus-\(getpid())-\(seed)"
                defer { try? FileManager.default.removeItem(atPath: directory) }
                try ScenarioCorpus.write(
                    ScenarioCorpus.generate(seed: seed, variantsPerClass: variants, classes: filter), to: directory)
                reports.append(try score(CorpusDirectory.load(directory), seed: seed, filter: filter, start: start))
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.nonConformingFloatEncodingStrategy = .convertToString(
                positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try encoder.encode(JSONReport(runs: reports)), as: UTF8.self))
            return
        }
        for (index, report) in reports.enumerated() {
            if index > 0 { print("") }
            let which: String
            switch report.seed {
            case ScenarioCorpus.tuningSeed?: which = "seed \(ScenarioCorpus.tuningSeed) (tuning)"
            case ScenarioCorpus.heldOutSeed?: which = "seed \(ScenarioCorpus.heldOutSeed) (held out)"
            case let seed?: which = "seed \(seed)"
            case nil: which = "corpus \(report.corpus ?? "")"
            }
            print(
                "\(which): \(report.traces) traces, \(report.samples) samples replayed, "
                    + "\(report.profile) profile, \(wall(report.wallSeconds)) wall")
            print("")
            print(report.table(), terminator: "")
            if details {
                print("")
                for line in report.detailLines() { print(line) }
            }
        }
    }

    private struct JSONReport: Encodable {
        var runs: [DetectionReport]
    }

    private func score(_ corpus: CorpusDirectory, seed: UInt64?, filter: Set<String>?, start: Double) throws
        -> DetectionReport
    {
        let scores = try DetectionBench.score(
            corpus, configuration: DetectorConfiguration(profile: detectorProfile), classes: filter,
            nodeMemory: try NodeMemoryOption.bytes(nodeMemory))
        return DetectionReport(
            seed: seed, corpus: seed == nil ? corpus.path : nil, profile: detectorProfile.rawValue, scores: scores,
            wallSeconds: monotonicSeconds() - start)
    }

    private func wall(_ seconds: Double) -> String {
        let tenths = Int((seconds * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)s"
    }

    private func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
