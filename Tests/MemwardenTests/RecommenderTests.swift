import Foundation
import MemwardenDetection
import MemwardenModel
import Testing

/// Leak-aware right-sizing on generated histories (docs/recommendations.md):
/// VPA's and KRR's figures follow a leak up as the history grows, memwarden's
/// stays where the workload is without it.
struct RecommenderTests {
    static let hour = 3600.0
    static let day = 86_400.0

    /// A history sampled every minute in 10-minute buckets (the confirmation
    /// stage's coarse width), with deterministic noise on every sample.
    static func history(
        days: Double, noise: Double = 3 * mib, seed: UInt64 = 7, _ shape: (Double) -> Double
    ) -> UsageHistory {
        var random = Noise(seed: seed)
        var builder = UsageHistoryBuilder(bucketSeconds: 600)
        var t = 0.0
        while t < days * day {
            builder.add(time: t, bytes: max(0, shape(t) + random.uniform(noise)))
            t += 60
        }
        return builder.history
    }

    /// A service with a daily cycle: `base`, up to `base + amplitude` at 15:00, down to `base` at 03:00.
    static func cycle(_ t: Double, base: Double, amplitude: Double) -> Double {
        base + amplitude * (1 - cos(2 * .pi * (t - 3 * hour) / day)) / 2
    }

    static func recommend(_ history: UsageHistory, leak: LeakTrend? = nil, limit: Double? = nil) throws -> Recommendation {
        try #require(Recommender.recommend([RecommendationMember(history: history, leak: leak)], limit: limit))
    }

    static let leakRate = 20 * mib / hour

    /// A daily cycle with a leak of 20 MiB/h under it (480 MiB a day).
    static func leakingService(_ t: Double) -> Double {
        cycle(t, base: 400 * mib, amplitude: 150 * mib) + leakRate * t
    }

    @Test("a leaking workload: VPA's and KRR's figures grow with the history, memwarden's stays flat")
    func leakingFiguresGrowWithTheHistory() throws {
        var figures: [(days: Int, r: Recommendation)] = []
        for days in [8, 11, 14] {
            // the verdict's rate, fitted over hours of a cycle's rising half, is off: the floors correct it
            let history = Self.history(days: Double(days), Self.leakingService)
            figures.append((days, try Self.recommend(history, leak: LeakTrend(bytesPerSecond: 1.5 * Self.leakRate))))
        }
        for (shorter, longer) in zip(figures, figures.dropFirst()) {
            let extra = Double(longer.days - shorter.days) * Self.day * Self.leakRate
            // every day of the window is a day more of the leak: each figure moves by most of it
            #expect(longer.r.vpaStyle - shorter.r.vpaStyle > 0.8 * extra * 1.15, "\(shorter.days) → \(longer.days) days")
            #expect(longer.r.krrStyle - shorter.r.krrStyle > 0.8 * extra * 1.15, "\(shorter.days) → \(longer.days) days")
            #expect(abs(longer.r.memwarden / shorter.r.memwarden - 1) < 0.03, "\(shorter.days) → \(longer.days) days")
        }
        for (days, r) in figures {
            #expect(r.leaking && r.trend?.source == .dailyFloors)
            #expect(abs(r.trend!.bytesPerSecond / Self.leakRate - 1) < 0.05, "\(days) days: rate \(r.trend!.bytesPerSecond)")
            // the cycle's own peak is covered, and memwarden asks for far less than the leak has reached
            #expect(r.memwarden >= 550 * mib, "\(days) days: \(r.memwarden / mib) MiB")
            #expect(r.memwarden < 0.5 * r.krrStyle, "\(days) days: \(r.memwarden / mib) vs \(r.krrStyle / mib) MiB")
            #expect(r.days.count == days)
        }
    }

    @Test("a daily cycle is covered at its peak", arguments: [2.0, 8.0, 13.5])
    func dailyCycleCoveredAtItsPeak(days: Double) throws {
        let history = Self.history(days: days) { Self.cycle($0, base: 300 * mib, amplitude: 500 * mib) }
        let r = try Self.recommend(history)
        #expect(!r.leaking)
        // the true daily peak is 800 MiB; the noise adds at most 3 MiB
        #expect(r.basePeak >= 797 * mib && r.memwarden >= 800 * mib, "\(r.memwarden / mib) MiB")
        #expect(abs(r.memwarden / (803 * mib * 1.15) - 1) < 0.01, "\(r.memwarden / mib) MiB")
        // between the trough at 03:00 and the peak at 15:00 of every day
        for day in r.days where day.coverage > 0.9 {
            #expect(day.peak >= 795 * mib && day.floor <= 305 * mib, "day \(day.index): \(day.peak / mib) MiB")
        }
    }

