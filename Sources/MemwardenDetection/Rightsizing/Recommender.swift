/// Leak-aware right-sizing (docs/recommendations.md): from a container's
/// usage history and its leak verdict, the figures VPA and KRR would give and
/// memwarden's own.
///
/// VPA and KRR size a container to what it used; a leaking container used
/// more every day, so their figures follow the leak up and the next OOM kill
/// only comes later. memwarden takes the leak's growth out first: the figure
/// is what the workload needs without the leak, and for a leaking container
/// it says when a limit is met at the current growth, so "raise the limit" is
/// seen for what it is.
public enum Recommender {
    /// Figures for one container, or for a workload's containers aggregated
    /// (VPA's per-container-name histogram over a workload's pods): each
    /// member's leak is taken out of its own history, then the daily peaks are
    /// the highest over all members. nil when no member has any usage.
    public static func recommend(
        _ members: [RecommendationMember], limit: Double?, settings: RecommendationSettings = RecommendationSettings()
    ) -> Recommendation? {
        let members = members.filter { !$0.history.isEmpty }
        guard let start = members.compactMap(\.history.start).min(),
            let end = members.compactMap(\.history.end).max()
        else { return nil }
        let day = settings.daySeconds

        var days: [Int: Recommendation.Day] = [:]
        var strongest: Recommendation.Trend?
        for member in members {
            let trend = Self.trend(member, settings: settings)
            if let trend, trend.bytesPerSecond > strongest?.bytesPerSecond ?? 0 { strongest = trend }
            var covered: [Int: Double] = [:]
            for bucket in member.history.buckets {
                let index = Int(((bucket.start - start) / day).rounded(.down))
                // the leak's growth since its onset, counted from the bucket's
                // start: where in the bucket the peak fell is unknown, and the
                // start takes out the least (a figure too high, never too low)
                let grown = trend.map { $0.bytesPerSecond * max(0, bucket.start - $0.onset) } ?? 0
                covered[index, default: 0] += bucket.seconds
                var entry =
                    days[index]
                    ?? Recommendation.Day(
                        index: index, start: start + Double(index) * day, coverage: 0, peak: bucket.peak,
                        floor: bucket.floor, detrendedPeak: bucket.peak - grown)
                entry.peak = max(entry.peak, bucket.peak)
                entry.floor = min(entry.floor, bucket.floor)
                entry.detrendedPeak = max(entry.detrendedPeak, bucket.peak - grown)
                days[index] = entry
            }
            // pods of one workload run side by side: a day is as covered as its best-covered member
            for (index, seconds) in covered {
                guard var entry = days[index] else { continue }
                entry.coverage = max(entry.coverage, min(1, seconds / day))
                days[index] = entry
            }
        }
        let ordered = days.values.sorted { $0.index < $1.index }
        let last = ordered[ordered.count - 1].index
        let vpaWindow = ordered.filter { $0.index > last - settings.vpaDays }.map(\.peak)
        let krrWindow = ordered.filter { $0.index > last - settings.krrDays }
        let grow = 1 + settings.margin
        // the highest detrended peak, not a percentile: an OOM kill comes at the
        // highest peak, and with the leak out of the peaks the highest no longer
        // runs away with the history's length; over KRR's window, so that a
        // workload that changed weeks ago is judged on what it is now
        let base = krrWindow.map(\.detrendedPeak).max()!
        let currentPeak = ordered[ordered.count - 1].peak
        var reach: [Recommendation.LimitReach] = []
        if let trend = strongest {
            // the workload's peak now: its peak without the leak plus all the
            // leak added since its onset; a limit is met when that reaches it
            let peakNow = base + trend.bytesPerSecond * max(0, end - trend.onset)
            func seconds(_ limit: Double) -> Double { max(0, (limit - peakNow) / trend.bytesPerSecond) }
            if let limit {
                reach.append(.init(kind: .current, limit: limit, seconds: seconds(limit)))
            }
            reach.append(.init(kind: .recommended, limit: base * grow, seconds: seconds(base * grow)))
            if let limit {
                reach.append(.init(kind: .doubled, limit: 2 * limit, seconds: seconds(2 * limit)))
            }
        }
        // linear between the closest ranks: VPA's own histogram has 5 % wide buckets, finer
        // than a week of peaks
        return Recommendation(
            historyStart: start, historySeconds: end - start, days: ordered,
            vpaStyle: (Quantiles.percentile(vpaWindow, settings.vpaPercentile) ?? 0) * grow,
            krrStyle: krrWindow.map(\.peak).max()! * grow, memwarden: base * grow, basePeak: base,
            currentPeak: currentPeak, trend: strongest, limit: limit, reach: reach, members: members.count)
    }

