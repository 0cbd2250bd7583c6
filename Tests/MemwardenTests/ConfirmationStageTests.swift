import MemwardenDetection
import MemwardenModel
import Testing

/// The confirmation stage on its own: samples in, leak events out.
struct ConfirmationStageTests {
    static let mib = 1_048_576.0

    /// Feeds one process's held memory, a sample every `step` seconds, to `end` seconds.
    static func run(
        _ stage: inout ConfirmationStage, limit: UInt64?, until end: Double, step: Double = 1,
        held: (Double) -> Double
    ) -> [LeakEvent] {
        var events: [LeakEvent] = []
        var t = 0.0
        while t <= end {
            let value = held(t)
            let nanoseconds = Int64(t * 1e9)
            stage.sample(
                .process(7), time: nanoseconds, held: UInt64(value),
                context: {
                    AssessmentContext(
                        timeNanoseconds: nanoseconds, scope: .process, pid: 7, comm: "app", cgroup: "/app", limit: limit,
                        usage: UInt64(value))
                }, into: &events)
            t += step
        }
        return events
    }

    @Test("a leak reaching its limit in two minutes (3 MiB/s) is suspected before it, with the truth in the interval")
    func urgentLeakBeforeItsLimit() throws {
        var stage = ConfirmationStage()
        let limit = 384 * Self.mib
        // 50 MiB at start, 3 MiB/s: the limit at 111 s
        let events = Self.run(&stage, limit: UInt64(limit), until: 110, step: 0.2) { 50 * Self.mib + 3 * Self.mib * $0 }
        let first = try #require(events.first { $0.kind == .suspected }, "\(events)")
        let truth = (limit - 50 * Self.mib) / (3 * Self.mib) - first.t
        #expect(first.t < 111 && truth > 10, "suspected at \(first.t)")
        #expect(first.reasons.contains("urgent_forecast") && first.reasons.contains("warmup_grace"))
        let interval = try #require(first.forecastInterval)
        #expect(interval.contains(truth), "\(interval) vs \(truth)")
        #expect(first.forecastModel == "linear")
    }

    @Test("a slow leak far from its limit waits for the patience window; a healthy plateau is never suspected")
    func patienceAndPlateau() throws {
        var stage = ConfirmationStage()
        // 1 MiB/min from 300 MiB under a 1 GiB limit: the limit after 12.3 h
        let leak = Self.run(&stage, limit: 1 << 30, until: 8 * 3600, step: 5) { 300 * Self.mib + Self.mib * $0 / 60 }
        let first = try #require(leak.first { $0.kind == .suspected })
        #expect(first.t >= ConfirmationSettings().patienceSeconds, "suspected at \(first.t) before the patience window")
        #expect(first.t < 8 * 3600)
        let truth = (724 * Self.mib - Self.mib * first.t / 60) / (Self.mib / 60)
        let forecast = try #require(first.secondsToLimit)
        #expect(abs(forecast - truth) <= 0.1 * truth, "forecast \(forecast), truth \(truth)")

        var healthy = ConfirmationStage()
        // a warm-up converging to a plateau with a 40-minute time constant
        let plateau = Self.run(&healthy, limit: 1 << 30, until: 8 * 3600, step: 5) {
            200 * Self.mib + 400 * Self.mib * (1 - exp(-$0 / 2400))
        }
        #expect(plateau.isEmpty, "\(plateau)")
    }

    @Test("a daily cycle is not a leak on its next rising half, once a cycle is in the history")
    func dailyCycleDoesNotReflag() {
        var stage = ConfirmationStage()
        let events = Self.run(&stage, limit: 1_400 * 1_048_576, until: 3 * 86_400, step: 30) {
            600 * Self.mib - 250 * Self.mib * cos(2 * .pi * $0 / 86_400)
        }
        let late = events.filter { $0.kind == .suspected && $0.t > 86_400 }
        #expect(late.isEmpty, "\(late)")
    }

    @Test("a batch job's next cycles climb back to where the first peaked near its limit: none is a leak")
    func batchCyclesDoNotReflag() {
        var stage = ConfirmationStage()
        // 150 MiB idle, 2.7 GiB after 8.4 min, freed in 23 s, every 30.7 min, under a 3.75 GiB limit
        let period = 1841.0, grow = 505.0, free = 23.0
        let events = Self.run(&stage, limit: 3_840 * 1_048_576, until: 4 * period, step: 1) { t in
            let phase = t.truncatingRemainder(dividingBy: period)
            let top = 2_740 * Self.mib, idle = 150 * Self.mib
            if phase < grow { return idle + (top - idle) * phase / grow }
            return idle + (top - idle) * max(0, 1 - (phase - grow) / free)
        }
        let later = events.filter { $0.kind == .suspected && $0.t > period }
        #expect(later.isEmpty, "\(later.map(\.t))")
    }

