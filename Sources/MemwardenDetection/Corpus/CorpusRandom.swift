#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// SplitMix64: the corpus must be byte-identical for a seed on every machine
/// and Swift version, which the standard library's generators do not promise.
struct CorpusRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// A generator for one trace, independent of how many draws other traces
    /// made: adding a class or a variant leaves every other trace unchanged.
    init(seed: UInt64, stream: String, variant: Int) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in stream.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        var mixer = CorpusRandom(seed: seed ^ hash &+ UInt64(variant) &* 0x9E37_79B9_7F4A_7C15)
        state = mixer.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// [0, 1) with 53 random bits.
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }

    /// For quantities that span decades (leak rates, periods): every decade equally likely.
    mutating func logUniform(_ low: Double, _ high: Double) -> Double { exp(uniform(log(low), log(high))) }

    mutating func integer(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u = max(unit(), 1e-300)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * unit())
    }

    mutating func pick<T>(_ values: [T]) -> T { values[integer(0...(values.count - 1))] }

    mutating func hex(_ digits: Int) -> String {
        let alphabet = Array("0123456789abcdef")
        return String((0..<digits).map { _ in alphabet[Int(next() & 15)] })
    }

    mutating func uuid() -> String {
        "\(hex(8))-\(hex(4))-4\(hex(3))-\(["8", "9", "a", "b"][Int(next() & 3)])\(hex(3))-\(hex(12))"
    }
}

/// Memory that wanders around zero and comes back (Ornstein–Uhlenbeck),
/// bounded at three sigma: allocator and runtime noise is correlated over
/// seconds to minutes, not white, and a white ±MiB per step would emit a line
/// on every step, which no real process does.
struct Wander {
    var value = 0.0
    let sigma: Double
    let tau: Double

    init(sigma: Double, tau: Double) {
        self.sigma = sigma
        self.tau = tau
    }

    mutating func next(_ dt: Double, _ random: inout CorpusRandom) -> Double {
        let a = min(1, dt / tau)
        value += -value * a + sigma * (2 * a).squareRoot() * random.normal()
        value = min(3 * sigma, max(-3 * sigma, value))
        return value
    }
}
