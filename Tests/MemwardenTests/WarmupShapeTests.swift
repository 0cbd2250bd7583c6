import Testing

@testable import MemwardenDetection
@testable import MemwardenModel

/// Warm-ups under the standard profile: a heap or a pool filling to its
/// working size at start, then flat for twenty minutes. One that levels off
/// within about a minute must never be called a leak; a longer linear ramp is
/// a leak's twin while it lasts, and must be cleared soon after it levels off.
struct WarmupShapeTests {
    struct Warmup: CustomStringConvertible, Sendable {
        var seconds: Double
        var mebibytes: Double
        var description: String { "\(Int(mebibytes)) MiB over \(Int(seconds)) s" }

        func shape(_ t: Double) -> MemoryShape {
            MemoryShape(anon: 100 * mib + mebibytes * mib * min(t, seconds) / seconds)
        }
    }

    static func replay(_ warmup: Warmup) throws -> [LeakEvent] {
        var trace = TraceBuilder()
        _ = trace.process(pid: 42, duration: 1200, eventInterval: 0.05, noise: 1 * mib, limit: 1 * gib, shape: warmup.shape)
        return try trace.replay()
    }

    @Test(arguments: [
        Warmup(seconds: 30, mebibytes: 100), Warmup(seconds: 45, mebibytes: 200), Warmup(seconds: 60, mebibytes: 300),
        Warmup(seconds: 60, mebibytes: 100),
    ])
    func aWarmupThatLevelsOffWithinAMinuteIsNotALeak(_ warmup: Warmup) throws {
        let events = try Self.replay(warmup)
        #expect(events.anySuspected.isEmpty, "\(warmup): \(events.summary)")
    }

    @Test(arguments: [Warmup(seconds: 90, mebibytes: 300), Warmup(seconds: 120, mebibytes: 400)])
    func aLongerRampIsClearedSoonAfterItLevelsOff(_ warmup: Warmup) throws {
        let events = try Self.replay(warmup).filter { $0.scope == .process }
        // suspected or not while it ramps, nothing is suspected two minutes after it stopped
        #expect(events.last?.kind != .suspected, "\(warmup): still suspected at the end: \(events.summary)")
        let lastSuspicion = events.last { $0.kind == .suspected }
        if let lastSuspicion {
            let cleared = try #require(events.last { $0.kind == .cleared }, "\(warmup): never cleared: \(events.summary)")
            #expect(cleared.t > lastSuspicion.t)
            #expect(cleared.t <= warmup.seconds + 120, "\(warmup): cleared at \(cleared.t) s: \(events.summary)")
        }
    }
}
