/// One bucket of a target's history: the lowest, highest and mean held memory
/// (bytes) seen in its span of time. Float keeps a target's history at a few
/// KiB; its 24-bit mantissa is 256-byte resolution at 4 GiB, far below any
/// tolerance the tests use.
public struct HistoryBucket: Sendable, Hashable {
    public var low: Float
    public var high: Float
    public var mean: Float
}

/// A fixed number of equal-width buckets on the target's clock, sliding: the
/// newest completed bucket is always the one just before the open one. A span
/// with no samples repeats the last value, since the kernel sends a sample
/// whenever memory moves by a step: silence means no movement.
public struct BucketRing: Sendable {
    public let widthNanoseconds: Int64
    public let capacity: Int
    private var storage: [HistoryBucket] = []
    /// Index in `storage` of the oldest bucket.
    private var head = 0
    /// Bucket number (time / width) of the open bucket; -1 before the first sample.
    public private(set) var openNumber: Int64 = -1
    private var openLow = 0.0
    private var openHigh = 0.0
    private var openSum = 0.0
    private var openCount = 0
    private var last = 0.0
    /// Where the open bucket ends (time, nanoseconds).
    private var openEnd: Int64 = 0

    public init(widthSeconds: Int64, capacity: Int) {
        widthNanoseconds = widthSeconds * 1_000_000_000
        self.capacity = capacity
        storage.reserveCapacity(capacity)
    }

    /// Completed buckets.
    public var count: Int { storage.count }

    /// Completed bucket `i`, 0 the oldest.
    public subscript(i: Int) -> HistoryBucket { storage[(head + i) % capacity] }

    /// The bucket number of completed bucket `i`.
    public func number(_ i: Int) -> Int64 { openNumber - Int64(storage.count - i) }

    public var lastValue: Double { last }

    public mutating func add(time: Int64, value: Double) {
        // most samples land in the open bucket: no division for them
        if time < openEnd, openNumber >= 0 {
            openLow = min(openLow, value)
            openHigh = max(openHigh, value)
            openSum += value
            openCount += 1
            last = value
            return
        }
        let number = time / widthNanoseconds
        if openNumber < 0 {
            openNumber = number
            startOpen(value)
            return
        }
        if number > openNumber {
            close(HistoryBucket(low: Float(openLow), high: Float(openHigh), mean: Float(openSum / Double(openCount))))
            // buckets without samples held the last value
            let gap = min(number - openNumber - 1, Int64(capacity))
            if gap > 0 {
                let flat = HistoryBucket(low: Float(last), high: Float(last), mean: Float(last))
                for _ in 0..<gap { close(flat) }
            }
            openNumber = number
            startOpen(value)
            return
        }
        openLow = min(openLow, value)
        openHigh = max(openHigh, value)
        openSum += value
        openCount += 1
        last = value
    }

    private mutating func startOpen(_ value: Double) {
        openEnd = (openNumber + 1) * widthNanoseconds
        openLow = value
        openHigh = value
        openSum = value
        openCount = 1
        last = value
    }

    private mutating func close(_ bucket: HistoryBucket) {
        if storage.count < capacity {
            storage.append(bucket)
        } else {
            storage[head] = bucket
            head = (head + 1) % capacity
        }
    }
}

/// A target's long memory: held memory (anon + shmem + swap) at three
/// resolutions, 10 s for 15 minutes, 1 min for 4 hours and 10 min for 48
/// hours (≈ 7.4 KiB a target). The fine ring answers urgent questions
/// within a minute; the coarse one sees daily cycles and slow leaks.
public struct GrowthHistory: Sendable {
    public static let fineSeconds: Int64 = 10
    public static let rings: [(width: Int64, capacity: Int)] = [(10, 90), (60, 240), (600, 288)]
    public static var bytesPerTarget: Int {
        rings.reduce(0) { $0 + $1.capacity * MemoryLayout<HistoryBucket>.stride } + MemoryLayout<GrowthHistory>.size
    }

    // stored one by one: a sample updates all three, and an array of them
    // would cost uniqueness checks on every sample
    public private(set) var fine: BucketRing
    public private(set) var minute: BucketRing
    public private(set) var coarse: BucketRing
    /// The three rings, finest first (for the analysis, not per sample).
    public var rings: [BucketRing] { [fine, minute, coarse] }
    /// When the target's first sample came (its age starts there).
    public private(set) var firstTime: Int64 = -1
    public private(set) var lastTime: Int64 = -1

    public init() {
        fine = BucketRing(widthSeconds: Self.rings[0].width, capacity: Self.rings[0].capacity)
        minute = BucketRing(widthSeconds: Self.rings[1].width, capacity: Self.rings[1].capacity)
        coarse = BucketRing(widthSeconds: Self.rings[2].width, capacity: Self.rings[2].capacity)
    }

    public mutating func add(time: Int64, held: UInt64) {
        if firstTime < 0 { firstTime = time }
        lastTime = time
        let value = Double(held)
        fine.add(time: time, value: value)
        minute.add(time: time, value: value)
        coarse.add(time: time, value: value)
    }

