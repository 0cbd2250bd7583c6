import MemwardenModel

/// How the detectors did on one corpus trace (docs/detection-corpus.md,
/// "Scoring"). Times are seconds on the trace's clock.
public struct TraceScore: Sendable, Codable, Hashable {
    public var name: String
    public var className: String
    public var leak: Bool
    public var duration: Double
    public var samples: Int
    public var events: Int

    // leak traces
    public var leakStart: Double?
    public var limitTime: Double?
    /// The first `leak.suspected` at or after leak_start − 1 s.
    public var firstAlert: Double?
    public var flaggedBeforeOnset = false
    /// The first alert came before the limit.
    public var detected = false
    public var delay: Double?
    public var lead: Double?
    /// The first forecast of the first alert's suspicion: when it was made, what it said, the truth then.
    public var forecastTime: Double?
    public var forecastSeconds: Double?
    public var forecastTruth: Double?
    public var forecastError: Double?
    /// Leak traces whose first alert carried no forecast (nor did its suspicion's updates).
    public var forecastMissing = false
    /// Events between leak_start and the limit that had an interval, and those whose interval held the truth.
    public var coverageEvents = 0
    public var coverageHits = 0
    /// leak_very_slow, or a leak whose `rate_mib_per_min` is at most 0.5.
    public var slow = false

    // healthy traces
    public var flaggedAtAll = false
    public var keptFlagged = false
    public var keptReason: String?
    /// The union of all targets' suspected time.
    public var flaggedSeconds = 0.0

    public var coverage: Double? { coverageEvents > 0 ? Double(coverageHits) / Double(coverageEvents) : nil }
}

public enum DetectionScore {
    /// Healthy bounded growth may stay suspected this long after it ended:
    /// the detectors' longest window (about 10 minutes) plus a minute.
    public static let growthGrace = 600.0 + 60.0
    /// Healthy traces without a bounded growth may be suspected this share of the trace.
    public static let flaggedShareAllowed = 0.10
    /// Alerts this early before leak_start count as the leak's (sample timing).
    public static let onsetSlack = 1.0

    private struct Target: Hashable {
        var scope: LeakScope
        var pid: Int32?
        var cgroup: String
        init(_ event: LeakEvent) {
            scope = event.scope
            pid = event.pid
            cgroup = event.cgroup
        }
    }

    /// Scores one trace from the events its replay produced, in order.
    public static func score(name: String, label: CorpusLabel, events: [LeakEvent], samples: Int = 0) -> TraceScore {
        var score = TraceScore(
            name: name, className: label.className, leak: label.leak, duration: label.duration, samples: samples,
            events: events.count)
        let intervals = suspicionIntervals(events, end: label.duration)
        score.flaggedSeconds = unionLength(intervals.map { ($0.start, $0.end) })
        score.flaggedAtAll = events.contains { $0.kind == .suspected }

        guard label.leak, let leakStart = label.leakStart, let limitTime = label.limitTime else {
            if intervals.contains(where: { $0.open }) {
                score.keptFlagged = true
                score.keptReason = "still suspected at the end"
            } else if let growthEnd = label.growthEnd {
                if let late = intervals.first(where: { $0.end > growthEnd + growthGrace }) {
                    score.keptFlagged = true
                    score.keptReason = "suspected at \(corpusDuration(late.end)) > growth end + 11m"
                }
            } else if score.flaggedSeconds > flaggedShareAllowed * label.duration {
                score.keptFlagged = true
                score.keptReason = "suspected \(corpusPercent(score.flaggedSeconds / max(label.duration, 1))) of the trace"
            }
            return score
        }

        score.leakStart = leakStart
        score.limitTime = limitTime
        score.slow = label.className == "leak_very_slow" || (label.params["rate_mib_per_min"].map { $0 <= 0.5 } ?? false)
        let onset = leakStart - onsetSlack
        score.flaggedBeforeOnset = events.contains { $0.kind == .suspected && $0.t < onset }
        if let index = events.firstIndex(where: { $0.kind == .suspected && $0.t >= onset }) {
            let alert = events[index]
            score.firstAlert = alert.t
            score.delay = alert.t - leakStart
            if alert.t < limitTime {
                score.detected = true
                score.lead = limitTime - alert.t
                let target = Target(alert)
                var forecast: LeakEvent? = alert.secondsToLimit != nil ? alert : nil
                if forecast == nil {
                    for event in events[(index + 1)...] where Target(event) == target {
                        if event.kind == .cleared || event.kind == .suspected { break }
                        if event.secondsToLimit != nil {
                            forecast = event
                            break
                        }
                    }
                }
                if let forecast, let seconds = forecast.secondsToLimit, forecast.t < limitTime {
                    // the truth when the forecast was made: a later update is judged against a shorter lead
                    let truth = limitTime - forecast.t
                    score.forecastTime = forecast.t
                    score.forecastSeconds = seconds
                    score.forecastTruth = truth
                    score.forecastError = abs(seconds - truth) / truth
                } else {
                    score.forecastMissing = true
                }
            }
        }
        for event in events where event.kind != .cleared && event.t >= leakStart && event.t < limitTime {
            guard let interval = event.forecastInterval else { continue }
            score.coverageEvents += 1
            if interval.contains(limitTime - event.t) { score.coverageHits += 1 }
        }
        return score
    }

