/// Exponential backoff with jitter: every node's agent reconnects after an API server restart
/// (or retries a receiver that was down), and without jitter they would all come back in the
/// same instant, again and again.
public struct Backoff: Sendable, Hashable {
    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double
    /// The share of each delay that is random: 0.5 waits between half and all of the base.
    public var jitter: Double
    /// Failures since the last success.
    public private(set) var attempts = 0

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30), multiplier: Double = 2, jitter: Double = 0.5) {
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.multiplier = max(1, multiplier)
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The base delay of the next attempt, before jitter.
    public var base: Duration {
        let seconds = min(initial.secondsDouble * power(multiplier, attempts), maximum.secondsDouble)
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// The delay before the next attempt, and one more failure counted.
    public mutating func next(using generator: inout some RandomNumberGenerator) -> Duration {
        let base = base.secondsDouble
        // 53 random bits as a fraction in [0, 1). Not Double.random(in:using:): its rejection
        // sampling never ends with a generator that repeats one value (the tests' fixed ones).
        let fraction = Double(generator.next() >> 11) / Double(UInt64(1) << 53)
        let delay = base * (1 - jitter * fraction)
        attempts += 1
        return .nanoseconds(Int64(delay * 1e9))
    }

    public mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    public mutating func reset() { attempts = 0 }

    /// The delay before retry `n` (0 for the first), for a caller that counts
    /// its own attempts (the sinks' queues): the base for `n` less up to
    /// `jitter` of it, `random` in 0...1 choosing where in that range.
    public func delay(retry n: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let base = min(initial.secondsDouble * power(multiplier, max(n, 0)), maximum.secondsDouble)
        return .nanoseconds(Int64(base * (1 - jitter * (1 - min(max(random, 0), 1))) * 1e9))
    }
}

extension Duration {
    /// Seconds as a Double (Duration has no such accessor).
    package var secondsDouble: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

private func power(_ base: Double, _ exponent: Int) -> Double {
    // Capped: past 64 doublings any sane maximum is reached.
    var result = 1.0
    for _ in 0..<min(exponent, 64) { result *= base }
    return result
}
