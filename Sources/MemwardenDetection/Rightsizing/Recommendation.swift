/// What the leak verdict says about a target's growth: the confirmation
/// stage's rate, and when the growth began when that is known (seconds, the
/// history's clock; nil: estimated from the history).
public struct LeakTrend: Sendable, Hashable {
    public var bytesPerSecond: Double
    public var onset: Double?

    public init(bytesPerSecond: Double, onset: Double? = nil) {
        self.bytesPerSecond = bytesPerSecond
        self.onset = onset
    }
}

/// The figures' knobs. The defaults are VPA's and KRR's own, so the two
/// columns are what those tools would say on the same history.
public struct RecommendationSettings: Sendable, Hashable {
    /// Added to every figure (VPA's `recommendationMarginFraction`, KRR's
    /// `memory_buffer_percentage`: both 15 %).
    public var margin = 0.15
    /// VPA: the 90th percentile of daily peaks over 8 days
    /// (`targetMemoryPeaksPercentile`, `memoryAggregationIntervalCount` × 24 h).
    public var vpaPercentile = 0.9
    public var vpaDays = 8
    /// KRR: the maximum over 14 days (its default `--history_duration` of 336 hours).
    public var krrDays = 14
    public var daySeconds: Double = 86_400
    /// The least rise of the daily floors that counts as a leak's: the
    /// confirmation stage's least growth (`ConfirmationSettings.minimumGrowthBytes`
    /// and `minimumGrowthShare`), so noise on the floors is no trend.
    public var minimumRiseBytes: Double = 4 * 1_048_576
    public var minimumRiseShare = 0.02

    public init() {}
}

/// Right-sizing for one container (or one workload's containers): the
/// observed daily peaks, what VPA and KRR would recommend from them, and
/// memwarden's figure, which leaves the leak's growth out.
public struct Recommendation: Sendable, Hashable {
    /// One day of the history (24 h from the history's start, not a calendar
    /// day: the history's clock has no time zone).
    public struct Day: Sendable, Hashable {
        /// 0: the history's first day.
        public var index: Int
        public var start: Double
        /// Share of the day the history covers (the first and last days are often partial).
        public var coverage: Double
        public var peak: Double
        public var floor: Double
        /// The peak with the leak's growth since its onset taken out (= `peak` when no leak).
        public var detrendedPeak: Double
    }

    /// Where `trend.bytesPerSecond` came from.
    public enum TrendSource: String, Sendable, Hashable {
        /// Theil–Sen over the daily floors (three days or more).
        case dailyFloors = "daily_floors"
        /// The confirmation stage's verdict rate.
        case verdict
    }

    public struct Trend: Sendable, Hashable {
        public var bytesPerSecond: Double
        /// When the growth began (seconds, the history's clock).
        public var onset: Double
        public var source: TrendSource
    }

    /// When a limit is met at the current growth: `seconds` from the history's
    /// end, 0 when the workload's peaks already reach it.
    public struct LimitReach: Sendable, Hashable {
        public enum Kind: String, Sendable, Hashable {
            case current
            case recommended
            /// Twice the current limit: what raising it buys.
            case doubled
        }
        public var kind: Kind
        public var limit: Double
        public var seconds: Double
    }

    public var historyStart: Double
    public var historySeconds: Double
    public var days: [Day]
    /// p90 of the daily peaks of the last `vpaDays` days, plus the margin.
    public var vpaStyle: Double
    /// The highest peak of the last `krrDays` days, plus the margin.
    public var krrStyle: Double
    /// The highest daily peak without the leak's growth, plus the margin.
    public var memwarden: Double
    /// `memwarden` before the margin: the peak the workload reaches without the leak.
    public var basePeak: Double
    /// The peak now, leak included (the last day's highest bucket).
    public var currentPeak: Double
    /// The leak's growth that was taken out; nil for a target that does not leak.
    public var trend: Trend?
    public var limit: Double?
    /// For a leaking target: when its current, the recommended and a doubled limit are met.
    public var reach: [LimitReach]
    /// The pods the figures were aggregated over (1: a single container).
    public var members: Int

    public var leaking: Bool { trend != nil }
}

/// One container's history and verdict, an input to `Recommender`.
public struct RecommendationMember: Sendable {
    public var history: UsageHistory
    public var leak: LeakTrend?

    public init(history: UsageHistory, leak: LeakTrend? = nil) {
        self.history = history
        self.leak = leak
    }
}
