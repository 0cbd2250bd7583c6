/// Order statistics for detection, its scoring, rightsizing and the benches: one definition,
/// so that a median means the same in a forecast and in the score that judges it.
public enum Quantiles {
    /// The `p` quantile (0...1), linear between the closest ranks (numpy's default); nil when
    /// there are no values.
    public static func percentile(_ values: [Double], _ p: Double) -> Double? {
        let sorted = values.sorted()
        guard let first = sorted.first else { return nil }
        guard sorted.count > 1 else { return first }
        let rank = min(max(p, 0), 1) * Double(sorted.count - 1)
        let low = Int(rank.rounded(.down))
        let high = min(low + 1, sorted.count - 1)
        let fraction = rank - Double(low)
        // on a rank, or between equal values, no arithmetic: an infinite value (a leak never
        // detected scores an infinite delay) would make 0 × ∞ = NaN
        guard fraction > 0, sorted[high] != sorted[low] else { return sorted[low] }
        return sorted[low] + (sorted[high] - sorted[low]) * fraction
    }

    /// The middle value; the mean of the middle two for an even count; nil when there are none.
    public static func median(_ values: [Double]) -> Double? {
        percentile(values, 0.5)
    }
}
