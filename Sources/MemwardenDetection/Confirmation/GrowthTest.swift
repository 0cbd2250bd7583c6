/// Whether a target's history shows sustained, new growth at one time scale.
///
/// The last three blocks of `span` each give a floor (lowest), a mean and a
/// peak (highest). Growth holds at that span when
///  - floors and means rise from block to block by more than the tolerance
///    (a GC sawtooth shorter than the span keeps its floor flat);
///  - the rise does not slow down: each second rise of floor, mean and peak
///    is at least `steadiness` of the first (a warm-up or a cache filling
///    toward its bound slows; a leak does not; the top of a load cycle does);
///  - the newest floor is a new high: above every floor of an earlier block
///    of the same span in the history, and the window's top (its highest
///    bucket mean) above every earlier one in each ring (a
///    batch job's next cycle or a daily cycle's next rising half only climbs
///    back to where it was; a leak keeps passing the previous cycle's top).
/// The largest span at which growth holds says for how long it has lasted.
public struct GrowthTest: Sendable {
    public struct Span: Sendable, Hashable {
        public var seconds: Int64
        /// Index into `GrowthHistory.rings`.
        public var ring: Int
    }

    /// Spans, shortest first, each on the coarsest ring that still gives a
    /// block at least three buckets (10 and 20 s: one and two fine buckets,
    /// for urgent fast leaks).
    public static let spans: [Span] = [
        Span(seconds: 10, ring: 0), Span(seconds: 20, ring: 0), Span(seconds: 30, ring: 0),
        Span(seconds: 40, ring: 0), Span(seconds: 60, ring: 0), Span(seconds: 80, ring: 0),
        Span(seconds: 120, ring: 0), Span(seconds: 160, ring: 0), Span(seconds: 240, ring: 0),
        Span(seconds: 300, ring: 0),
        Span(seconds: 480, ring: 1), Span(seconds: 960, ring: 1), Span(seconds: 1_920, ring: 1),
        Span(seconds: 3_600, ring: 1), Span(seconds: 7_200, ring: 2), Span(seconds: 14_400, ring: 2),
        Span(seconds: 28_800, ring: 2), Span(seconds: 57_600, ring: 2),
    ]

    public struct Blocks: Sendable {
        public var floors: (Double, Double, Double)
        public var means: (Double, Double, Double)
        public var peaks: (Double, Double, Double)
        /// The highest block floor before the three blocks, if the history reaches that far.
        public var previousFloorHigh: Double?
        /// When the three blocks start (nanoseconds on the target's clock).
        public var start: Int64 = 0
    }

    public struct Result: Sendable {
        public var span: Span
        public var blocks: Blocks
        /// Floor growth over the window (last floor − first floor), bytes.
        public var growth: Double
        /// The window's rate: first to last block mean, bytes a second.
        public var rate: Double
    }

    public var settings: ConfirmationSettings

    public init(settings: ConfirmationSettings) {
        self.settings = settings
    }

