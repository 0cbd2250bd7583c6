/// The trace's clock, one for the trace writer, live detection and replay: `t` counts from an
/// origin rounded down to a whole millisecond and is truncated to the microsecond, so whole
/// milliseconds of `t` are exactly the kernel's milliseconds minus a constant, and replaying a
/// trace feeds the detectors the very times the kernel fed them. Records from before the origin
/// are at 0, never negative.
public struct TraceClock: Sendable, Hashable {
    /// Monotonic nanoseconds at which `t` is 0.
    public let origin: UInt64

    public init(origin: UInt64) {
        self.origin = origin / 1_000_000 * 1_000_000
    }

    /// Nanoseconds since the origin, whole microseconds.
    public func nanoseconds(_ monotonic: UInt64) -> Int64 {
        monotonic > origin ? Int64((monotonic - origin) / 1_000) * 1_000 : 0
    }

    /// Seconds since the origin, whole microseconds.
    public func seconds(_ monotonic: UInt64) -> Double {
        monotonic > origin ? Double((monotonic - origin) / 1_000) / 1e6 : 0
    }
}
