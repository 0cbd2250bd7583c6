import Foundation
import MemwardenDetection
import MemwardenModel
import Testing

struct CorpusTests {
    /// Generated once: the checks below read the same corpora.
    static let corpus = ScenarioCorpus.generate(seed: ScenarioCorpus.tuningSeed)
    static let heldOut = ScenarioCorpus.generate(seed: ScenarioCorpus.heldOutSeed)
    static func corpus(_ seed: UInt64) -> [CorpusTrace] { seed == ScenarioCorpus.tuningSeed ? corpus : heldOut }
    static let seeds = [ScenarioCorpus.tuningSeed, ScenarioCorpus.heldOutSeed]
    static let mib: UInt64 = 1 << 20

    static let required = [
        "flat_noise", "gc_sawtooth", "warmup_exponential", "warmup_linear", "step", "file_cache", "batch_cycles",
        "load_cycle", "cache_fill", "startup_spike", "periodic_spikes", "bounded_random_walk", "shrinking",
        "process_churn", "malloc_churn", "leak_linear", "leak_very_slow", "leak_fast", "leak_under_sawtooth",
        "leak_staircase", "leak_noisy", "leak_quadratic", "leak_exponential", "leak_late_onset",
        "leak_spread_workers", "leak_restarting_process", "leak_with_spikes", "leak_on_daily_cycle",
    ]

    /// The cgroup's RSS after every line: the sum over live processes of their last line.
    struct Replayed {
        var times: [Double] = []
        var totals: [UInt64] = []
        var limits: Set<UInt64?> = []
        var cgroups: Set<String> = []
        var lines = 0
    }

    static func replay(_ trace: CorpusTrace) throws -> Replayed {
        let reader = TraceReader(bytes: trace.traceBytes(), name: trace.fileName)
        var last: [Int32: UInt64] = [:]
        var total: UInt64 = 0
        var result = Replayed()
        var previous = -1.0
        while let sample = try reader.next() {
            #expect(sample.time >= previous, "\(trace.name): time goes backwards at line \(sample.line)")
            previous = sample.time
            total -= last[sample.pid] ?? 0
            if sample.event == .exit {
                last[sample.pid] = nil
            } else {
                last[sample.pid] = sample.rss
                total += sample.rss
            }
            result.times.append(sample.time)
            result.totals.append(total)
            result.limits.insert(sample.limit)
            result.cgroups.insert(reader.strings[sample.cgroup])
            result.lines += 1
        }
        return result
    }

    @Test func sameSeedSameBytesOtherSeedOtherParameters() {
        let names: Set<String> = ["gc_sawtooth", "leak_linear", "process_churn", "leak_restarting_process"]
        let a = ScenarioCorpus.generate(seed: 7, classes: names)
        let b = ScenarioCorpus.generate(seed: 7, classes: names)
        let c = ScenarioCorpus.generate(seed: 8, classes: names)
        #expect(a.count == b.count && a.count == c.count)
        for (x, y) in zip(a, b) {
            #expect(x.traceBytes() == y.traceBytes())
            #expect(x.label == y.label)
        }
        for (x, z) in zip(a, c) {
            #expect(x.name == z.name)
            #expect(x.label.params != z.label.params, "\(x.name): seeds 7 and 8 drew the same parameters")
        }
    }

    @Test func everyClassWithThreeVariants() {
        #expect(Self.corpus.count >= 60)
        for name in Self.required {
            #expect(Self.corpus.count { $0.label.className == name } >= 3, "\(name)")
        }
        #expect(Self.corpus.contains { !$0.label.leak && !Self.required.contains($0.label.className) })
        #expect(Self.corpus.contains { $0.label.leak && !Self.required.contains($0.label.className) })
        #expect(Set(Self.corpus.map(\.name)).count == Self.corpus.count)
    }

    @Test(arguments: seeds) func linesParseInOrderWithOneCgroupAndTheLimit(seed: UInt64) throws {
        for trace in Self.corpus(seed) {
            let replayed = try Self.replay(trace)
            #expect(replayed.lines == trace.lineCount)
            #expect(replayed.limits == [trace.label.limit], "\(trace.name)")
            #expect(replayed.cgroups.count == 1, "\(trace.name)")
            let cgroup = try #require(replayed.cgroups.first)
            #expect(cgroup.hasPrefix("/kubepods/") || cgroup.hasPrefix("/system.slice/"))
            // the recording ends at duration; a process's last line is at most a heartbeat before
            let last = replayed.times.last ?? 0
            #expect(last <= trace.label.duration + 0.001 && last >= trace.label.duration - 10, "\(trace.name)")
        }
    }

