import MemwardenDetection
import MemwardenModel
import Testing

/// Processes that exec, exit, share and change cgroups; the events' fields.
struct ReplayLifecycleTests {
    /// 2 MiB/s from 100 MiB: under a 1 GiB limit, urgent (the limit within half the
    /// time it has grown) after about six minutes.
    static let leak: @Sendable (Double) -> MemoryShape = { t in MemoryShape(anon: 100 * mib + 2 * mib * t) }
    static let limit = 1 * gib

    @Test func execEndsTheSuspicionAndStartsOver() throws {
        var trace = TraceBuilder()
        trace.process(pid: 9, comm: "old", duration: 400, eventInterval: 0.1, limit: Self.limit, shape: Self.leak)
        // the new program sits still at whatever the old one left
        trace.process(
            pid: 9, comm: "new", start: 400.1, duration: 900, eventInterval: 0.5, limit: Self.limit, execAtStart: true
        ) { _ in
            MemoryShape(anon: 300 * mib)
        }
        let events = try trace.replay()
        let suspected = events.suspected(pid: 9)
        let cleared = events.cleared(pid: 9)
        #expect(suspected.count == 1 && suspected.first?.comm == "old", "\(events.summary)")
        let clear = try #require(cleared.first, "\(events.summary)")
        #expect(clear.reasons == ["exec"])
        #expect(clear.comm == "old", "the cleared event names the program that was suspected")
        #expect(abs(clear.t - 400.1) < 0.01)
        #expect(cleared.count == 1)
    }

    @Test func exitEndsProcessAndCgroupSuspicions() throws {
        var trace = TraceBuilder()
        trace.process(
            pid: 11, cgroup: "/job.scope", duration: 400, eventInterval: 0.1, limit: Self.limit, exitAtEnd: true,
            shape: Self.leak)
        let events = try trace.replay()
        let process = try #require(events.cleared(pid: 11).first, "\(events.summary)")
        #expect(process.reasons == ["process_exited"])
        let cgroup = try #require(events.first { $0.kind == .cleared && $0.scope == .cgroup }, "\(events.summary)")
        #expect(cgroup.reasons == ["cgroup_empty"] && cgroup.cgroup == "/job.scope")
        #expect(events.filter { $0.kind == .suspected }.count == events.filter { $0.kind == .cleared }.count)
    }

    @Test func processesComeAndGoInASharedCgroup() throws {
        var trace = TraceBuilder()
        let cgroup = "/web.slice"
        trace.process(pid: 1, cgroup: cgroup, duration: 1800, eventInterval: 0.5) { _ in MemoryShape(anon: 200 * mib) }
        // workers replaced every 60 s, each the same size: the cgroup holds steady
        for i in 0..<28 {
            trace.process(
                pid: 100 + Int32(i), comm: "worker", cgroup: cgroup, start: 10 + Double(i) * 60, duration: 59,
                eventInterval: 0.5, seed: UInt64(i), exitAtEnd: true
            ) { _ in MemoryShape(anon: 80 * mib, file: 5 * mib) }
        }
        let events = try trace.replay()
        #expect(events.anySuspected.isEmpty, "\(events.summary)")
    }

    @Test func aProcessMovingToAnotherCgroupTakesItsMemoryWithIt() throws {
        var trace = TraceBuilder()
        trace.process(pid: 5, cgroup: "/a", duration: 600, eventInterval: 0.5) { _ in MemoryShape(anon: 500 * mib) }
        trace.process(pid: 5, cgroup: "/b", start: 600.5, duration: 1200, eventInterval: 0.5) { _ in
            MemoryShape(anon: 500 * mib)
        }
        trace.process(pid: 6, cgroup: "/b", duration: 1800, eventInterval: 0.5) { _ in MemoryShape(anon: 50 * mib) }
        let events = try trace.replay()
        // /a empties (no suspicion to end), /b takes one step up: neither is a leak
        #expect(events.isEmpty, "\(events.summary)")
    }

