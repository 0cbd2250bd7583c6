import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif
import MemwardenDetection
import MemwardenIdentity
import MemwardenModel
import MemwardenOutput

/// `memwarden replay FILE`: a recorded (or generated) trace through exactly the
/// kernel's detector code, printing the events `run` would print.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a trace through the kernel's detectors and print leak events as JSON Lines.",
        discussion: """
            Events are leak.suspected and leak.cleared (docs/detectors.md). Each carries "t", the trace's \
            clock, and "time", t after --start-epoch (default: the Unix epoch, so output is reproducible), \
            and the identity its cgroup path gives (runtime, container_id, pod_uid, qos, systemd_unit; \
            docs/identity.md). \
            A target whose samples carry no limit is judged against --node-memory, as the live agent \
            judges it against the node's memory; without it, such a target has no forecast and the fast \
            path takes its horizon as unknown. \
            A bad line stops replay with exit 1 and a message naming the file, the line and the field; \
            with --skip-invalid bad lines are counted, reported at the end, and skipped.
            """)

    @Argument(help: "The trace (JSON Lines, one sample a line); '-' reads standard input.")
    var file: String

    @Flag(help: "Skip bad lines, count them, and report the count at the end.")
    var skipInvalid = false

    @Flag(help: "Also print every detector verdict change (\"type\":\"verdict\"), as the kernel would send it.")
    var verdicts = false

    @Option(help: "Wall-clock time of t = 0, in seconds since the Unix epoch, for the events' \"time\".")
    var startEpoch: Double = 0

    @Option(help: "Detector thresholds: standard, or accelerated (time compressed, for leaksim's short scenarios).")
    var detectorProfile: DetectorConfiguration.Profile = .standard

    @Option(help: NodeMemoryOption.help)
    var nodeMemory: String?

    func validate() throws {
        guard startEpoch >= 0, startEpoch.isFinite else { throw ValidationError("--start-epoch must be 0 or more") }
        _ = try nodeMemoryBytes()
    }

    func nodeMemoryBytes() throws -> UInt64? { try NodeMemoryOption.bytes(nodeMemory) }

    func run() throws {
        let epoch = UInt64(startEpoch * 1e9)
        let output = BufferedLines(writer: .standardOutput)
        var replay = TraceReplay()
        replay.configuration = DetectorConfiguration(profile: detectorProfile)
        replay.confirmation = ConfirmationSettings(profile: detectorProfile)
        replay.skipInvalid = skipInvalid
        replay.nodeMemory = try nodeMemoryBytes()
        if verdicts { replay.onVerdict = { output.append($0.jsonLine()) } }
        let summary: TraceReplay.Summary
        do {
            let reader = try TraceReader(path: file)
            // the trace names cgroups by path: each event carries what the path says
            // about its owner (container, pod, systemd unit), parsed once per path
            var identities = IdentityResolver()
            summary = try replay.run(reader) { event in
                let identity = identities.identity(cgroupPath: event.cgroup)
                output.append(AgentEvent(leak: event, epochNanoseconds: epoch, node: nil, identity: identity).jsonLine())
            }
            try output.flush()
        } catch let error as TraceError {
            try? output.flush()
            fail("\(error)")
        } catch {
            fail("\(error)")
        }
        if skipInvalid && summary.skipped > 0 {
            var message = "skipped \(summary.skipped) invalid line\(summary.skipped == 1 ? "" : "s") of \(file)"
            if let first = summary.firstError { message += " (first: \(first))" }
            printError(message)
        }
    }

    private func fail(_ message: String) -> Never {
        printError(message)
        Glibc.exit(1)
    }

    private func printError(_ message: String) {
        let line = "memwarden: \(message)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }
}

/// Collects output lines and writes them in batches (a write per line would
/// cost more than replaying the line).
final class BufferedLines {
    private let writer: LineWriter
    private var lines: [String] = []

    init(writer: LineWriter) {
        self.writer = writer
        lines.reserveCapacity(256)
    }

    func append(_ line: String) {
        lines.append(line)
        if lines.count >= 256 { try? flush() }
    }

    func flush() throws {
        guard !lines.isEmpty else { return }
        defer { lines.removeAll(keepingCapacity: true) }
        try writer.write(lines: lines)
    }
}

extension DetectorConfiguration.Profile: ExpressibleByArgument {}
