import Foundation

/// When a growing target reaches its limit, from a model fitted to its
/// growth, with an interval.
///
/// Three models are fitted over the growth window (bucket means against
/// time): linear (Theil–Sen), quadratic, and exponential `c + a·e^(λt)` (λ on
/// a grid, c and a by least squares). The model is picked by out-of-sample
/// error: fit on the first three quarters, score on the last quarter; a
/// curved model must beat the line's error by 40 %. A saturating exponential (λ < 0) is
/// fitted too: when it wins, the growth is levelling off toward a plateau and
/// there is no forecast (`levellingOff`).
///
/// The interval spans the forecasts of the models whose out-of-sample error
/// is within twice the best one's, the linear forecast at the Theil–Sen
/// slope's quartile pair slopes, and the time the growth needs to cross the
/// fit's residual noise band on either side.
public struct GrowthForecast: Sendable, Hashable {
    public enum Model: String, Sendable, Hashable {
        case linear, quadratic, exponential
    }

    public var model: Model
    /// Seconds until the limit.
    public var seconds: Double
    public var low: Double
    public var high: Double
    /// The fitted growth rate now, bytes/s.
    public var rate: Double
    /// Goodness of the chosen fit over the whole window (R², 0...1).
    public var fit: Double

    /// Points: time in seconds (relative to anything), value in bytes.
    public struct Point: Sendable {
        public var t: Double
        public var y: Double
        public init(t: Double, y: Double) {
            self.t = t
            self.y = y
        }
    }

    public enum Outcome: Sendable {
        case forecast(GrowthForecast)
        /// A saturating fit explains the growth best: a warm-up or a fill.
        case levellingOff(asymptote: Double)
        /// Not enough points to fit.
        case none
        /// The fit does not grow, or does not reach the limit within 30 days.
        case unreachable
    }

    private struct Fit {
        var model: Model?  // nil: saturating
        var predict: (Double) -> Double
        var error: Double
    }

    /// `ceiling`: the limit in the points' terms (the limit less what of the
    /// usage the points do not count, such as page cache). `excess`: how far
    /// above its bucket's mean memory typically and at most (spikes, a
    /// sawtooth's peaks) reaches: the limit is met by the peaks, not the mean.
    /// `now`: the newest time.
    public static func make(
        points: [Point], ceiling: Double, excess: Excess = Excess(), now: Double
    ) -> Outcome {
        guard points.count >= 3, ceiling.isFinite else { return .none }
        if points.count < 6 { return short(points, ceiling: ceiling, excess: excess, now: now) }
        let split = max(4, points.count * 3 / 4)
        let train = Array(points[..<split])
        let test = Array(points[split...])
        let t0 = points[0].t
        let span = max(points.last!.t - t0, 1)

        var candidates: [Fit] = []
        if let f = linear(train) { candidates.append(Fit(model: .linear, predict: f, error: rmse(f, test))) }
        if let f = quadratic(train, t0: t0, span: span) {
            candidates.append(Fit(model: .quadratic, predict: f, error: rmse(f, test)))
        }
        if let f = exponential(train, t0: t0, span: span, growing: true) {
            candidates.append(Fit(model: .exponential, predict: f, error: rmse(f, test)))
        }
        var saturating: ((Double) -> Double, Double)?
        if let f = exponential(train, t0: t0, span: span, growing: false) {
            saturating = (f, rmse(f, test))
        }
        guard !candidates.isEmpty else { return .none }
        let best = candidates.map(\.error).min()!
        if let (f, error) = saturating, error < 0.7 * best {
            // refit on everything for the asymptote
            let full = exponential(points, t0: t0, span: span, growing: false) ?? f
            return .levellingOff(asymptote: full(t0 + 100 * span))
        }
        // a curved model must beat the line clearly: extrapolating curvature
        // is where forecasts go wrong (the trough of a cycle looks like acceleration)
        let lineError = candidates.first { $0.model == .linear }?.error ?? .infinity
        let chosen = best < 0.6 * lineError ? candidates.first { $0.error == best }! : candidates[0]
        let model = chosen.model!
        guard let full = refit(model, points, t0: t0, span: span) else { return .none }
        let (fit, ssRes) = goodness(full, points)
        let residual = sqrt(ssRes / Double(points.count))
        let rate = (full(now) - full(now - max(span / 20, 1))) / max(span / 20, 1)
        guard rate > 0 else { return .unreachable }
        let headroom = ceiling - excess.typical - full(now)
        guard let seconds = crossing(full, from: now, rise: headroom, rate: rate) else { return .unreachable }

        var low = seconds
        var high = seconds
        for candidate in candidates where candidate.error <= best * 2 + 1 {
            guard let m = candidate.model, let f = refit(m, points, t0: t0, span: span) else { continue }
            let r = (f(now) - f(now - max(span / 20, 1))) / max(span / 20, 1)
            if r > 0, let s = crossing(f, from: now, rise: headroom, rate: r) {
                low = min(low, s)
                high = max(high, s)
            }
        }
        // the highest spike may reach the limit first. The peaks seen in
        // every sixth of the window come back at least every third of it:
        // they meet the limit at the latest one such gap after the model
        // brings them there, and never after the mean alone would
        if let s = crossing(full, from: now, rise: ceiling - excess.high - full(now), rate: rate) { low = min(low, s) }
        if let mean = crossing(full, from: now, rise: ceiling - full(now), rate: rate) {
            let peaks = crossing(full, from: now, rise: ceiling - excess.least - full(now), rate: rate)
            high = max(high, min(mean, (peaks ?? mean) + span / 3))
        }
        let (slopeLow, slopeHigh) = slopeQuartiles(points)
        if slopeHigh > 0 { low = min(low, max(0, headroom) / slopeHigh) }
        if slopeLow > 0 { high = max(high, max(0, headroom) / slopeLow) } else { high = max(high, seconds * 3) }
        // crossing the noise band: the limit is reached earlier or later by
        // the time the growth takes to cover two residuals
        let band = 2 * residual / rate
        low = max(0, min(low, seconds - band))
        high = max(high, seconds + band)
        // the model is never exact: at least ±10 %
        low = min(low, seconds * 0.9)
        high = max(high, seconds * 1.1)
        return .forecast(
            GrowthForecast(model: model, seconds: seconds, low: low, high: high, rate: rate, fit: fit))
    }

