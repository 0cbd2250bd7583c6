#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Turns the kernel's CLOCK_MONOTONIC timestamps into wall-clock time, and
/// formats RFC 3339 timestamps (UTC, milliseconds) without Foundation.
public struct WallClock: Sendable {
    /// realtime - monotonic, in nanoseconds, at construction.
    public let offset: Int64

    public init() {
        offset = Int64(bitPattern: realtimeNanoseconds() &- monotonicNanoseconds())
    }

    public init(offset: Int64) {
        self.offset = offset
    }

    public func realtime(fromMonotonic nanoseconds: UInt64) -> UInt64 {
        UInt64(bitPattern: Int64(bitPattern: nanoseconds) &+ offset)
    }

    public func rfc3339(monotonic nanoseconds: UInt64) -> String {
        Self.rfc3339(epochNanoseconds: realtime(fromMonotonic: nanoseconds))
    }

    /// e.g. 2026-11-22T01:02:03.456Z
    public static func rfc3339(epochNanoseconds: UInt64) -> String {
        secondPrefix(epochSeconds: epochNanoseconds / 1_000_000_000) + millisecondSuffix(epochNanoseconds)
    }

    /// "2026-11-22T01:02:03." for a second since the epoch.
    package static func secondPrefix(epochSeconds: UInt64) -> String {
        var seconds = time_t(epochSeconds)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
    }

    /// "456Z" for the milliseconds of a time.
    package static func millisecondSuffix(_ epochNanoseconds: UInt64) -> String {
        let millis = Int((epochNanoseconds / 1_000_000) % 1000)
        return (millis < 10 ? "00" : millis < 100 ? "0" : "") + String(millis) + "Z"
    }
}

/// Formats RFC 3339 timestamps for a stream of nearby times: the date and
/// time of day are formatted once per second, the milliseconds per call.
public struct TimestampCache: Sendable {
    public let clock: WallClock
    private var second: UInt64 = .max
    private var prefix = ""

    public init(clock: WallClock) {
        self.clock = clock
    }

    public mutating func rfc3339(monotonic nanoseconds: UInt64) -> String {
        let epoch = clock.realtime(fromMonotonic: nanoseconds)
        if epoch / 1_000_000_000 != second {
            second = epoch / 1_000_000_000
            prefix = WallClock.secondPrefix(epochSeconds: second)
        }
        return prefix + WallClock.millisecondSuffix(epoch)
    }
}
