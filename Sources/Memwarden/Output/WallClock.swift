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
        var seconds = time_t(epochNanoseconds / 1_000_000_000)
        let millis = Int((epochNanoseconds / 1_000_000) % 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}
