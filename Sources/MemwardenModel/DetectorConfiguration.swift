import CMemwarden

/// The detectors' thresholds: `mw_det_config` from ebpf/detectors.h, the same
/// struct the kernel program gets at load time.
public struct DetectorConfiguration: Sendable {
    public var raw: mw_det_config

    /// The defaults of `MW_DET_CONFIG_DEFAULT` (docs/detectors.md says why).
    public init() {
        raw = mw_det_config()
        mw_det_config_default(&raw)
    }

    public init(raw: mw_det_config) {
        self.raw = raw
    }

    /// Named sets of thresholds.
    public enum Profile: String, Sendable, CaseIterable {
        /// The defaults: a target must be 2 minutes old and its trend span a
        /// minute before the trend may fire, so a warm-up that levels off within
        /// about a minute is never called a leak.
        case standard
        /// Time compressed ~4x, for the leak simulators (`leaksim`), whose
        /// scenarios last under a minute: trend after 30 s over 20 s and 5
        /// points, VSZ divergence over 30 s. Warm-ups longer than ~15 s at a
        /// rate that counts are then flagged (and cleared when they level off).
        case accelerated
    }

    public init(profile: Profile) {
        self.init()
        if profile == .accelerated {
            raw.trend_min_age_ms = 30_000
            raw.trend_min_span_ms = 20_000
            raw.trend_min_points = 5
            raw.vsz_min_span_ms = 30_000
        }
    }

    /// A process (or cgroup) gets a line when its RSS moved this far...
    public var stepBytes: UInt64 {
        get { raw.step_bytes }
        set { raw.step_bytes = newValue }
    }

    /// ...or at its next memory event after this long.
    public var heartbeatMilliseconds: UInt64 {
        get { raw.heartbeat_ms }
        set { raw.heartbeat_ms = newValue }
    }

    /// Checks every field the C code divides by or bounds a loop with.
    public func validate() throws(DetectorConfigurationError) {
        let code = mw_det_config_check(withUnsafePointer(to: raw) { $0 })
        guard code == 0 else { throw DetectorConfigurationError(code: code) }
    }
}

public struct DetectorConfigurationError: Error, CustomStringConvertible, Sendable {
    /// `enum mw_det_config_error`.
    public var code: Int32

    package init(code: Int32) {
        self.code = code
    }

    public var description: String {
        switch UInt32(code) {
        case MW_DET_CFG_BUCKET_MS.rawValue: "bucket_ms must be more than 0"
        case MW_DET_CFG_MAX_BUCKET_MS.rawValue: "max_bucket_ms must be at least bucket_ms"
        case MW_DET_CFG_FLOOR_BUCKETS.rawValue: "floor_buckets must be 1 to \(MW_DET_FLOOR_MAX)"
        case MW_DET_CFG_SCORES.rawValue: "stay_score must not exceed fire_score, nor fire_score 1000"
        case MW_DET_CFG_PERMILLE.rawValue: "an R² or share threshold is above 1000 permille"
        case MW_DET_CFG_FAST_SPAN.rawValue: "fast_span_ms must cover 3 to \(MW_DET_SHORT_N - 1) buckets"
        case MW_DET_CFG_ZERO.rawValue: "a threshold that must not be 0 is 0"
        default: "invalid detector configuration (code \(code))"
        }
    }
}
