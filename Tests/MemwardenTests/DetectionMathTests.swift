import CMemwarden
import MemwardenDetection
import MemwardenModel
import Testing

/// The C detector code through its public API, as the kernel calls it.
struct DetectionMathTests {
    private final class Target {
        let state = UnsafeMutablePointer<mw_det_state>.allocate(capacity: 1)
        var config = DetectorConfiguration().raw

        init() { mw_det_reset(state) }
        deinit { state.deallocate() }

        @discardableResult
        func feed(_ tMs: UInt64, anon: UInt64, file: UInt64 = 0, shmem: UInt64 = 0, swap: UInt64 = 0, vsz: UInt64 = 0)
            -> (changed: Bool, verdict: DetectorVerdict)
        {
            var sample = mw_det_sample(t_ms: tMs, anon: anon, file: file, shmem: shmem, swap: swap, vsz: vsz)
            var verdict = mw_det_verdict()
            let changed = mw_det_update(state, &config, &sample, &verdict) != 0
            return (changed, DetectorVerdict(raw: verdict))
        }
    }

    static let mebibyte: UInt64 = 1 << 20

    /// (bytes/s, ms between samples): 1 KiB/s a sample each heartbeat, 1 MiB/min, 1 MiB/s, shrinking.
    static let slopes: [(Double, Double)] = [
        (1024, 10_000), (1_048_576.0 / 60, 10_000), (1_048_576, 1_000), (-104_857.6, 1_000),
    ]

    @Test(arguments: slopes)
    func fitRecoversSlopeAndAPerfectR2(bytesPerSecond: Double, intervalMs: Double) {
        let target = Target()
        var verdict = target.feed(0, anon: 400 * Self.mebibyte).verdict
        let base = Double(400 * Self.mebibyte)
        var t = intervalMs
        while t <= 3_600_000 {
            let anon = UInt64(base + bytesPerSecond * t / 1000)
            verdict = target.feed(UInt64(t), anon: anon).verdict
            t += intervalMs
        }
        let slope = Double(verdict.floorSlopeBytesPerSecond)
        #expect(abs(slope - bytesPerSecond) <= max(0.02 * abs(bytesPerSecond), 64), "floor slope \(slope)")
        #expect(abs(Double(verdict.levelSlopeBytesPerSecond) - bytesPerSecond) <= max(0.02 * abs(bytesPerSecond), 64))
        #expect(verdict.floorR2 >= 0.99)
    }

    @Test func noiseAloneHasNoSlopeAndALowR2() {
        let target = Target()
        var noise = Noise(seed: 7)
        var verdict = target.feed(0, anon: 300 * Self.mebibyte).verdict
        for second in 1...3600 {
            let anon = UInt64(Double(300 * Self.mebibyte) + noise.uniform(8 * mib))
            verdict = target.feed(UInt64(second) * 1000, anon: anon).verdict
        }
        #expect(abs(verdict.floorSlopeBytesPerSecond) < 2048, "slope \(verdict.floorSlopeBytesPerSecond)")
        #expect(verdict.floorR2 < 0.5, "R² \(verdict.floorR2)")
        #expect(verdict.fired.isEmpty)
    }

    /// The kernel feeds absolute monotonic milliseconds, replay feeds trace
    /// milliseconds from 0: only differences may matter.
    @Test func verdictsDependOnlyOnTimeDifferences() {
        let replay = Target()
        let kernel = Target()
        let origin: UInt64 = 1_234_567_890_123
        var noise = Noise(seed: 3)
        for i in 0..<20_000 {
            let tMs = UInt64(i) * 137
            let anon = UInt64(Double(200 * Self.mebibyte) + Double(i) * 3000 + noise.uniform(2 * mib))
            let vsz = anon * 3
            let a = replay.feed(tMs, anon: anon, file: 10 * Self.mebibyte, vsz: vsz)
            let b = kernel.feed(origin + tMs, anon: anon, file: 10 * Self.mebibyte, vsz: vsz)
            #expect(a.changed == b.changed)
            let same = withUnsafeBytes(of: a.verdict.raw) { x in withUnsafeBytes(of: b.verdict.raw) { y in x.elementsEqual(y) } }
            if !same {
                Issue.record("verdicts differ at sample \(i)")
                return
            }
        }
    }

