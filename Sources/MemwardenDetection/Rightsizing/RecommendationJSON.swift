import MemwardenModel

extension Recommendation {
    /// The recommendation's fields of one JSON object (docs/recommendations.md);
    /// the caller adds the target's identity first, so the CLI's `--json` and
    /// /api/v1/recommendations print the same object.
    public func add(to line: inout JSONLine) {
        line.add("members", members)
        line.add("history_seconds", historySeconds, decimals: 0)
        line.add("vpa_style_bytes", Self.bytes(vpaStyle))
        line.add("krr_style_bytes", Self.bytes(krrStyle))
        line.add("memwarden_bytes", Self.bytes(memwarden))
        line.add("base_peak_bytes", Self.bytes(basePeak))
        line.add("current_peak_bytes", Self.bytes(currentPeak))
        line.add("leaking", leaking)
        if let trend {
            var object = JSONLine()
            object.add("bytes_per_second", trend.bytesPerSecond, decimals: 1)
            object.add("onset_t", trend.onset, decimals: 0)
            object.add("source", trend.source.rawValue)
            line.addRaw("trend", object.finish())
        } else {
            line.addNull("trend")
        }
        line.add("limit_bytes", limit.map(Self.bytes))
        let reached = reach.map { reach in
            var object = JSONLine()
            object.add("kind", reach.kind.rawValue)
            object.add("limit_bytes", Self.bytes(reach.limit))
            object.add("seconds", reach.seconds, decimals: 0)
            return object.finish()
        }
        line.addRaw("limit_reached_in", "[" + reached.joined(separator: ",") + "]")
        line.add("note", sentence)
        let dailies = days.map { day in
            var object = JSONLine()
            object.add("day", day.index)
            object.add("start_t", day.start, decimals: 0)
            object.add("coverage", day.coverage, decimals: 3)
            object.add("peak_bytes", Self.bytes(day.peak))
            object.add("floor_bytes", Self.bytes(day.floor))
            object.add("detrended_peak_bytes", Self.bytes(day.detrendedPeak))
            return object.finish()
        }
        line.addRaw("daily_peaks", "[" + dailies.joined(separator: ",") + "]")
    }

    /// For a leaking target, what raising its limit would do, in words.
    public var sentence: String? {
        guard let trend else { return nil }
        let rate = Self.bytesText(trend.bytesPerSecond * 3600) + "/h"
        var parts: [String] = []
        for reach in reach {
            let when = reach.seconds > 0 ? "in " + Self.durationText(reach.seconds) : "already"
            parts.append("a limit of \(Self.bytesText(reach.limit)) (\(reach.kind.rawValue)) is reached \(when)")
        }
        return "raising the limit only moves the OOM: at the current growth (\(rate)) " + parts.joined(separator: ", ")
    }

    /// Whole bytes, rounded up: a figure is a floor to size a limit at.
    static func bytes(_ value: Double) -> UInt64 {
        value <= 0 ? 0 : UInt64(min(value.rounded(.up), 1.8e19))
    }

    public static func bytesText(_ value: Double) -> String {
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where abs(value) >= Double(size) {
            return JSONLine.format(value / Double(size), decimals: 1) + " " + unit
        }
        return JSONLine.format(value, decimals: 0) + " B"
    }

    public static func durationText(_ seconds: Double) -> String {
        if seconds < 120 { return JSONLine.format(seconds, decimals: 0) + " s" }
        if seconds < 7200 { return JSONLine.format(seconds / 60, decimals: 0) + " min" }
        if seconds < 172_800 { return JSONLine.format(seconds / 3600, decimals: 1) + " h" }
        return JSONLine.format(seconds / 86_400, decimals: 1) + " d"
    }
}

/// A recommendation with whose it is: the CLI's and the API's rows.
public struct RecommendedTarget: Sendable {
    public var identity: TargetIdentity
    /// "namespace/workload/container" when the figures were aggregated over
    /// a workload's pods (`identity` is then one of them).
    public var workload: String?
    public var recommendation: Recommendation

    public init(identity: TargetIdentity, workload: String? = nil, recommendation: Recommendation) {
        self.identity = identity
        self.workload = workload
        self.recommendation = recommendation
    }

    public var json: String {
        var line = JSONLine()
        line.addIdentity(identity)
        if let workload { line.add("workload", workload) }
        recommendation.add(to: &line)
        return line.finish()
    }

    /// The document `memwarden recommend --json` prints and
    /// /api/v1/recommendations serves: the rows, leaking targets first, and
    /// the longest history behind them, since VPA's figure wants 8 days
    /// and KRR's 14 and a live agent holds 48 hours (`history_seconds`).
    public static func document(_ targets: [RecommendedTarget], settings: RecommendationSettings = RecommendationSettings())
        -> String
    {
        let sorted = targets.sorted {
            ($0.recommendation.leaking ? 0 : 1, $0.workload ?? $0.identity.cgroup)
                < ($1.recommendation.leaking ? 0 : 1, $1.workload ?? $1.identity.cgroup)
        }
        let longest = targets.map(\.recommendation.historySeconds).max() ?? 0
        var line = JSONLine()
        line.add("count", sorted.count)
        line.add("history_seconds", longest, decimals: 0)
        line.add("vpa_history_seconds", Double(settings.vpaDays) * settings.daySeconds, decimals: 0)
        line.add("krr_history_seconds", Double(settings.krrDays) * settings.daySeconds, decimals: 0)
        line.addRaw("recommendations", "[" + sorted.map(\.json).joined(separator: ",") + "]")
        return line.finish()
    }
}