    private struct Interval {
        var start: Double
        var end: Double
        var open: Bool
    }

    /// Per target, [suspected, cleared], or to the trace's end when never cleared.
    private static func suspicionIntervals(_ events: [LeakEvent], end: Double) -> [Interval] {
        var open: [Target: Double] = [:]
        var order: [Target] = []
        var intervals: [Interval] = []
        for event in events {
            let target = Target(event)
            switch event.kind {
            case .suspected:
                if open[target] == nil {
                    open[target] = event.t
                    order.append(target)
                }
            case .cleared:
                if let start = open.removeValue(forKey: target) {
                    intervals.append(Interval(start: start, end: event.t, open: false))
                }
            case .updated:
                break
            }
        }
        for target in order {
            if let start = open.removeValue(forKey: target) {
                intervals.append(Interval(start: start, end: max(start, end), open: true))
            }
        }
        return intervals
    }

    static func unionLength(_ intervals: [(Double, Double)]) -> Double {
        var total = 0.0
        var current: (Double, Double)?
        for interval in intervals.sorted(by: { $0.0 < $1.0 }) {
            if let c = current, interval.0 <= c.1 {
                current = (c.0, max(c.1, interval.1))
            } else {
                if let c = current { total += c.1 - c.0 }
                current = interval
            }
        }
        if let c = current { total += c.1 - c.0 }
        return total
    }
}

/// One row of the table: a class, or a total over several.
public struct DetectionRow: Sendable, Codable, Hashable {
    public var name: String
    public var traces: Int
    public var leakTraces: Int
    public var healthyTraces: Int
    /// Leak traces detected before the limit / leak traces.
    public var recall: Double?
    /// Healthy traces flagged at all / healthy traces.
    public var flagged: Double?
    public var kept: Int?
    public var flaggedBeforeOnset: Int?
    public var medianDelay: Double?
    public var medianLead: Double?
    public var medianForecastError: Double?
    public var forecastMissing: Int?
    /// The mean, over leak traces with interval events, of the share whose interval held the truth.
    public var intervalCoverage: Double?

    public init(name: String, scores: [TraceScore]) {
        self.name = name
        traces = scores.count
        let leaks = scores.filter(\.leak)
        let healthy = scores.filter { !$0.leak }
        leakTraces = leaks.count
        healthyTraces = healthy.count
        if !leaks.isEmpty {
            recall = Double(leaks.count { $0.detected }) / Double(leaks.count)
            flaggedBeforeOnset = leaks.count { $0.flaggedBeforeOnset }
            medianDelay = Quantiles.median(leaks.compactMap { $0.detected ? $0.delay : nil })
            medianLead = Quantiles.median(leaks.compactMap(\.lead))
            medianForecastError = Quantiles.median(leaks.compactMap(\.forecastError))
            forecastMissing = leaks.count { $0.forecastMissing }
            let coverages = leaks.compactMap(\.coverage)
            intervalCoverage = coverages.isEmpty ? nil : coverages.reduce(0, +) / Double(coverages.count)
        }
        if !healthy.isEmpty {
            flagged = Double(healthy.count { $0.flaggedAtAll }) / Double(healthy.count)
            kept = healthy.count { $0.keptFlagged }
        }
    }
}

