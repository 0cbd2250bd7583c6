import Foundation
import Logging
import MemwardenDetection
import MemwardenIdentity
import MemwardenModel
import MemwardenOutput
import MemwardenResponse
import MemwardenTestSupport
import Synchronization
import Testing

/// Every event `run` and `replay` can print validates against
/// schema/event.schema.json, checked by a real JSON Schema 2020-12 validator
/// (python3 jsonschema through scripts/validate-events.py).
@Suite(.enabled(if: OutputAccess.enabled(.jsonschema), OutputAccess.comment(.jsonschema)))
struct EventSchemaTests {
    static let eventSchema = repositoryFile("schema/event.schema.json")
    static let traceSchema = repositoryFile("schema/trace-stream.schema.json")

    /// Validates lines; returns the validator's complaints (empty: all valid).
    static func problems(_ lines: [String], schema: String = eventSchema) throws -> [String] {
        guard let python = OutputAccess.path(.jsonschema) else { throw TestFailure("python3 is not installed") }
        let result = try run(
            python, [repositoryFile("scripts/validate-events.py"), schema], input: lines.joined(separator: "\n") + "\n")
        guard result.status == 0 || result.status == 1 else {
            throw TestFailure("validate-events.py failed (\(result.status)): \(result.stderr)")
        }
        let output = result.stdout.split(separator: "\n").map(String.init)
        // every line was looked at: one "ok" or at least one "invalid" per input line
        let seen = Set(output.compactMap { $0.split(separator: " ").dropFirst().first.map { String($0.prefix { $0.isNumber }) } })
        guard seen.count == lines.count else {
            throw TestFailure("the validator checked \(seen.count) of \(lines.count) lines: \(result.stdout)")
        }
        return output.filter { $0.hasPrefix("invalid") }
    }

    @Test("each event type validates", arguments: AgentEvent.EventType.allCases)
    func eventTypeValidates(type: AgentEvent.EventType) throws {
        let variants = [
            SampleEvents.make(type),
            SampleEvents.make(type, target: SampleEvents.processTarget(SampleEvents.unitIdentity), node: nil),
            SampleEvents.make(type, target: SampleEvents.cgroupTarget(TargetIdentity(cgroup: ""))),
        ]
        let lines = variants.map { $0.jsonLine() }
        let problems = try Self.problems(lines)
        #expect(problems.isEmpty, "\(type.rawValue): \(problems) in \(lines)")
        let object = try jsonObject(lines[0])
        #expect(object["type"] as? String == type.rawValue)
    }

