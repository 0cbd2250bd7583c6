import ArgumentParser
import MemwardenDetection

/// `memwarden corpus`: writes the labelled scenario corpus (docs/detection-corpus.md).
struct CorpusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corpus",
        abstract: "Write a labelled corpus of synthetic traces (healthy shapes and leaks) and labels.jsonl.",
        discussion: """
            Seed \(ScenarioCorpus.tuningSeed) is the tuning seed, seed \(ScenarioCorpus.heldOutSeed) the held-out \
            seed. The same seed always writes the same bytes. Score a corpus with \
            `memwarden bench detection --corpus DIR`.
            """)

    @Option(help: "The seed every trace's parameters are drawn from.")
    var seed: UInt64 = ScenarioCorpus.tuningSeed

    @Option(help: "The directory to write (created if missing).")
    var out: String

    @Option(help: "Traces per class.")
    var variants: Int = 3

    func validate() throws {
        guard variants > 0 else { throw ValidationError("--variants must be at least 1") }
    }

    func run() throws {
        let traces = ScenarioCorpus.generate(seed: seed, variantsPerClass: variants)
        try ScenarioCorpus.write(traces, to: out)
        let lines = traces.reduce(0) { $0 + $1.lineCount }
        print("wrote \(traces.count) traces (\(lines) lines) and \(CorpusDirectory.labelsFile) to \(out), seed \(seed)")
    }
}