    /// The growth to take out of a member's history: none unless its verdict
    /// says it leaks, and none when the history says the growth is over.
    static func trend(_ member: RecommendationMember, settings: RecommendationSettings) -> Recommendation.Trend? {
        guard let leak = member.leak, leak.bytesPerSecond > 0 else { return nil }
        let history = member.history
        guard let start = history.start, let end = history.end else { return nil }
        let floors = dailyFloors(history, daySeconds: settings.daySeconds)
        let full = floors.filter(\.full)
        if full.count >= 3 {
            // a leak raises every day's floor by a day's growth, and a daily
            // cycle leaves the floors where they were: the floors' slope is
            // the leak's rate, where a verdict's rate, fitted over hours, may
            // have been measured on a cycle's rising half
            guard let hinge = hinge(full) else { return nil }
            let lowest = full.map(\.floor).min() ?? 0
            // floors that hardly rise contradict the verdict (a warm-up in its
            // grace, a cache at its bound): nothing to take out. The bound is
            // the confirmation stage's least growth (ConfirmationSettings).
            let rise = hinge.rate * max(0, full[full.count - 1].time - hinge.onset)
            guard rise >= max(settings.minimumRiseBytes, settings.minimumRiseShare * lowest) else { return nil }
            let onset = leak.onset.map { min(max($0, start), end) } ?? min(max(hinge.onset, start), end)
            return Recommendation.Trend(bytesPerSecond: hinge.rate, onset: onset, source: .dailyFloors)
        }
        // too short for daily floors: the verdict's rate stands unless the
        // last third of the history no longer grows at a quarter of it (the
        // confirmation stage's own clear rule): a warm-up that reached its
        // plateau is sized at the plateau
        let rate = leak.bytesPerSecond
        let recentStart = end - (end - start) / 3
        let recent = history.buckets.filter { $0.start >= recentStart }
        if recent.count >= 6,
            GrowthForecast.theilSen(recent.map { GrowthForecast.Point(t: $0.middle, y: $0.mean) }) < 0.25 * rate
        {
            return nil
        }
        let onset = leak.onset.map { min(max($0, start), end) } ?? estimateOnset(floors, rate: rate, start: start, end: end)
        return Recommendation.Trend(bytesPerSecond: rate, onset: onset, source: .verdict)
    }

    struct DailyFloor {
        /// When the day's floor was seen.
        var time: Double
        var floor: Double
        var full: Bool
    }

    static func dailyFloors(_ history: UsageHistory, daySeconds: Double) -> [DailyFloor] {
        guard let start = history.start else { return [] }
        var floors: [Int: (floor: DailyFloor, seconds: Double)] = [:]
        for bucket in history.buckets {
            let index = Int(((bucket.start - start) / daySeconds).rounded(.down))
            var entry = floors[index] ?? (DailyFloor(time: bucket.middle, floor: bucket.floor, full: false), 0)
            if bucket.floor < entry.floor.floor { entry.floor = DailyFloor(time: bucket.middle, floor: bucket.floor, full: false) }
            entry.seconds += bucket.seconds
            floors[index] = entry
        }
        return floors.sorted { $0.key < $1.key }.map {
            var floor = $0.value.floor
            // a day 90 % covered still has its trough: a trace's first and last
            // hours are where days are cut short
            floor.full = $0.value.seconds >= 0.9 * daySeconds
            return floor
        }
    }

    /// The daily floors as flat, then rising: for every day the rise may
    /// have started on, the floors before it at their median and those from
    /// it on along their Theil–Sen line; the split whose floors sit closest
    /// (least absolute deviation) wins. One line through all the floors would
    /// be dragged flat by the days before a leak began, and would then leave
    /// most of the leak in the figure. Theil–Sen: a day with an outage or a
    /// warm-up does not tilt the line. The onset is where the line leaves
    /// the flat part, or the first day's floor when there is none.
    static func hinge(_ days: [DailyFloor]) -> (rate: Double, onset: Double)? {
        guard days.count >= 3 else { return nil }
        var best: (cost: Double, rate: Double, onset: Double)?
        for k in 0...(days.count - 2) {
            let post = days[k...]
            let rate = GrowthForecast.theilSen(post.map { GrowthForecast.Point(t: $0.time, y: $0.floor) })
            let intercept = Quantiles.median(post.map { $0.floor - rate * $0.time }) ?? 0
            var cost = post.reduce(0) { $0 + abs($1.floor - (intercept + rate * $1.time)) }
            var onset = days[0].time
            if k > 0 {
                let pre = days[..<k]
                let level = Quantiles.median(pre.map(\.floor)) ?? 0
                cost += pre.reduce(0) { $0 + abs($1.floor - level) }
                let leaves = rate > 0 ? (level - intercept) / rate : post[k].time
                onset = min(max(leaves, pre[k - 1].time), post[k].time)
            }
            if cost < best?.cost ?? .infinity { best = (cost, rate, onset) }
        }
        return best.flatMap { $0.rate > 0 ? ($0.rate, $0.onset) : nil }
    }

    /// When growth at `rate` began, from the floors: a leak that began at
    /// `onset` has raised a later day's floor above the lowest one by `rate`
    /// × the time since. The median over the days that rose; the history's
    /// start when none did or the estimate falls before it.
    static func estimateOnset(_ floors: [DailyFloor], rate: Double, start: Double, end: Double) -> Double {
        // full days when there are two or more: a cut-short first day may end
        // before its trough, or hold a warm-up's start far below any trough
        let days = floors.filter(\.full).count >= 2 ? floors.filter(\.full) : floors
        guard let lowest = days.map(\.floor).min() else { return start }
        let candidates = days.filter { $0.floor > lowest }.map { $0.time - ($0.floor - lowest) / rate }.sorted()
        guard !candidates.isEmpty else { return start }
        return min(max(candidates[candidates.count / 2], start), end)
    }
}
