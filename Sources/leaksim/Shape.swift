/// A memory level in MiB as a function of the seconds since the scenario started. Pure, so a
/// scenario's timeline is exactly what its documentation says.
enum Shape {
    /// base + rate·t, up to `cap`.
    case linear(base: Double, rate: Double, cap: Double = .infinity)
    /// base, then `step` more every `period` seconds (first step at t = period), up to `cap`.
    case staircase(base: Double, step: Double, period: Double, cap: Double = .infinity)
    /// Rises linearly by `amplitude` over each `period`, then drops at once (a collector running);
    /// the floor rises by `floorRise` MiB each cycle (0: a healthy sawtooth).
    case sawtooth(base: Double, amplitude: Double, period: Double, floorRise: Double, cap: Double = .infinity)
    /// base + rate·t for the first `seconds`, flat after.
    case warmup(base: Double, rate: Double, seconds: Double)
    /// base, and base + step from `at` seconds on.
    case step(base: Double, step: Double, at: Double)
    /// base + spike for the first `hold` seconds, base after.
    case spike(base: Double, spike: Double, hold: Double)
    /// base, with base + spike for `width` seconds at the start of every `period` after the first.
    case periodic(base: Double, spike: Double, period: Double, width: Double)

    func mebibytes(at t: Double) -> Double {
        switch self {
        case .linear(let base, let rate, let cap):
            return min(base + rate * t, cap)
        case .staircase(let base, let step, let period, let cap):
            return min(base + step * (t / period).rounded(.down), cap)
        case .sawtooth(let base, let amplitude, let period, let floorRise, let cap):
            let cycles = (t / period).rounded(.down)
            let phase = t / period - cycles
            return min(base + floorRise * cycles + amplitude * phase, cap)
        case .warmup(let base, let rate, let seconds):
            return base + rate * min(t, seconds)
        case .step(let base, let step, let at):
            return t < at ? base : base + step
        case .spike(let base, let spike, let hold):
            return t < hold ? base + spike : base
        case .periodic(let base, let spike, let period, let width):
            let phase = t - period * (t / period).rounded(.down)
            return t >= period && phase < width ? base + spike : base
        }
    }
}