    /// Growth seen for three to five buckets (a young target's first
    /// verdict, in the accelerated profile): too few to hold a quarter out,
    /// so no curve is chosen. The line's forecast, with an interval at least
    /// half to twice it: three points tell a rate, not whether it holds.
    static func short(_ points: [Point], ceiling: Double, excess: Excess, now: Double) -> Outcome {
        guard let line = linear(points) else { return .none }
        let rate = theilSen(points)
        guard rate > 0 else { return .unreachable }
        let headroom = ceiling - excess.typical - line(now)
        let seconds = max(0, headroom) / rate
        guard seconds <= 30 * 86_400 else { return .unreachable }
        var low = seconds * 0.5
        var high = seconds * 2
        let (slopeLow, slopeHigh) = slopeQuartiles(points)
        if slopeHigh > 0 { low = min(low, max(0, ceiling - excess.high - line(now)) / slopeHigh) }
        if slopeLow > 0 { high = max(high, max(0, headroom) / slopeLow) }
        return .forecast(
            GrowthForecast(model: .linear, seconds: seconds, low: low, high: high, rate: rate, fit: goodness(line, points).fit))
    }

    /// R² of `f` over `points` (0...1), and its residual sum of squares.
    static func goodness(_ f: (Double) -> Double, _ points: [Point]) -> (fit: Double, residualSquares: Double) {
        let ssTot = variance(points) * Double(points.count)
        let ssRes = points.reduce(0.0) { $0 + pow($1.y - f($1.t), 2) }
        return (ssTot > 0 ? max(0, 1 - ssRes / ssTot) : 0, ssRes)
    }

    /// How far above the trend of the points memory reaches (a sawtooth's
    /// teeth, spikes, noise): the limit is met by the peaks, not the mean.
    public struct Excess: Sendable {
        /// Reached in every sixth of the window.
        public var least: Double = 0
        /// Reached in most sixths: where the forecast puts the crossing.
        public var typical: Double = 0
        /// Reached once.
        public var high: Double = 0

        public init(least: Double = 0, typical: Double = 0, high: Double = 0) {
            self.least = least
            self.typical = typical
            self.high = high
        }
    }

    /// Seconds after `from` until `f` has risen by `rise`, searched up to 30
    /// days; nil when it never does.
    static func crossing(_ f: (Double) -> Double, from: Double, rise: Double, rate: Double) -> Double? {
        if rise <= 0 { return 0 }
        let start = f(from)
        let horizon = 30.0 * 86_400
        var hi = min(max(rise / rate, 1), horizon)
        while f(from + hi) - start < rise {
            if hi >= horizon { return nil }
            hi = min(hi * 2, horizon)
        }
        var lo = 0.0
        for _ in 0..<48 {
            let mid = (lo + hi) / 2
            if f(from + mid) - start < rise { lo = mid } else { hi = mid }
        }
        return hi
    }

    static func rmse(_ f: (Double) -> Double, _ points: [Point]) -> Double {
        guard !points.isEmpty else { return 0 }
        return sqrt(points.reduce(0.0) { $0 + pow($1.y - f($1.t), 2) } / Double(points.count))
    }

    static func variance(_ points: [Point]) -> Double {
        let mean = points.reduce(0.0) { $0 + $1.y } / Double(points.count)
        return points.reduce(0.0) { $0 + pow($1.y - mean, 2) } / Double(points.count)
    }

    static func refit(_ model: Model, _ points: [Point], t0: Double, span: Double) -> ((Double) -> Double)? {
        switch model {
        case .linear: linear(points)
        case .quadratic: quadratic(points, t0: t0, span: span)
        case .exponential: exponential(points, t0: t0, span: span, growing: true)
        }
    }