/// A goal from docs/detection-corpus.md and whether this run met it (nil: nothing to judge).
public struct DetectionTarget: Sendable, Codable, Hashable {
    public var name: String
    public var value: String
    public var pass: Bool?
}

/// Everything `memwarden bench detection` prints for one corpus.
public struct DetectionReport: Sendable, Codable {
    public var seed: UInt64?
    public var corpus: String?
    public var profile: String
    public var traces: Int
    public var samples: Int
    public var wallSeconds: Double
    public var rows: [DetectionRow]
    public var targets: [DetectionTarget]
    public var scores: [TraceScore]

    public init(
        seed: UInt64?, corpus: String?, profile: String, scores: [TraceScore], wallSeconds: Double
    ) {
        self.seed = seed
        self.corpus = corpus
        self.profile = profile
        self.scores = scores
        self.wallSeconds = wallSeconds
        traces = scores.count
        samples = scores.reduce(0) { $0 + $1.samples }
        let order = ScenarioCorpus.classNames
        var names = order.filter { name in scores.contains { $0.className == name } }
        names += Set(scores.map(\.className)).subtracting(order).sorted()
        var rows = names.map { name in DetectionRow(name: name, scores: scores.filter { $0.className == name }) }
        rows.append(DetectionRow(name: "healthy total", scores: scores.filter { !$0.leak }))
        rows.append(DetectionRow(name: "leak total", scores: scores.filter(\.leak)))
        rows.append(DetectionRow(name: "all", scores: scores))
        self.rows = rows
        targets = Self.targets(scores)
    }

    static func targets(_ scores: [TraceScore]) -> [DetectionTarget] {
        let leaks = scores.filter(\.leak)
        let healthy = scores.filter { !$0.leak }
        var targets: [DetectionTarget] = []
        let detected = leaks.count { $0.detected }
        targets.append(
            DetectionTarget(
                name: "recall 100 %", value: "\(detected)/\(leaks.count)",
                pass: leaks.isEmpty ? nil : detected == leaks.count))
        let kept = healthy.count { $0.keptFlagged }
        targets.append(
            DetectionTarget(name: "kept 0", value: "\(kept)/\(healthy.count)", pass: healthy.isEmpty ? nil : kept == 0))
        let flagged = healthy.count { $0.flaggedAtAll }
        targets.append(
            DetectionTarget(
                name: "flagged at all <= 5 % of healthy", value: "\(flagged)/\(healthy.count)",
                pass: healthy.isEmpty ? nil : Double(flagged) <= 0.05 * Double(healthy.count)))
        let fast = leaks.filter { $0.className == "leak_fast" }
        // an undetected trace has no delay: it counts as infinitely late
        let fastDelay = Quantiles.median(fast.map { $0.detected ? ($0.delay ?? .infinity) : .infinity })
        targets.append(
            DetectionTarget(
                name: "leak_fast median delay <= 10s", value: fastDelay.map(corpusDuration) ?? "-",
                pass: fastDelay.map { $0 <= 10 }))
        let slow = leaks.filter(\.slow)
        // an undetected slow leak gave no warning: lead 0
        let slowLead = Quantiles.median(slow.map { $0.lead ?? 0 })
        targets.append(
            DetectionTarget(
                name: "slow classes median lead >= 1h", value: slowLead.map(corpusDuration) ?? "-",
                pass: slowLead.map { $0 >= 3600 }))
        let error = Quantiles.median(leaks.compactMap(\.forecastError))
        let missing = leaks.count { $0.forecastMissing }
        targets.append(
            DetectionTarget(
                name: "median forecast error <= 20 %",
                value: (error.map(corpusPercent) ?? "-") + (missing > 0 ? " (\(missing) missing)" : ""),
                pass: error.map { $0 <= 0.2 }))
        let coverage = DetectionRow(name: "", scores: leaks).intervalCoverage
        targets.append(
            DetectionTarget(
                name: "interval coverage >= 80 %", value: coverage.map(corpusPercent) ?? "-",
                pass: coverage.map { $0 >= 0.8 }))
        return targets
    }

    private static let columns: [(String, Int)] = [
        ("class", 24), ("traces", 6), ("recall", 6), ("flagged", 7), ("kept", 4), ("early", 5), ("delay", 7),
        ("lead", 7), ("fc err", 6), ("cover", 5),
    ]