    @Test("a leak event decided while samples were being lost says its forecast is of low confidence, and validates")
    func degradedLeakEventsValidate() throws {
        var event = SampleEvents.make(.leakUpdated)
        guard case .leak(var details) = event.details else { throw TestFailure("not a leak event") }
        details.samplesLostRatio = 0.0731
        event.details = .leak(details)
        let line = event.jsonLine()
        let object = try jsonObject(line)
        #expect(object["forecast_confidence"] as? String == "low")
        #expect(object["samples_lost_ratio"] as? Double == 0.0731)
        #expect(try Self.problems([line]).isEmpty, "\(line)")
        // one without the other is not a valid event
        let half = line.replacingOccurrences(of: #","forecast_confidence":"low""#, with: "")
        #expect(half != line)
        #expect(try Self.problems([half]).count >= 1, "\(half)")
    }

    @Test func leakEventsFromTheAssessorValidate() throws {
        let suspected = LeakEvent(
            kind: .suspected, timeNanoseconds: 9_988_000_000, scope: .cgroup, pid: nil, comm: nil, cgroup: "/system.slice/a.service",
            detectors: ["multi_factor"], confidence: 0.5, growthBytesPerSecond: -3, secondsToLimit: nil, limit: nil,
            reasons: ["fast_growth"])
        var cleared = suspected
        cleared.kind = .cleared
        cleared.reasons = ["growth_stopped"]
        cleared.suspectedSeconds = 2.5
        // as `run` and `replay` print them (LeakEvent.jsonLine), and with a node and an identity
        let lines =
            [suspected, cleared].map { $0.jsonLine(epochNanoseconds: SampleEvents.time) }
            + [suspected, cleared].map {
                AgentEvent(leak: $0, epochNanoseconds: SampleEvents.time, node: "n", identity: SampleEvents.unitIdentity).jsonLine()
            }
        #expect(try Self.problems(lines).isEmpty, "\(lines)")
    }

    /// A growth cap's events as the responder makes them (start, raise, a
    /// restore with how far it let the cgroup grow), on a cgroupfs-shaped
    /// temp tree holding a leak of anonymous memory.
    @Test func growthCapEventsValidate() throws {
        let root = FileManager.default.temporaryDirectory.path + "/memwarden-schema-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let group = root + "/kubepods/pod1/leaker"
        try FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: true)
        let usage = 330 << 20
        for (file, text) in [
            ("cgroup.controllers", "memory\n"), ("memory.current", "\(usage)\n"), ("memory.max", "\(384 << 20)\n"),
            ("memory.high", "max\n"), ("memory.stat", "anon \(usage)\nactive_file 0\ninactive_file 0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        ] {
            try text.write(toFile: group + "/" + file, atomically: false, encoding: .utf8)
        }
        let now = Mutex<UInt64>(1_000_000_000)
        var responder = Responder(
            configuration: ResponderConfiguration(
                cgroupRoot: root, version: .v2, stateFile: ResponseStateFile(path: root + "/state.json"), pageSize: 4096,
                node: "node-a"),
            clock: {
                let t = now.withLock { $0 }
                return ClockReading(monotonicNanoseconds: t, epochNanoseconds: SampleEvents.time + t, t: Double(t) / 1e9)
            }, logger: Logger(label: "schema-test"))
        let policy = TargetPolicy(
            rule: "leaky", mode: .throttle, throttle: ThrottleSettings(fromTier: .warning, minSuspected: .zero))
        let target = EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: "/kubepods/pod1/leaker"))
        var events = responder.leakSuspected(target, policy: policy, verdict: LeakVerdict(confidence: 0.9))
        events += responder.budgetTier(.high, target: target, policy: policy)
        events += responder.tick()
        // the leak breaches the cap: the kernel counts it
        try "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n".write(toFile: group + "/memory.events", atomically: false, encoding: .utf8)
        now.withLock { $0 += 6_000_000_000 }
        events += responder.tick()
        events += responder.restoreAll()
        let reasons = events.compactMap { event -> String? in
            guard case .response(let details) = event.details, details.growthCap != nil else { return nil }
            return details.reason
        }
        #expect(reasons == ["growth_cap", "growth_cap_raise", "agent_stopping"])
        let lines = events.map { $0.jsonLine() }
        #expect(try Self.problems(lines).isEmpty, "\(lines)")
    }

    /// The validator is not a rubber stamp: broken events are caught.
    @Test(
        "the schema rejects malformed events",
        arguments: [
            #"{"type":"leak.sneezed","time":"2026-11-22T01:02:03.456Z","severity":"info"}"#,
            #"{"type":"agent.started","time":"2026-11-22T01:02:03Z","severity":"info"}"#,
            #"{"type":"agent.started","time":"2026-11-22T01:02:03.456Z","severity":"loud"}"#,
            #"{"type":"agent.events_lost","time":"2026-11-22T01:02:03.456Z","severity":"warning"}"#,
            #"{"type":"leak.suspected","time":"2026-11-22T01:02:03.456Z","severity":"warning","scope":"process","pid":1,"comm":"a","cgroup":"/","detectors":["trend"],"confidence":1.5,"growth_bytes_per_second":1,"reasons":[]}"#,
            #"{"type":"budget.high","time":"2026-11-22T01:02:03.456Z","severity":"warning","scope":"cgroup","cgroup":"/","tier":"high","rule":"r","budget_bytes":-1,"usage_bytes":1,"budget_share":0.5}"#,
            #"{"type":"policy.reloaded","time":"2026-11-22T01:02:03.456Z","severity":"info","file":"p","surprise":true}"#,
            #"{"type":"response.throttle","time":"2026-11-22T01:02:03.456Z","severity":"warning","scope":"cgroup","cgroup":"/a","mode":"throttle","rule":"r","dry_run":false,"reason":"growth_cap","growth_cap":{"rate_bytes_per_second":-1,"allowance_bytes":0}}"#,
            #"{"type":"response.throttle","time":"2026-11-22T01:02:03.456Z","severity":"warning","scope":"cgroup","cgroup":"/a","mode":"throttle","rule":"r","dry_run":false,"reason":"growth_cap","growth_cap":{"allowance_bytes":0}}"#,
        ])
    func rejectsMalformed(line: String) throws {
        #expect(try Self.problems([line]).count >= 1)
    }

    /// The trace stream of `run` (samples, exec/exit, cgroup aggregates,
    /// stats), made by the real formatter, validates against its schema.
    @Test func traceStreamLinesValidate() throws {
        var formatter = SampleFormatter(clock: WallClock(offset: 1_700_000_000_000_000_000), origin: 1_000_000_000)
        var resolver = RecordResolver(hierarchy: nil)
        let memory = MemoryCounters(anon: 90112, file: 999_424, shmem: 0, swap: 4096)
        var lines: [String] = []
        for kind in [ProcessRecord.Kind.sample, .exec, .exit] {
            let record = ProcessRecord(
                kind: kind, pid: 5120, monotonicNanoseconds: 2_000_000_000, cgroupID: 2840, memory: memory,
                virtualSize: 2_433_024, limit: .bytes(512 << 20), comm: "python3")
            lines.append(formatter.eventLine(record, cgroup: resolver.resolve(.process(record)).cgroup))
        }
        for usage in [UInt64?.some(1_011_122_176), nil] {
            let record = CgroupRecord(
                cgroupID: 2840, monotonicNanoseconds: 2_500_000_000, processCount: 3, memory: memory, usage: usage,
                limit: .unlimited)
            lines.append(formatter.eventLine(record, cgroup: resolver.resolve(.cgroup(record)).cgroup))
        }
        var counters = KernelCounters()
        counters.events = 61901
        counters.coalesced = 59458
        lines.append(formatter.statsLine(counters, at: 6_000_000_000))
        lines.append(
            formatter.statsLine(
                counters, confirmation: ConfirmationStatistics(targets: 3, suspected: 1, historyBytes: 22_500, evicted: 2),
                at: 7_000_000_000))
        #expect(lines.last!.contains(#""confirmation_targets":3,"confirmation_suspected":1,"confirmation_history_bytes":22500,"confirmation_evictions":2"#))
        #expect(try Self.problems(lines, schema: Self.traceSchema).isEmpty, "\(lines)")
        // and an agent event is not a trace line
        #expect(try Self.problems([SampleEvents.make(.agentStarted).jsonLine()], schema: Self.traceSchema).count >= 1)
    }

    /// Every example line in docs/events.md validates against the schema of its kind.
    @Test func documentedExamplesValidate() throws {
        let text = try String(contentsOfFile: repositoryFile("docs/events.md"), encoding: .utf8)
        var events: [String] = []
        var trace: [String] = []
        var inJSON = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inJSON = line == "```json"
                continue
            }
            guard inJSON, line.hasPrefix("{") else { continue }
            let object = try jsonObject(String(line))
            let type = object["type"] as? String ?? ""
            if ["sample", "process.exec", "process.exit", "cgroup_sample", "stats"].contains(type) {
                trace.append(String(line))
            } else {
                events.append(String(line))
            }
        }
        let documentedTypes = Set(try events.map { try jsonObject($0)["type"] as? String ?? "" })
        #expect(documentedTypes == Set(AgentEvent.EventType.allCases.map(\.rawValue)), "docs/events.md shows an example of every type")
        #expect(trace.count >= 5)
        #expect(try Self.problems(events).isEmpty)
        #expect(try Self.problems(trace, schema: Self.traceSchema).isEmpty)
    }
}