    /// The Theil–Sen line: the median pairwise slope, through the median
    /// residual. Least squares follows outliers: the dips of a worker that
    /// restarts, a GC's drops or a spike pull it off the level memory holds
    /// most of the time, and its slope with it.
    static func linear(_ points: [Point]) -> ((Double) -> Double)? {
        guard points.count >= 2 else { return nil }
        let slopes = pairwiseSlopes(points)
        guard !slopes.isEmpty else { return nil }
        let b = slopes[slopes.count / 2]
        let t0 = points[0].t
        let residuals = points.map { $0.y - b * ($0.t - t0) }.sorted()
        let a = residuals[residuals.count / 2]
        return { a + b * ($0 - t0) }
    }

    /// The least-squares line of y on t: the means of t and y, and the slope.
    static func leastSquares(_ points: [Point]) -> (Double, Double, Double)? {
        let n = Double(points.count)
        let mt = points.reduce(0.0) { $0 + $1.t } / n
        let my = points.reduce(0.0) { $0 + $1.y } / n
        var sxy = 0.0, sxx = 0.0
        for p in points {
            sxy += (p.t - mt) * (p.y - my)
            sxx += (p.t - mt) * (p.t - mt)
        }
        guard sxx > 0 else { return nil }
        return (mt, my, sxy / sxx)
    }

    /// Least squares on x = (t − t0) / span, so the normal equations stay well conditioned.
    static func quadratic(_ points: [Point], t0: Double, span: Double) -> ((Double) -> Double)? {
        guard points.count >= 4 else { return nil }
        var s = [Double](repeating: 0, count: 5)
        var sy = [Double](repeating: 0, count: 3)
        let y0 = points[0].y
        for p in points {
            let x = (p.t - t0) / span
            var xp = 1.0
            for k in 0..<5 {
                s[k] += xp
                if k < 3 { sy[k] += xp * (p.y - y0) }
                xp *= x
            }
        }
        // 3×3 solve by Cramer's rule
        let m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]
        func det(_ a: [[Double]]) -> Double {
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        }
        let d = det(m)
        guard abs(d) > 1e-12 else { return nil }
        var coefficients = [Double](repeating: 0, count: 3)
        for k in 0..<3 {
            var mk = m
            for r in 0..<3 { mk[r][k] = sy[r] }
            coefficients[k] = det(mk) / d
        }
        let (a, b, c) = (coefficients[0], coefficients[1], coefficients[2])
        return { t in
            let x = (t - t0) / span
            return y0 + a + b * x + c * x * x
        }
    }

    /// c + a·e^(λx), x = (t − t0) / span, λ on a grid: growing (λ > 0) or
    /// saturating (λ < 0, a > 0 needed for a rise toward c).
    static func exponential(_ points: [Point], t0: Double, span: Double, growing: Bool) -> ((Double) -> Double)? {
        guard points.count >= 4 else { return nil }
        let grid: [Double] = [0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8]
        var best: (error: Double, f: (Double) -> Double)?
        for g in grid {
            let lambda = growing ? g : -g
            // linear least squares of y on u = e^(λx)
            let transformed = points.map { Point(t: exp(lambda * ($0.t - t0) / span), y: $0.y) }
            guard let (mu, my, a) = leastSquares(transformed) else { continue }
            // growing: a > 0 for growth; saturating: y = c + a·e^(−gx) rises when a < 0
            if growing ? a <= 0 : a >= 0 { continue }
            let c = my - a * mu
            let f: (Double) -> Double = { c + a * exp(lambda * ($0 - t0) / span) }
            let error = rmse(f, points)
            if best == nil || error < best!.error { best = (error, f) }
        }
        return best?.f
    }

    /// The Theil–Sen slopes' lower and upper quartiles, bytes/s.
    static func slopeQuartiles(_ points: [Point]) -> (Double, Double) {
        let slopes = pairwiseSlopes(points)
        guard !slopes.isEmpty else { return (0, 0) }
        return (slopes[slopes.count / 4], slopes[slopes.count * 3 / 4])
    }

    /// The Theil–Sen slope (median pairwise slope), bytes/s.
    public static func theilSen(_ points: [Point]) -> Double {
        let slopes = pairwiseSlopes(points)
        return slopes.isEmpty ? 0 : slopes[slopes.count / 2]
    }

    /// The slopes between every pair of at most 48 evenly chosen points, sorted.
    static func pairwiseSlopes(_ points: [Point]) -> [Double] {
        let stride = max(1, points.count / 48)
        let chosen = Swift.stride(from: 0, to: points.count, by: stride).map { points[$0] }
        var slopes: [Double] = []
        slopes.reserveCapacity(chosen.count * chosen.count / 2)
        for i in 0..<chosen.count {
            for j in (i + 1)..<chosen.count where chosen[j].t > chosen[i].t {
                slopes.append((chosen[j].y - chosen[i].y) / (chosen[j].t - chosen[i].t))
            }
        }
        return slopes.sorted()
    }
}