    @Test func changesAreReportedOnlyWhenTheVerdictChanges() {
        let target = Target()
        var changes = 0
        var samples = 0
        for second in 0..<1800 {
            let anon = 100 * Self.mebibyte + UInt64(second) * Self.mebibyte
            if target.feed(UInt64(second) * 1000, anon: anon).changed { changes += 1 }
            samples += 1
        }
        #expect(changes >= 1, "a 1 MiB/s leak changes the verdict")
        #expect(changes * 20 < samples, "\(changes) changes in \(samples) samples")
    }

    @Test func stateFitsAMapValue() {
        // it lives in an LRU map value per process (and per cgroup): keep it small
        #expect(MemoryLayout<mw_det_state>.size <= 1536)
        // the verdict goes into ring-buffer records: no implicit padding to leak
        #expect(MemoryLayout<mw_det_verdict>.size == MemoryLayout<mw_det_verdict>.stride)
        #expect(MemoryLayout<mw_det_verdict>.size == 144)
    }

    @Test func aggregateRunsOnAStepOrAHeartbeat() {
        var config = DetectorConfiguration().raw
        var aggregate = mw_agg()
        var a = mw_det_sample(t_ms: 0, anon: 100 * Self.mebibyte, file: 0, shmem: 0, swap: 0, vsz: 0)
        var b = mw_det_sample(t_ms: 0, anon: 50 * Self.mebibyte, file: 10 * Self.mebibyte, shmem: 0, swap: 0, vsz: 0)
        mw_agg_move(&aggregate, nil, &a)
        mw_agg_move(&aggregate, nil, &b)
        #expect(aggregate.members == 2)
        #expect(mw_agg_due(&aggregate, &config, 1000) != 0, "the first time is due")
        #expect(mw_agg_due(&aggregate, &config, 2000) == 0)
        var grown = a
        grown.anon += Self.mebibyte / 2
        mw_agg_move(&aggregate, &a, &grown)
        #expect(mw_agg_due(&aggregate, &config, 3000) == 0, "half a step is not enough")
        var more = grown
        more.anon += Self.mebibyte / 2
        mw_agg_move(&aggregate, &grown, &more)
        #expect(mw_agg_due(&aggregate, &config, 4000) != 0, "a whole step since the last run")
        #expect(mw_agg_due(&aggregate, &config, 13_999) == 0)
        #expect(mw_agg_due(&aggregate, &config, 14_000) != 0, "the heartbeat")
        mw_agg_move(&aggregate, &b, nil)
        #expect(aggregate.members == 1)
        var sample = mw_det_sample()
        mw_agg_sample(&aggregate, 15_000, &sample)
        #expect(sample.anon == 101 * Self.mebibyte && sample.file == 0 && sample.vsz == 0 && sample.t_ms == 15_000)
        // a member's old counters taken out before its new ones go in: never below 0
        mw_agg_move(&aggregate, &b, nil)
        mw_agg_sample(&aggregate, 16_000, &sample)
        #expect(sample.file == 0)
    }

    @Test func configurationIsChecked() {
        #expect(throws: Never.self) { try DetectorConfiguration().validate() }
        var bad = DetectorConfiguration()
        bad.raw.floor_buckets = 0
        #expect(throws: DetectorConfigurationError.self) { try bad.validate() }
        do {
            try bad.validate()
        } catch {
            #expect(error.description == "floor_buckets must be 1 to 8")
        }
        bad = DetectorConfiguration()
        bad.raw.fast_span_ms = 60_000
        #expect(throws: DetectorConfigurationError.self) { try bad.validate() }
        bad = DetectorConfiguration()
        bad.raw.stay_score = 900
        #expect(throws: DetectorConfigurationError.self) { try bad.validate() }
    }
}