    /// A warm-up (150 MiB to a plateau of 700 MiB over two hours), judged
    /// leaking by a verdict from its first hours: the history shows the
    /// growth ended, and the figure is the plateau's.
    @Test("a warm-up uses its plateau", arguments: [0.5, 1.5, 8.0])
    func warmUpUsesThePlateau(days: Double) throws {
        let history = Self.history(days: days) { t in 150 * mib + 550 * mib * min(1, t / (2 * Self.hour)) }
        let r = try Self.recommend(history, leak: LeakTrend(bytesPerSecond: 550 * mib / (2 * Self.hour)))
        #expect(!r.leaking, "trend \(String(describing: r.trend))")
        #expect(abs(r.memwarden / (700 * mib * 1.15) - 1) < 0.01, "\(r.memwarden / mib) MiB")
        #expect(r.reach.isEmpty)
    }

    @Test("a healthy flat workload gets its peak plus the margin, as KRR")
    func healthyFlatWorkload() throws {
        let history = Self.history(days: 10, noise: 8 * mib) { _ in 512 * mib }
        let r = try Self.recommend(history, limit: 1024 * mib)
        #expect(!r.leaking && r.reach.isEmpty && r.sentence == nil)
        let peak = try #require(r.days.map(\.peak).max())
        #expect(peak <= 520 * mib && peak >= 500 * mib)
        #expect(abs(r.memwarden - peak * 1.15) < 1)
        #expect(abs(r.krrStyle - r.memwarden) < 1)
        #expect(r.vpaStyle <= r.krrStyle && r.vpaStyle >= 0.98 * r.krrStyle)
        #expect(abs(r.historySeconds - 10 * Self.day) <= 600)
    }

    /// 200 MiB growing 10 MiB/h for four days under a 2 GiB limit: the limit
    /// is met when the level reaches it, (2048 − 1160) MiB / 10 MiB/h from the end.
    @Test("the leak sentence: when a limit is reached at the current growth")
    func leakSentenceForALinearLeak() throws {
        let rate = 10 * mib / Self.hour
        let days = 4.0
        let history = Self.history(days: days, noise: 1 * mib) { 200 * mib + rate * $0 }
        let limit = 2048 * mib
        let r = try Self.recommend(history, leak: LeakTrend(bytesPerSecond: 1.2 * rate), limit: limit)
        let end = try #require(history.end)
        let levelNow = 200 * mib + rate * end
        let current = try #require(r.reach.first { $0.kind == .current })
        let expected = (limit - levelNow) / rate
        #expect(abs(current.seconds / expected - 1) < 0.01, "\(current.seconds / Self.hour) h, expected \(expected / Self.hour) h")
        let doubled = try #require(r.reach.first { $0.kind == .doubled })
        #expect(abs(doubled.seconds - current.seconds - limit / rate) < 0.01 * limit / rate)
        // the recommended limit, sized without the leak, is already behind the leak's level
        let recommended = try #require(r.reach.first { $0.kind == .recommended })
        #expect(recommended.limit < levelNow && recommended.seconds == 0)
        #expect(abs(r.basePeak / (200 * mib) - 1) < 0.03, "\(r.basePeak / mib) MiB")
        let sentence = try #require(r.sentence)
        #expect(sentence.hasPrefix("raising the limit only moves the OOM: at the current growth (10 MiB/h)"), "\(sentence)")
        #expect(sentence.contains("a limit of 2 GiB (current) is reached in 3.7 d"), "\(sentence)")
    }

    @Test("a leak that began mid-history: the days before it are the workload's size")
    func leakOnsetMidHistory() throws {
        let onset = 5 * Self.day
        let history = Self.history(days: 12) { t in
            Self.cycle(t, base: 300 * mib, amplitude: 100 * mib) + Self.leakRate * max(0, t - onset)
        }
        let r = try Self.recommend(history, leak: LeakTrend(bytesPerSecond: Self.leakRate))
        #expect(r.leaking)
        let trend = try #require(r.trend)
        #expect(abs(trend.onset - onset) < Self.day, "onset \(trend.onset / Self.day) d")
        #expect(r.memwarden >= 400 * mib && r.memwarden < 1.1 * 400 * mib * 1.15, "\(r.memwarden / mib) MiB")
    }