    /// The three blocks of `span` ending at the newest completed bucket, or nil
    /// when the ring does not hold them.
    public static func blocks(_ history: GrowthHistory, span: Span, previous wantPrevious: Bool = true) -> Blocks? {
        let ring = history.rings[span.ring]
        let per = Int(span.seconds / (ring.widthNanoseconds / 1_000_000_000))
        guard per >= 1, ring.count >= 3 * per else { return nil }
        let start = ring.count - 3 * per
        func block(_ from: Int) -> (Double, Double, Double) {
            var low = Double.infinity
            var high = -Double.infinity
            var sum = 0.0
            for i in from..<(from + per) {
                let b = ring[i]
                low = min(low, Double(b.low))
                high = max(high, Double(b.high))
                sum += Double(b.mean)
            }
            return (low, sum / Double(per), high)
        }
        let b1 = block(start)
        let b2 = block(start + per)
        let b3 = block(start + 2 * per)
        guard wantPrevious else {
            return Blocks(
                floors: (b1.0, b2.0, b3.0), means: (b1.1, b2.1, b3.1), peaks: (b1.2, b2.2, b3.2), previousFloorHigh: nil)
        }
        // the highest floor before the window, at this span, in this ring and
        // in every coarser one (which reach further back: yesterday's cycle)
        var previous: Double?
        var end = start
        while end - per >= 0 {
            let floor = block(end - per).0
            previous = max(previous ?? floor, floor)
            end -= per
        }
        let windowStart = ring.number(start) * ring.widthNanoseconds
        for coarser in history.rings.dropFirst(span.ring + 1) {
            let width = coarser.widthNanoseconds
            let blockBuckets = max(1, Int(span.seconds * 1_000_000_000 / width))
            // completed buckets that end before the window starts
            var last = coarser.count - 1
            while last >= 0, (coarser.number(last) + 1) * width > windowStart { last -= 1 }
            while last - blockBuckets + 1 >= 0 {
                var low = Double.infinity
                for i in (last - blockBuckets + 1)...last { low = min(low, Double(coarser[i].low)) }
                previous = max(previous ?? low, low)
                last -= blockBuckets
            }
        }
        return Blocks(
            floors: (b1.0, b2.0, b3.0), means: (b1.1, b2.1, b3.1), peaks: (b1.2, b2.2, b3.2),
            previousFloorHigh: previous, start: windowStart)
    }

    /// The tolerance a rise must beat at this level: what noise and rounding
    /// can fake.
    public func tolerance(level: Double) -> Double {
        max(settings.toleranceBytes, settings.toleranceShare * level)
    }

    /// Growth at one span, or nil.
    public func evaluate(_ history: GrowthHistory, span: Span) -> Result? {
        // the scan of the history for earlier highs only when everything else holds
        guard var b = Self.blocks(history, span: span, previous: false) else { return nil }
        let tol = tolerance(level: b.means.2)
        let df1 = b.floors.1 - b.floors.0, df2 = b.floors.2 - b.floors.1
        let dm1 = b.means.1 - b.means.0, dm2 = b.means.2 - b.means.1
        let dp1 = b.peaks.1 - b.peaks.0, dp2 = b.peaks.2 - b.peaks.1
        guard df1 > tol, df2 > tol, dm1 > tol, dm2 > tol else { return nil }
        let growth = b.floors.2 - b.floors.0
        guard growth >= max(settings.minimumGrowthBytes, settings.minimumGrowthShare * b.means.2) else { return nil }
        let k = settings.steadiness
        guard df2 >= k * df1, dm2 >= k * dm1 else { return nil }
        // peaks: a spike may sit in any block, so only a clear slowdown of a clear rise counts
        if dp1 > 2 * tol, dp2 < k * dp1 - tol { return nil }
        b = Self.blocks(history, span: span)!
        if let previous = b.previousFloorHigh, b.floors.2 <= previous + tol { return nil }
        let rate = (b.means.2 - b.means.0) / (2 * Double(span.seconds))
        if !history.passesEarlierTops(since: b.start, tolerance: tol, rate: rate) { return nil }
        return Result(span: span, blocks: b, growth: growth, rate: rate)
    }

    /// The longest span at which growth holds, looking at every span (a
    /// longer span can hold where a shorter one's blocks fall inside one
    /// GC cycle).
    public func longest(_ history: GrowthHistory) -> Result? {
        var cache = Cache()
        return longest(history, cache: &cache)
    }

    /// Each ring's longest passing span, kept until that ring completes a
    /// bucket: the 10-minute ring's spans change every 10 minutes, not every
    /// 10 s when the fine ring is evaluated.
    public struct Cache: Sendable {
        var numbers: [Int64] = [-1, -1, -1]
        var results: [Result?] = [nil, nil, nil]
        public init() {}
    }

    public func longest(_ history: GrowthHistory, cache: inout Cache) -> Result? {
        let rings = history.rings
        for ring in rings.indices where cache.numbers[ring] != rings[ring].openNumber {
            cache.numbers[ring] = rings[ring].openNumber
            cache.results[ring] = nil
            for span in Self.spans where span.ring == ring {
                if let result = evaluate(history, span: span) { cache.results[ring] = result }
            }
        }
        return cache.results.last { $0 != nil } ?? nil
    }
}
