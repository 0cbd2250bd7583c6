/// One span of a target's memory usage: the lowest, highest and mean bytes
/// seen in it. Right-sizing needs only these three (the peak is what an OOM
/// kill meets, the floor is what a leak raises), so samples, per-minute
/// buckets and the confirmation stage's rings all become these.
public struct UsageBucket: Sendable, Hashable {
    /// Start, seconds on the history's clock (a trace's `t`, the agent's trace clock).
    public var start: Double
    public var seconds: Double
    public var floor: Double
    public var peak: Double
    public var mean: Double

    public init(start: Double, seconds: Double, floor: Double, peak: Double, mean: Double) {
        self.start = start
        self.seconds = seconds
        self.floor = floor
        self.peak = peak
        self.mean = mean
    }

    public var end: Double { start + seconds }
    public var middle: Double { start + seconds / 2 }
}

/// A target's usage as time-ordered, non-overlapping buckets.
public struct UsageHistory: Sendable, Hashable {
    public private(set) var buckets: [UsageBucket]

    /// Buckets in any order; sorted by start.
    public init(buckets: [UsageBucket]) {
        self.buckets = buckets.sorted { $0.start < $1.start }
    }

    /// Samples (seconds, bytes) in buckets of `bucketSeconds` (per minute by
    /// default: finer than any daily question needs, coarse enough that two
    /// weeks are 20 160 buckets).
    public init(samples: [(time: Double, bytes: Double)], bucketSeconds: Double = 60) {
        var builder = UsageHistoryBuilder(bucketSeconds: bucketSeconds)
        for sample in samples { builder.add(time: sample.time, bytes: sample.bytes) }
        self = builder.history
    }

    /// The confirmation stage's rings: the coarse ring (10 minutes, 48
    /// hours), then the minute ring after it ends, then the fine ring after
    /// that, so each span is told by the finest ring that holds it.
    public init(_ history: GrowthHistory) {
        var buckets: [UsageBucket] = []
        var covered = -Double.infinity
        for ring in history.rings.reversed() {
            let width = Double(ring.widthNanoseconds) / 1e9
            var newest = covered
            for i in 0..<ring.count {
                let start = Double(ring.number(i)) * width
                guard start >= covered else { continue }
                let b = ring[i]
                buckets.append(
                    UsageBucket(start: start, seconds: width, floor: Double(b.low), peak: Double(b.high), mean: Double(b.mean)))
                newest = start + width
            }
            covered = newest
        }
        self.init(buckets: buckets)
    }

    public var isEmpty: Bool { buckets.isEmpty }
    public var start: Double? { buckets.first?.start }
    public var end: Double? { buckets.last?.end }
    /// Seconds from the first bucket's start to the last one's end.
    public var seconds: Double {
        guard let start, let end else { return 0 }
        return end - start
    }
}

/// Builds a `UsageHistory` from samples as they come (a trace is read once,
/// line by line): a bucket per `bucketSeconds`, a span with no samples
/// holding the last value, as the kernel sends a sample whenever memory moves.
public struct UsageHistoryBuilder: Sendable {
    public let bucketSeconds: Double
    private var buckets: [UsageBucket] = []
    private var open: UsageBucket?
    private var sum = 0.0
    private var count = 0
    private var last = 0.0

    public init(bucketSeconds: Double = 60) {
        self.bucketSeconds = bucketSeconds
    }

    public mutating func add(time: Double, bytes: Double) {
        let start = (time / bucketSeconds).rounded(.down) * bucketSeconds
        if var bucket = open, bucket.start == start {
            bucket.floor = min(bucket.floor, bytes)
            bucket.peak = max(bucket.peak, bytes)
            sum += bytes
            count += 1
            open = bucket
            last = bytes
            return
        }
        if var bucket = open {
            bucket.mean = sum / Double(count)
            buckets.append(bucket)
            var gap = bucket.end
            while gap < start {
                buckets.append(UsageBucket(start: gap, seconds: bucketSeconds, floor: last, peak: last, mean: last))
                gap += bucketSeconds
            }
        }
        open = UsageBucket(start: start, seconds: bucketSeconds, floor: bytes, peak: bytes, mean: bytes)
        sum = bytes
        count = 1
        last = bytes
    }

    /// The buckets so far, the open one included.
    public var history: UsageHistory {
        var all = buckets
        if var bucket = open {
            bucket.mean = sum / Double(count)
            all.append(bucket)
        }
        return UsageHistory(buckets: all)
    }
}