    /// The table, the targets, fixed-width.
    public func table() -> String {
        var out = ""
        func row(_ cells: [String]) {
            out += zip(cells, Self.columns).map { pad($0, $1.1, left: $1.0 == "class") }.joined(separator: "  ") + "\n"
        }
        row(Self.columns.map(\.0))
        row(Self.columns.map { String(repeating: "-", count: $0.1) })
        for r in rows {
            if r.name == "healthy total" { row(Self.columns.map { String(repeating: "-", count: $0.1) }) }
            row([
                r.name, String(r.traces), r.recall.map(corpusPercent) ?? "-", r.flagged.map(corpusPercent) ?? "-",
                r.kept.map(String.init) ?? "-", r.flaggedBeforeOnset.map(String.init) ?? "-",
                r.medianDelay.map(corpusDuration) ?? "-", r.medianLead.map(corpusDuration) ?? "-",
                r.medianForecastError.map(corpusPercent) ?? "-", r.intervalCoverage.map(corpusPercent) ?? "-",
            ])
        }
        out += "\n(early: leaks flagged before onset; delay and lead: medians over detected leaks; fc err: median "
        out += "forecast error at the first alert; cover: mean share of intervals holding the truth)\n\ntargets:\n"
        for target in targets {
            let verdict = target.pass.map { $0 ? "PASS" : "FAIL" } ?? "n/a "
            out += "  \(verdict)  \(pad(target.name, 36, left: true))  \(target.value)\n"
        }
        return out
    }

    /// One line per trace, for tuning.
    public func detailLines() -> [String] {
        scores.map { s in
            var line = pad(s.name, 28, left: true) + " "
            if s.leak {
                line += "leak     onset \(corpusDuration(s.leakStart)) limit \(corpusDuration(s.limitTime)): "
                if let alert = s.firstAlert {
                    line += "first alert \(corpusDuration(alert))"
                    line += s.detected ? " (delay \(corpusDuration(s.delay)), lead \(corpusDuration(s.lead)))" : " (after the limit)"
                } else {
                    line += "never alerted"
                }
                if let seconds = s.forecastSeconds, let truth = s.forecastTruth, let at = s.forecastTime {
                    line += "; forecast at \(corpusDuration(at)) \(corpusDuration(seconds)) vs truth \(corpusDuration(truth))"
                    line += " (\(corpusPercent(s.forecastError)))"
                } else if s.forecastMissing {
                    line += "; no forecast"
                }
                if s.coverageEvents > 0 { line += "; intervals \(s.coverageHits)/\(s.coverageEvents) hold the truth" }
                if s.flaggedBeforeOnset { line += "; flagged before onset" }
            } else {
                line += "healthy  \(corpusDuration(s.duration)): "
                line += s.flaggedAtAll ? "flagged \(corpusDuration(s.flaggedSeconds))" : "never flagged"
                if s.keptFlagged { line += "; KEPT (\(s.keptReason ?? ""))" }
            }
            return line + "; \(s.samples) samples, \(s.events) events"
        }
    }
}

func pad(_ text: String, _ width: Int, left: Bool) -> String {
    guard text.count < width else { return text }
    let fill = String(repeating: " ", count: width - text.count)
    return left ? text + fill : fill + text
}

/// "7s", "12m", "3.4h"; "-" for nothing, "never" for infinity.
func corpusDuration(_ seconds: Double?) -> String {
    guard let seconds else { return "-" }
    guard seconds.isFinite else { return "never" }
    let sign = seconds < 0 ? "-" : ""
    let s = abs(seconds)
    if s < 9.95 && s != s.rounded() { return sign + oneDecimal(s) + "s" }
    if s < 60 { return sign + "\(Int(s.rounded()))s" }
    if s < 600 { return sign + oneDecimal(s / 60) + "m" }
    if s < 3600 { return sign + "\(Int((s / 60).rounded()))m" }
    return sign + oneDecimal(s / 3600) + "h"
}

func corpusPercent(_ share: Double?) -> String {
    guard let share, share.isFinite else { return "-" }
    return "\(Int((share * 100).rounded()))%"
}

private func oneDecimal(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
