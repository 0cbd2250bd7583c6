import MemwardenModel

/// The confirmation stage's thresholds (docs/detectors.md explains each).
/// A policy rule's `detectors` section can change them per target.
public struct ConfirmationSettings: Sendable, Hashable {
    /// A rise must beat the larger of these to count: noise and coalescing
    /// (1 MiB steps) can fake less.
    public var toleranceBytes: Double = 1_048_576
    public var toleranceShare: Double = 0.005
    /// The floor must grow by the larger of these over the window.
    public var minimumGrowthBytes: Double = 4 * 1_048_576
    public var minimumGrowthShare: Double = 0.02
    /// Each block's rise must be at least this share of the previous one's.
    public var steadiness: Double = 0.6
    /// Growth must have lasted this long (3 × the span at which it holds)
    /// before a verdict that the forecast does not make urgent.
    public var patienceSeconds: Double = 3 * 3_600
    /// Without urgency, only a target this old can be suspected (its warm-up grace).
    public var graceSeconds: Double = 30 * 60
    /// Without urgency, the limit must be at most this far at the forecast
    /// (no limit known: no such bound)...
    public var horizonSeconds: Double = 12 * 3_600
    /// ...and at most this many times as far as the target is old: a daily
    /// cycle's first rising half looks like a leak for hours, and ends.
    public var horizonPerAge: Double = 1
    /// Urgent: the forecast reaches the limit within this share of the time
    /// the growth has already lasted. Flagged however young the target.
    public var urgency: Double = 0.5
    /// The shortest growth an urgent verdict may rest on: a minute, which a
    /// step (a jump of up to 20 s) cannot fake at the growth test's spans.
    public var minimumUrgentSeconds: Double = 60
    /// The kernel's fast path (≥ 10 MiB/s) is believed when the growth goes
    /// on for this long after it fired, at half its rate or more, over the
    /// second half of this wait too (a step that ends within it adds up to
    /// half the rate over the whole wait, but is flat at its end)...
    public var fastConfirmSeconds: Double = 3
    /// ...to a new high: above every peak the history holds from before the
    /// fast window (the kernel's 6 s)...
    public var fastSpanSeconds: Double = 10
    /// ...and the limit is this close at that rate (or unknown).
    public var fastHorizonSeconds: Double = 15 * 60
    /// ...and it gave back at most this share of what it gained over the
    /// wait, counting runs of falling samples deeper than
    /// `fastChurnRunBytes`: allocate/free churn gives back 10–75 % of it in
    /// runs of 4–90 MiB (a recorded `stress-ng --malloc 1 --malloc-bytes
    /// 64M`: median run 11 MiB, 97 % of its falls in runs over 4 MiB); a
    /// leak's noise falls less than that in a run.
    public var fastChurnShare: Double = 0.1
    public var fastChurnRunBytes: Double = 4 * 1_048_576
    /// ...and it fell in fewer than this many such runs over the wait: in
    /// its first seconds the default `stress-ng --malloc` takes so much that
    /// its frees are only 7–13 % of its growth, but it frees in 3 to 16
    /// runs over 4 MiB in every 3 s (two recordings, 40 s each); a leak in
    /// none.
    public var fastChurnRuns: Int = 3
    /// ...and, over the recent past, fewer than `fastChurnRecentRuns` such
    /// runs, each counted as e^(-age / `fastChurnMemorySeconds`): the
    /// default `stress-ng --malloc` frees in 1 to 2 deep runs a second for
    /// minutes (a score of 20–40), but a 3 s wait of it now and then holds
    /// fewer than 3; a leak scores 0, and a program that churned and then
    /// starts to leak fast is believed within a minute of its last free
    /// (the history path's urgent rule is there before).
    public var fastChurnRecentRuns: Double = 4
    public var fastChurnMemorySeconds: Double = 20
    /// A suspicion clears when growth over the clear window (see
    /// `clearWindow`: longer for slow leaks) fell below a quarter of the
    /// suspected rate.
    public var minimumClearSeconds: Double = 60
    public var maximumClearSeconds: Double = 60 * 60
    /// leak.updated: at most one per this many seconds, and only when the
    /// forecast moved by this share or changed model.
    public var updateIntervalSeconds: Double = 60
    public var updateChange: Double = 0.2

    public init() {}

    /// The profile's settings; `accelerated` (leaksim's minute-long
    /// scenarios) waits seconds where `standard` waits hours.
    public init(profile: DetectorConfiguration.Profile) {
        self.init()
        if profile == .accelerated {
            patienceSeconds = 30
            graceSeconds = 20
            horizonSeconds = .infinity
            horizonPerAge = .infinity
            fastConfirmSeconds = 0.5
            maximumClearSeconds = 300
        }
    }

    /// How long growth must stay below a quarter of `rate` before the
    /// suspicion clears: the time to grow by eight tolerances at that rate
    /// (noise cannot fake a stop of a slow leak sooner), within
    /// [minimumClearSeconds, maximumClearSeconds]: 10 minutes for a leak of
    /// about 0.8 MiB/min, a minute from 8 MiB/min up.
    public func clearWindow(rate: Double, level: Double) -> Double {
        let tol = max(toleranceBytes, toleranceShare * level)
        guard rate > 0 else { return maximumClearSeconds }
        return min(max(8 * tol / rate, minimumClearSeconds), maximumClearSeconds)
    }
}