    @Test("pods of one workload: each pod's leak is taken out of its own history, the peaks are the highest of all")
    func workloadAggregation() throws {
        let healthy = Self.history(days: 9, seed: 1) { Self.cycle($0, base: 300 * mib, amplitude: 200 * mib) }
        let leaking = Self.history(days: 9, seed: 2) { Self.cycle($0, base: 300 * mib, amplitude: 200 * mib) + Self.leakRate * $0 }
        let r = try #require(
            Recommender.recommend(
                [RecommendationMember(history: healthy), RecommendationMember(history: leaking, leak: LeakTrend(bytesPerSecond: Self.leakRate))],
                limit: nil))
        #expect(r.members == 2 && r.leaking && r.days.count == 9)
        #expect(r.memwarden >= 500 * mib && r.memwarden < 1.1 * 500 * mib * 1.15, "\(r.memwarden / mib) MiB")
        #expect(r.krrStyle > 2 * r.memwarden)
    }

    @Test("the JSON form carries every figure and the days")
    func jsonForm() throws {
        let history = Self.history(days: 3, noise: 1 * mib) { 200 * mib + 5 * mib / Self.hour * $0 }
        let r = try Self.recommend(history, leak: LeakTrend(bytesPerSecond: 5 * mib / Self.hour), limit: 1024 * mib)
        var line = JSONLine()
        r.add(to: &line)
        let object = try #require(JSONSerialization.jsonObject(with: Data(line.finish().utf8)) as? [String: Any])
        #expect((object["memwarden_bytes"] as? NSNumber)?.doubleValue == (r.memwarden.rounded(.up)))
        #expect((object["daily_peaks"] as? [Any])?.count == 3)
        #expect(object["leaking"] as? Bool == true)
        #expect((object["limit_reached_in"] as? [Any])?.count == 3)
        #expect((object["note"] as? String)?.hasPrefix("raising the limit only moves the OOM") == true)
    }

    /// The live path: the confirmation stage's own history of a cgroup it
    /// suspects (30 hours of a 30 MiB/h leak, a sample every 10 s), its rings
    /// as buckets, its suspicion as the trend.
    @Test("the confirmation stage's history and suspicion give the live figures")
    func liveHistoryAndSuspicion() throws {
        var stage = ConfirmationStage()
        var events: [LeakEvent] = []
        var random = Noise(seed: 3)
        let rate = 30 * mib / Self.hour
        var t = 0.0
        while t <= 30 * Self.hour {
            let held = 300 * mib + rate * t + random.uniform(1 * mib)
            let time = Int64(t * 1e9)
            stage.sample(
                .cgroup(42), time: time, held: UInt64(held),
                context: {
                    AssessmentContext(
                        timeNanoseconds: time, scope: .cgroup, pid: nil, comm: nil, cgroup: "/test.slice/leak.service",
                        limit: nil, usage: UInt64(held))
                }, into: &events)
            t += 10
        }
        let watched = try #require(stage.cgroupHistories().first { $0.id == 42 })
        let leak = try #require(watched.leak, "\(events.summary)")
        #expect(abs(leak.bytesPerSecond / rate - 1) < 0.1)
        let history = UsageHistory(watched.history)
        // the coarse ring holds 48 hours: all 30 are there
        #expect(history.seconds > 29.5 * Self.hour)
        // each span told once, and the newest completed fine bucket (the last sample's at 30 h
        // opened the next) is the history's end: nothing recent is lost between the rings
        #expect(history.end == 30 * Self.hour)
        for (a, b) in zip(history.buckets, history.buckets.dropFirst()) {
            #expect(a.end == b.start, "a gap or an overlap between \(a) and \(b)")
        }
        let r = try #require(Recommender.recommend([RecommendationMember(history: history, leak: leak)], limit: 2 * gib))
        #expect(r.leaking && r.trend?.source == .verdict)
        #expect(r.basePeak >= 295 * mib && r.basePeak < 340 * mib, "\(r.basePeak / mib) MiB")
        #expect(r.krrStyle > 1.15 * 1150 * mib)
        let current = try #require(r.reach.first { $0.kind == .current })
        let expected = (2 * gib - (300 * mib + rate * 30 * Self.hour)) / rate
        #expect(abs(current.seconds - expected) < 0.05 * expected, "\(current.seconds / Self.hour) h, expected \(expected / Self.hour) h")
    }

    @Test(
        "a workload from its pods' labels", arguments: [
            (["pod-template-hash": "7d9f8c6b5"], "shop-7d9f8c6b5-x2k4q", "prod/shop/api"),
            (["statefulset.kubernetes.io/pod-name": "db-2", "controller-revision-hash": "db-5c7"], "db-2", "prod/db/api"),
            (["controller-revision-hash": "6b8d"], "agent-k9z2p", "prod/agent/api"),
            (["job-name": "nightly-28812"], "nightly-28812-abcde", "prod/nightly-28812/api"),
            (["app": "bare"], "bare", nil),
        ] as [([String: String], String, String?)])
    func workloadKey(labels: [String: String], name: String, key: String?) {
        let pod = PodMetadata(name: name, namespace: "prod", uid: "u", labels: labels, container: "api")
        #expect(Workload.key(pod) == key)
    }
}