    @Test func forecastUsesTheWholeCgroup() throws {
        var trace = TraceBuilder()
        let limit = 3 * gib
        trace.process(pid: 20, cgroup: "/pod", duration: 1200, eventInterval: 0.5, limit: limit) { _ in
            MemoryShape(anon: 1 * gib, file: 0)
        }
        let rate = 2 * mib
        trace.process(pid: 21, cgroup: "/pod", duration: 1200, eventInterval: 0.1, limit: limit) { t in
            MemoryShape(anon: 200 * mib + rate * t, file: 0)
        }
        let events = try trace.replay()
        let first = try #require(events.suspected(pid: 21).first, "\(events.summary)")
        let used = 1 * gib + 200 * mib + rate * first.t
        let truth = (limit - used) / rate
        let forecast = try #require(first.secondsToLimit)
        #expect(abs(forecast - truth) <= 0.2 * truth, "forecast \(forecast), true \(truth)")
        #expect(events.suspected(pid: 20).isEmpty)
    }

    @Test func eventsAreJSONLinesWithTheDocumentedFields() throws {
        var trace = TraceBuilder()
        trace.process(pid: 30, comm: "leaky \"one\"", cgroup: "/c", duration: 400, eventInterval: 0.1, limit: Self.limit,
                      exitAtEnd: true, shape: Self.leak)
        let events = try trace.replay()
        let suspected = try #require(events.suspected(pid: 30).first)
        let epoch: UInt64 = 1_700_000_000_000_000_000
        let line = suspected.jsonLine(epochNanoseconds: epoch)
        #expect(line.hasPrefix(#"{"type":"leak.suspected","time":"#))
        let wall = epoch + UInt64(suspected.timeNanoseconds)
        #expect(line.contains(#""time":"\#(WallClock.rfc3339(epochNanoseconds: wall))""#))
        #expect(line.contains(#""time":"2023-11-14T22:"#))
        for field in [
            #""scope":"process""#, #""pid":30"#, #""comm":"leaky \"one\"""#, #""cgroup":"/c""#, #""detectors":["#,
            #""confidence":"#, #""growth_bytes_per_second":"#, #""seconds_to_limit":"#, #""limit":1073741824"#,
            #""reasons":["#, #""seconds_to_limit_low":"#, #""seconds_to_limit_high":"#, #""forecast_model":"#,
        ] {
            #expect(line.contains(field), "\(field) in \(line)")
        }
        let cgroupLine = try #require(events.suspected(cgroup: "/c").first).jsonLine(epochNanoseconds: 0)
        #expect(cgroupLine.contains(#""scope":"cgroup","pid":null,"comm":null,"cgroup":"/c""#), "\(cgroupLine)")
        let cleared = try #require(events.cleared(pid: 30).first).jsonLine(epochNanoseconds: 0)
        #expect(cleared.hasPrefix(#"{"type":"leak.cleared","time":"#))
        #expect(cleared.contains(#""pid":30,"comm":"leaky \"one\"","cgroup":"/c","reasons":["process_exited"]"#))
        #expect(cleared.contains(#""suspected_seconds":"#))
    }

    @Test func replayIsDeterministic() throws {
        var trace = TraceBuilder()
        // a leak under a sawtooth, urgent before its 700 MiB limit
        trace.process(pid: 40, duration: 1200, eventInterval: 0.2, limit: 700 * mib) { t in
            MemoryShape(anon: 200 * mib + 20 * mib * t / 60 + 100 * mib * t.truncatingRemainder(dividingBy: 20) / 20)
        }
        let first = try trace.replay()
        let second = try trace.replay()
        #expect(!first.isEmpty)
        #expect(first == second)
    }

    @Test func onlyVerdictChangesReachTheAssessor() throws {
        var trace = TraceBuilder()
        trace.process(pid: 50, duration: 600, eventInterval: 0.1, shape: Self.leak)
        let reader = TraceReader(bytes: Array(trace.text.utf8), name: "t")
        var replay = TraceReplay()
        nonisolated(unsafe) var changes: [VerdictChange] = []
        replay.onVerdict = { changes.append($0) }
        let summary = try replay.run(reader) { _ in }
        #expect(summary.verdictChanges == changes.count)
        #expect(!changes.isEmpty && changes.count * 10 < summary.samples)
        #expect(changes.contains { $0.scope == .process && $0.verdict.hasFired(.trend) })
        #expect(changes.first?.jsonLine().hasPrefix(#"{"type":"verdict","t":"#) == true)
    }
}
