import MemwardenModel

/// Replays a corpus through the detectors and scores every trace: what
/// `memwarden bench detection` runs.
public enum DetectionBench {
    /// Replays one trace file and scores it against its label.
    /// `nodeMemory`: the limit of traces whose samples carry none (see `Replayer.nodeMemory`).
    public static func score(
        _ entry: CorpusDirectory.Entry, configuration: DetectorConfiguration = DetectorConfiguration(),
        nodeMemory: UInt64? = nil
    ) throws(TraceError) -> TraceScore {
        let reader = try TraceReader(path: entry.path)
        var replay = TraceReplay()
        replay.configuration = configuration
        replay.nodeMemory = nodeMemory
        var events: [LeakEvent] = []
        let summary: TraceReplay.Summary
        do {
            summary = try replay.run(reader) { events.append($0) }
        } catch let error as TraceError {
            throw error
        } catch {
            throw TraceError(.unreadable, file: entry.path, line: reader.lineNumber, field: nil, detail: "\(error)")
        }
        return DetectionScore.score(name: entry.name, label: entry.label, events: events, samples: summary.samples)
    }

    /// Every trace of `corpus` (or only those of `classes`), in label order.
    public static func score(
        _ corpus: CorpusDirectory, configuration: DetectorConfiguration = DetectorConfiguration(),
        classes: Set<String>? = nil, nodeMemory: UInt64? = nil
    ) throws(TraceError) -> [TraceScore] {
        var scores: [TraceScore] = []
        for entry in corpus.entries where classes?.contains(entry.label.className) ?? true {
            scores.append(try score(entry, configuration: configuration, nodeMemory: nodeMemory))
        }
        return scores
    }
}