    @Test(arguments: seeds) func leaksReachTheirLimitWhenTheLabelSays(seed: UInt64) throws {
        for trace in Self.corpus(seed) where trace.label.leak {
            let label = trace.label
            let limitTime = try #require(label.limitTime)
            let leakStart = try #require(label.leakStart)
            #expect(leakStart < limitTime, "\(trace.name)")
            let replayed = try Self.replay(trace)
            let index = try #require(
                replayed.totals.firstIndex { $0 >= label.limit }, "\(trace.name) never reaches its limit")
            #expect(abs(replayed.times[index] - limitTime) <= 10, "\(trace.name)")
            // the OOM kill: every process exits, the trace ends
            #expect(replayed.totals.last == 0, "\(trace.name)")
            #expect(label.duration - limitTime < 5, "\(trace.name)")
        }
    }

    @Test(arguments: seeds) func healthyTracesStayBelowTheirLimit(seed: UInt64) throws {
        for trace in Self.corpus(seed) where !trace.label.leak {
            let replayed = try Self.replay(trace)
            let peak = replayed.totals.max() ?? 0
            #expect(peak < trace.label.limit, "\(trace.name)")
            #expect(Double(trace.label.limit) >= Double(peak) * 1.3 - 1, "\(trace.name)")
            #expect(trace.label.leakStart == nil && trace.label.limitTime == nil)
        }
    }

    @Test(arguments: seeds) func boundedGrowthIsFlatAfterGrowthEnd(seed: UInt64) throws {
        for trace in Self.corpus(seed) where !trace.label.leak {
            let bounded = ScenarioCorpus.boundedGrowthClasses.contains(trace.label.className)
            #expect((trace.label.growthEnd != nil) == bounded, "\(trace.name)")
            guard let growthEnd = trace.label.growthEnd else { continue }
            let replayed = try Self.replay(trace)
            let after = zip(replayed.times, replayed.totals).filter { $0.0 >= growthEnd }.map(\.1)
            let spread = (after.max() ?? 0) - (after.min() ?? 0)
            #expect(spread <= 32 * Self.mib, "\(trace.name): \(spread / Self.mib) MiB after growth_end")
            #expect(trace.label.duration - growthEnd >= 3600, "\(trace.name)")
        }
    }

    @Test func writesAndLoadsACorpus() throws {
        let directory = try Self.temporaryDirectory("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let traces = ScenarioCorpus.generate(seed: 3, variantsPerClass: 1, classes: ["step", "leak_fast"])
        try ScenarioCorpus.write(traces, to: directory)
        let loaded = try CorpusDirectory.load(directory)
        #expect(loaded.entries.map(\.label) == traces.map(\.label))
        let scores = try DetectionBench.score(loaded)
        #expect(scores.map(\.name) == ["step-1", "leak_fast-1"])
        #expect(scores.allSatisfy { $0.samples > 0 })
    }

    // MARK: scoring

    static func event(
        _ kind: LeakEvent.Kind, _ t: Double, pid: Int32? = 1, toLimit: Double? = nil,
        interval: ClosedRange<Double>? = nil
    ) -> LeakEvent {
        LeakEvent(
            kind: kind, timeNanoseconds: Int64(t * 1e9), scope: pid == nil ? .cgroup : .process, pid: pid, comm: "x",
            cgroup: "/c", detectors: [], confidence: 0.8, growthBytesPerSecond: 1000, secondsToLimit: toLimit,
            limit: 1 << 30, reasons: [], forecastInterval: interval)
    }

    static func label(leak: Bool, leakStart: Double? = nil, limitTime: Double? = nil, growthEnd: Double? = nil)
        -> CorpusLabel
    {
        CorpusLabel(
            file: "x.jsonl", className: leak ? "leak_linear" : "flat_noise", variant: 1, leak: leak, scope: "process",
            leakStart: leakStart, limitTime: limitTime, growthEnd: growthEnd, duration: 10_000, limit: 1 << 30,
            seed: 1, params: ["rate_mib_per_min": 0.4])
    }

    @Test func leakScoreRecallDelayLeadForecastCoverage() {
        let events = [
            Self.event(.suspected, 50, pid: 9),  // before onset, another target
            Self.event(.cleared, 80, pid: 9),
            Self.event(.suspected, 999.5),  // within a second of onset: the leak's
            Self.event(.updated, 1200, toLimit: 3000, interval: 2000...4000),  // truth 2800: held
            Self.event(.updated, 2000, toLimit: 1000, interval: 500...1500),  // truth 2000: missed
            Self.event(.updated, 4100, interval: 0...10),  // after the limit: not counted
        ]
        let score = DetectionScore.score(
            name: "x", label: Self.label(leak: true, leakStart: 1000, limitTime: 4000), events: events)
        #expect(score.flaggedBeforeOnset)
        #expect(score.firstAlert == 999.5 && score.detected)
        #expect(score.delay == -0.5 && score.lead == 3000.5)
        // the first alert had no forecast: the suspicion's first update with one is judged at its own time
        #expect(score.forecastTime == 1200 && score.forecastTruth == 2800)
        #expect(abs((score.forecastError ?? 0) - 200.0 / 2800) < 1e-9)
        #expect(score.coverageEvents == 2 && score.coverageHits == 1)
        #expect(score.slow)

        let late = DetectionScore.score(
            name: "x", label: Self.label(leak: true, leakStart: 1000, limitTime: 4000),
            events: [Self.event(.suspected, 4001, toLimit: 10)])
        #expect(!late.detected && late.lead == nil && !late.forecastMissing)
        let none = DetectionScore.score(
            name: "x", label: Self.label(leak: true, leakStart: 1000, limitTime: 4000), events: [])
        #expect(!none.detected && none.firstAlert == nil)

        let row = DetectionRow(name: "leak_linear", scores: [score, late, none])
        #expect(abs((row.recall ?? 0) - 1.0 / 3) < 1e-9)
        #expect(row.flaggedBeforeOnset == 1 && row.medianLead == 3000.5)
        #expect(row.intervalCoverage == 0.5)
    }

    @Test func healthyKeptRules() {
        // cleared after 900 s of 10 000: 9 %, under the 10 % allowed
        let brief = DetectionScore.score(
            name: "x", label: Self.label(leak: false), events: [Self.event(.suspected, 100), Self.event(.cleared, 1000)])
        #expect(brief.flaggedAtAll && !brief.keptFlagged && brief.flaggedSeconds == 900)
        // two targets overlapping: the union counts, 1100 s > 10 %
        let union = DetectionScore.score(
            name: "x", label: Self.label(leak: false),
            events: [
                Self.event(.suspected, 100), Self.event(.suspected, 500, pid: nil), Self.event(.cleared, 1000),
                Self.event(.cleared, 1200, pid: nil),
            ])
        #expect(union.flaggedSeconds == 1100 && union.keptFlagged)
        let open = DetectionScore.score(name: "x", label: Self.label(leak: false), events: [Self.event(.suspected, 9000)])
        #expect(open.keptFlagged && open.flaggedSeconds == 1000)
        // bounded growth: any suspicion beyond growth_end + 660 s
        let bounded = Self.label(leak: false, growthEnd: 2000)
        let inGrace = DetectionScore.score(
            name: "x", label: bounded, events: [Self.event(.suspected, 1500), Self.event(.cleared, 2600)])
        #expect(!inGrace.keptFlagged)
        let beyond = DetectionScore.score(
            name: "x", label: bounded, events: [Self.event(.suspected, 1500), Self.event(.cleared, 2700)])
        #expect(beyond.keptFlagged)
        let row = DetectionRow(name: "flat_noise", scores: [brief, union, open])
        #expect(row.kept == 2 && row.flagged == 1 && row.recall == nil)
    }

    // MARK: bad corpora

    static func temporaryDirectory(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-corpus-\(name)-\(getpid())")
            .path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static let goodLabel =
        #"{"file":"a.jsonl","class":"flat_noise","variant":1,"leak":false,"scope":"process","leak_start":null,"#
        + #""limit_time":null,"growth_end":null,"duration":10,"limit":1073741824,"seed":1,"params":{}}"#

    struct BadCorpus: Sendable, CustomTestStringConvertible {
        var name: String
        var labels: String?
        var files: [String]
        var message: String
        var testDescription: String { name }
    }

    static let badCorpora: [BadCorpus] = [
        BadCorpus(name: "no labels", labels: nil, files: ["a.jsonl"], message: "labels.jsonl: missing"),
        BadCorpus(
            name: "not JSON", labels: goodLabel + "\n{\"file\":", files: ["a.jsonl"],
            message: "labels.jsonl:2: not valid JSON"),
        BadCorpus(
            name: "leak without leak_start",
            labels: goodLabel + "\n"
                + goodLabel.replacing(#""a.jsonl""#, with: #""b.jsonl""#).replacing(
                    #""leak":false"#, with: #""leak":true"#),
            files: ["a.jsonl", "b.jsonl"], message: "labels.jsonl:2: missing field leak_start for a leak trace"),
        BadCorpus(
            name: "missing field", labels: goodLabel.replacing(#""variant":1,"#, with: ""), files: ["a.jsonl"],
            message: "labels.jsonl:1: missing field variant"),
        BadCorpus(
            name: "missing trace", labels: goodLabel, files: [],
            message: "labels.jsonl:1: names a.jsonl, which does not exist"),
        BadCorpus(
            name: "unlabelled trace", labels: goodLabel, files: ["a.jsonl", "z.jsonl"],
            message: "z.jsonl: has no line in labels.jsonl"),
    ]

    @Test(arguments: badCorpora) func badCorpusNamesFileAndLine(_ bad: BadCorpus) throws {
        let directory = try Self.temporaryDirectory(bad.name.replacing(" ", with: "-"))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        if let labels = bad.labels {
            try Data(labels.utf8).write(to: URL(fileURLWithPath: directory + "/labels.jsonl"))
        }
        for file in bad.files {
            try Data().write(to: URL(fileURLWithPath: directory + "/" + file))
        }
        do {
            _ = try CorpusDirectory.load(directory)
            Issue.record("\(bad.name): loaded")
        } catch {
            #expect(error.description.hasPrefix(directory + "/"), "\(error)")
            #expect(error.description.contains(bad.message), "\(error)")
        }
    }
}
