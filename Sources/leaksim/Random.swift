/// xorshift64*: tiny, fast, and the same sequence for the same --seed on every machine, so a noisy
/// run can be repeated exactly.
struct XorShift {
    private var state: UInt64

    init(seed: UInt64) {
        // One splitmix64 step spreads small seeds (0, 1, 2…) over the state; xorshift must not start at 0.
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        state = z == 0 ? 0x2545_F491_4F6C_DD1D : z
    }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// Uniform in [-1, 1).
    mutating func signedUnit() -> Double {
        Double(next() >> 11) / Double(1 << 52) - 1
    }
}

/// Noise on a memory level: a new offset in [-amplitude, +amplitude] MiB every `interval` seconds,
/// held in between, so the process allocates and frees small chunks the way a busy service does.
struct Jitter {
    let amplitude: Double
    let interval: Double
    private var random: XorShift
    private var slot = -1
    private var offset = 0.0

    static var none: Jitter { Jitter(amplitude: 0, seed: 0) }

    init(amplitude: Double, seed: UInt64, interval: Double = 0.5) {
        self.amplitude = amplitude
        self.interval = interval
        random = XorShift(seed: seed)
    }

    mutating func mebibytes(at elapsed: Double) -> Double {
        guard amplitude > 0 else { return 0 }
        let current = Int(elapsed / interval)
        if current != slot {
            slot = current
            offset = amplitude * random.signedUnit()
        }
        return offset
    }
}