    @Test("a worker's urgency is its cgroup's: a worker growing while its cgroup climbs back to an earlier top is no leak")
    func workerInACgroupBelowItsEarlierTop() {
        var stage = ConfirmationStage()
        var events: [LeakEvent] = []
        let limit = UInt64(3_300 * Self.mib)
        // the cgroup reached 3.1 GiB with an earlier worker, fell back to 2.2 GiB when it exited;
        // a new worker (from t = 1200) grows 2 MiB/s and takes the cgroup back toward that top (3.08 GiB at the end)
        for step in 0...(1640 * 2) {
            let t = Double(step) / 2
            let worker = t >= 1200 ? 2 * Self.mib * (t - 1200) : nil
            let cgroup = t < 600 ? 2_200 * Self.mib + 1.5 * Self.mib * t : 2_200 * Self.mib + (worker ?? 0)
            let nanoseconds = Int64(t * 1e9)
            stage.sample(
                .cgroup(1), time: nanoseconds, held: UInt64(cgroup),
                context: {
                    AssessmentContext(
                        timeNanoseconds: nanoseconds, scope: .cgroup, pid: nil, comm: nil, cgroup: "/workers", limit: limit,
                        usage: UInt64(cgroup))
                }, into: &events)
            if let worker {
                stage.sample(
                    .process(9), time: nanoseconds, held: UInt64(20 * Self.mib + worker),
                    context: {
                        AssessmentContext(
                            timeNanoseconds: nanoseconds, scope: .process, pid: 9, comm: "php-fpm", cgroup: "/workers",
                            limit: limit, usage: UInt64(cgroup))
                    }, into: &events, cgroup: .cgroup(1))
            }
        }
        // the first 600 s were new highs (the cgroup's first rise may be suspected); what came back is not
        let later = events.filter { $0.kind == .suspected && $0.t >= 1200 }
        #expect(later.isEmpty, "\(later.map { ($0.t, $0.scope, $0.reasons) })")
    }

    @Test("a suspicion clears once growth stops, within the clear window of its rate")
    func clearsWhenGrowthStops() throws {
        var stage = ConfirmationStage()
        // 2 MiB/s for 200 s toward a limit it would meet at 230 s, then flat
        let events = Self.run(&stage, limit: 560 * 1_048_576, until: 1200, step: 0.5) {
            100 * Self.mib + 2 * Self.mib * min($0, 200)
        }
        let suspected = try #require(events.first { $0.kind == .suspected }, "\(events)")
        let cleared = try #require(events.first { $0.kind == .cleared }, "\(events)")
        #expect(cleared.reasons == ["growth_stopped"])
        // the window is at least twice the span growth was found at (at most 10 minutes here)
        #expect(cleared.t <= max(200, suspected.t) + 600 + 20, "cleared at \(cleared.t)")
    }

    @Test("targets past the cap evict the least recently sampled one, counted")
    func evictionIsBoundedAndCounted() {
        var stage = ConfirmationStage(maximumTargets: 10)
        var events: [LeakEvent] = []
        for pid in 0..<25 {
            stage.sample(
                .process(Int32(pid)), time: Int64(pid) * 1_000_000_000, held: 1 << 20,
                context: {
                    AssessmentContext(
                        timeNanoseconds: 0, scope: .process, pid: Int32(pid), comm: nil, cgroup: "/", limit: nil, usage: 0)
                }, into: &events)
        }
        #expect(stage.trackedTargets == 10)
        #expect(stage.evicted == 15)
        #expect(stage.historyBytes == 10 * GrowthHistory.bytesPerTarget)
        #expect(GrowthHistory.bytesPerTarget < 10 * 1024)
    }

    @Test("forecast models: a saturating rise levels off, an accelerating one is curved, a line is linear")
    func forecastModels() throws {
        func points(_ f: (Double) -> Double) -> [GrowthForecast.Point] {
            stride(from: 0.0, through: 3600, by: 60).map { GrowthForecast.Point(t: $0, y: f($0)) }
        }
        let saturating = points { 500 * Self.mib * (1 - exp(-$0 / 900)) }
        guard case .levellingOff(let asymptote) = GrowthForecast.make(points: saturating, ceiling: 2e9, now: 3600) else {
            Issue.record("a saturating rise was forecast")
            return
        }
        #expect(abs(asymptote - 500 * Self.mib) < 50 * Self.mib)

        let line = points { 100 * Self.mib + 1000 * $0 }
        guard case .forecast(let linear) = GrowthForecast.make(points: line, ceiling: 100 * Self.mib + 7_200_000, now: 3600)
        else {
            Issue.record("no forecast for a line")
            return
        }
        #expect(linear.model == .linear)
        #expect(abs(linear.seconds - 3600) < 36)
        #expect(linear.low <= 3600 && 3600 <= linear.high)

        let accelerating = points { 100 * Self.mib + 0.5 * $0 * $0 }
        guard case .forecast(let curved) = GrowthForecast.make(
            points: accelerating, ceiling: 100 * Self.mib + 0.5 * 7200 * 7200, now: 3600)
        else {
            Issue.record("no forecast for an accelerating rise")
            return
        }
        #expect(curved.model != .linear)
        #expect(abs(curved.seconds - 3600) < 360, "\(curved.seconds)")
    }
}

import Foundation