    public var age: Int64 { firstTime < 0 ? 0 : lastTime - firstTime }

    /// The highest held memory of the completed buckets that ended at least
    /// `seconds` ago, over the whole history (nil: none that old).
    public func peakBefore(seconds: Double) -> Double? {
        let cutoff = lastTime - Int64(seconds * 1e9)
        var peak: Float?
        for ring in rings {
            let width = ring.widthNanoseconds
            for i in 0..<ring.count where (ring.number(i) + 1) * width <= cutoff {
                peak = max(peak ?? ring[i].high, ring[i].high)
            }
        }
        return peak.map(Double.init)
    }
    /// Whether the growth since `start` passed every earlier top: in each
    /// ring whose buckets are at most a third of the window, the highest
    /// level held over two buckets since then (`HeldTop`) is above the
    /// highest one before it by more
    /// than `tolerance` plus a bucket's growth at `rate` (where a bucket
    /// boundary fell shifts a top by up to that; a leak's newest top is
    /// two buckets or more past any earlier one). Ring by ring, so tops are
    /// compared at one resolution; means, not highs, so a spike within a
    /// bucket is no top. A batch job's next cycle climbs back to where the
    /// last one peaked; a leak passes it.
    public func passesEarlierTops(since start: Int64, tolerance: Double, rate: Double) -> Bool {
        for ring in rings {
            let width = ring.widthNanoseconds
            guard 3 * width <= lastTime - start else { break }
            // a top is held for two buckets in a row: a spike shorter than a
            // bucket lifts one bucket's mean by a random height, and a leak
            // with spikes would then have to pass the biggest earlier spike
            var before = HeldTop()
            var since = HeldTop()
            for i in 0..<ring.count {
                if (ring.number(i) + 1) * width <= start {
                    before.add(ring[i].mean)
                } else {
                    since.add(ring[i].mean)
                }
            }
            let margin = tolerance + max(0, rate) * Double(width) / 1e9
            if let before = before.top, let since = since.top, Double(since) <= Double(before) + margin { return false }
        }
        return true
    }

    /// The growth's own rhythm since `start`, on one ring: how long the
    /// newest top has stood (`standing`, seconds to the newest completed
    /// bucket's end), the longest wait between tops before it (`longestWait`,
    /// counting the wait from `start` to the first), and how far the bucket
    /// means up to the newest top strayed from a line of `slope` bytes a
    /// second (`spread`, highest less lowest residual). A top is a level held
    /// over two buckets (`HeldTop`'s rule) more than `tolerance` above the
    /// previous top. A leak sets tops at its own pace: a steady one every
    /// tolerance's worth of growth, a staircase at each step, a leak under a
    /// sawtooth at each tooth, a noisy one whenever the trend climbs past its
    /// last excursion; a fill or a warm-up that ended sets none, and the
    /// growth test's blocks still pass for up to a span after it ended.
    /// nil: fewer than two buckets since `start`.
    public func tops(
        since start: Int64, ring index: Int, tolerance: Double, slope: Double
    ) -> (standing: Double, longestWait: Double, spread: Double)? {
        let ring = rings[index]
        let width = ring.widthNanoseconds
        var previousMean: Float?
        var top: Double?
        var topTime = start
        var longest: Int64 = 0
        var end = start
        // residuals of the buckets up to the newest top (those after it are the stall itself)
        var low = Double.infinity, high = -Double.infinity
        var lowSinceTop = Double.infinity, highSinceTop = -Double.infinity
        for i in 0..<ring.count where ring.number(i) * width >= start {
            let mean = ring[i].mean
            defer { previousMean = mean }
            end = (ring.number(i) + 1) * width
            let residual = Double(mean) - slope * Double(end) / 1e9
            lowSinceTop = min(lowSinceTop, residual)
            highSinceTop = max(highSinceTop, residual)
            guard let previousMean else { continue }
            let held = Double(min(previousMean, mean))
            guard let current = top else {
                top = held
                continue
            }
            if held > current + tolerance {
                longest = max(longest, end - topTime)
                top = held
                topTime = end
                low = min(low, lowSinceTop)
                high = max(high, highSinceTop)
                lowSinceTop = .infinity
                highSinceTop = -.infinity
            }
        }
        guard top != nil else { return nil }
        return (Double(end - topTime) / 1e9, Double(longest) / 1e9, high >= low ? high - low : 0)
    }

    public var latest: Double { fine.lastValue }
}

/// The highest level held over two buckets in a row: the larger of each
/// neighbouring pair's lower mean (one bucket alone: its own mean).
private struct HeldTop {
    private var last: Float?
    private var held: Float?
    private var count = 0

    mutating func add(_ mean: Float) {
        if let last { held = max(held ?? min(last, mean), min(last, mean)) }
        last = mean
        count += 1
    }

    var top: Float? { count == 1 ? last : held }
}
