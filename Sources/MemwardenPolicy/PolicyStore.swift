import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// The current policy, shared by every stage that asks "what applies to this
/// target", and a Service that keeps it in step with the file: each second it
/// reads the file (through any symlinks: a Kubernetes ConfigMap mount swaps
/// its `..data` symlink to a new directory), and a changed content is
/// validated and swapped in whole. A file that does not validate, or that
/// disappears, never replaces the last good policy: it is logged, counted
/// and published as `policy.rejected`; a good one as `policy.reloaded`.
///
/// Why read the content each second rather than watch inode, mtime or the
/// `..data` target: every way the file changes (an edit in place, a rename
/// over it, a ConfigMap swap) changes what a read returns, and a read of a
/// few KiB costs less than the stat calls that would gate it; a change of
/// inode or `..data` with the same content needs no reload at all.
public final class PolicyStore: Service, Sendable {
    /// What `run` should do when the file does not exist at start.
    public enum MissingFile: Sendable {
        /// The built-in policy (the default path: no file, no opinions).
        case useBuiltIn
        /// Refuse to start (an explicit `--policy` that names nothing is a typo).
        case fail
    }

    public struct Statistics: Sendable, Hashable {
        /// Good files swapped in since start (the initial load not counted).
        public var reloads: UInt64 = 0
        /// Bad or missing files seen, each bad content counted once.
        public var rejections: UInt64 = 0
        /// Bumped on every swap: a consumer that caches resolved policies
        /// drops its cache when this changes.
        public var generation: UInt64 = 0
        /// The content in force comes from the file (false: built-in).
        public var fromFile: Bool = false
        /// FNV-1a of the content in force, hex (logs and /api name it).
        public var digest: String?
        /// The problems of the last rejected content, cleared by a good reload.
        public var lastProblems: [PolicyProblem] = []
        /// Looks at the file since start, counted once each is judged: what
        /// proves a content was seen and let stand (no event says so).
        public var polls: UInt64 = 0
    }

    public let path: String
    public let interval: Duration
    private let node: String?
    private let logger: Logger
    private let onEvent: @Sendable (AgentEvent) -> Void
    private let state: Mutex<State>

    private struct State: Sendable {
        var policy: Policy
        var statistics = Statistics()
        /// The text of the policy in force (nil: built-in).
        var text: String?
        /// Invalid content seen once: reported only if the next poll sees it
        /// again (an editor writing in place can be caught half way).
        var pendingBad: String?
        /// The invalid content already reported, not reported again.
        var rejectedText: String?
        var missingPolls = 0
        var missingReported = false
    }

    /// Loads the policy at `path` for the agent's start. An invalid file, or a
    /// missing one with `.fail`, throws: the agent must not start on a policy
    /// it cannot read. `onEvent` receives `policy.reloaded` / `policy.rejected`
    /// (it must not block: forward to the sinks' `submit`).
    public init(
        path: String = Policy.defaultPath, missingFile: MissingFile = .useBuiltIn, interval: Duration = .seconds(1),
        node: String? = nil, logger: Logger, onEvent: @escaping @Sendable (AgentEvent) -> Void = { _ in }
    ) throws(PolicyError) {
        self.path = path
        self.interval = interval
        self.node = node
        self.logger = logger
        self.onEvent = onEvent
        var state = State(policy: .builtIn)
        switch Self.read(path) {
        case .missing where missingFile == .useBuiltIn:
            logger.info("no policy file; using the built-in policy (observe only)", metadata: ["file": "\(path)"])
        case .missing(let problem), .unreadable(let problem):
            throw PolicyError(file: path, problems: [problem])
        case .text(let text):
            let policy = try PolicyLoader.parse(text, file: path)
            state.policy = policy
            state.text = text
            state.statistics.fromFile = true
            state.statistics.digest = Self.digest(text)
            logger.info(
                "policy loaded",
                metadata: ["file": "\(path)", "rules": "\(policy.rules.count)", "digest": "\(Self.digest(text))"])
        }
        self.state = Mutex(state)
    }

    public var policy: Policy { state.withLock { $0.policy } }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// The current policy's answer for one target.
    public func resolve(for identity: TargetIdentity) -> TargetPolicy {
        state.withLock { $0.policy.resolve(for: identity) }
    }

    public func run() async throws {
        let interval = interval
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                poll()
            }
        }
    }

    /// One look at the file. `run` calls it every `interval`; tests call it
    /// directly.
    func poll() {
        let observed = Self.read(path)
        // YAML is parsed outside the lock, so resolve() never waits on it;
        // only this task changes the state, so what it saw stays true
        var parsed: Result<Policy, PolicyError>?
        if case .text(let text) = observed, state.withLock({ text != $0.text && text != $0.rejectedText }) {
            do throws(PolicyError) {
                parsed = .success(try PolicyLoader.parse(text, file: path))
            } catch {
                parsed = .failure(error)
            }
        }
        var events: [AgentEvent] = []
        state.withLock { state in
            state.statistics.polls += 1
            switch observed {
            case .missing(let problem), .unreadable(let problem):
                // no file and never had one: the built-in policy stands, nothing to say
                guard state.text != nil || state.statistics.reloads > 0 || state.rejectedText != nil else { return }
                state.missingPolls += 1
                // a delete-and-recreate (some editors) is over within one poll
                guard state.missingPolls >= 2, !state.missingReported else { return }
                state.missingReported = true
                var problem = problem
                problem.message += "; keeping the last good policy (\(Self.describe(state.policy, text: state.text)))"
                events.append(reject(&state, problems: [problem]))
            case .text(let text):
                state.missingPolls = 0
                if text == state.text {
                    state.pendingBad = nil
                    // back to the content in force after a rejection or a missing file: say it is used again
                    guard state.missingReported || state.rejectedText != nil else { return }
                    state.missingReported = false
                    state.rejectedText = nil
                    state.statistics.lastProblems = []
                    logger.info("policy file is back; the policy in force is unchanged", metadata: ["file": "\(path)"])
                    events.append(event(.policyReloaded, .info, PolicyDetails(file: path, rules: state.policy.rules.count)))
                    return
                }
                guard let parsed else { return }
                switch parsed {
                case .success(let policy):
                    state.policy = policy
                    state.text = text
                    state.pendingBad = nil
                    state.rejectedText = nil
                    state.missingReported = false
                    state.statistics.reloads += 1
                    state.statistics.generation += 1
                    state.statistics.fromFile = true
                    state.statistics.digest = Self.digest(text)
                    state.statistics.lastProblems = []
                    var metadata: Logger.Metadata = [
                        "file": "\(path)", "rules": "\(policy.rules.count)", "digest": "\(Self.digest(text))",
                    ]
                    if let target = Self.configMapData(of: path) { metadata["configmap_data"] = "\(target)" }
                    logger.info("policy reloaded", metadata: metadata)
                    events.append(event(.policyReloaded, .info, PolicyDetails(file: path, rules: policy.rules.count)))
                case .failure(let error):
                    guard text == state.pendingBad else {
                        state.pendingBad = text
                        return
                    }
                    state.pendingBad = nil
                    state.rejectedText = text
                    events.append(reject(&state, problems: error.problems))
                }
            }
        }
        for event in events { onEvent(event) }
    }

    private func reject(_ state: inout State, problems: [PolicyProblem]) -> AgentEvent {
        state.statistics.rejections += 1
        state.statistics.lastProblems = problems
        logger.error(
            "policy file rejected; keeping the last good policy",
            metadata: [
                "file": "\(path)", "problems": "\(problems.count)",
                "in_force": "\(Self.describe(state.policy, text: state.text))",
            ])
        for problem in problems { logger.error("\(problem)") }
        return event(.policyRejected, .warning, PolicyDetails(file: path, problems: problems.map(\.description)))
    }

    private func event(_ type: AgentEvent.EventType, _ severity: AgentEvent.Severity, _ details: PolicyDetails) -> AgentEvent {
        AgentEvent(type: type, severity: severity, epochNanoseconds: realtimeNanoseconds(), node: node, details: .policy(details))
    }

    private static func describe(_ policy: Policy, text: String?) -> String {
        guard let text else { return "the built-in policy" }
        return "\(policy.rules.count) rule\(policy.rules.count == 1 ? "" : "s"), digest \(digest(text))"
    }

    enum Observation {
        case text(String)
        case missing(PolicyProblem)
        case unreadable(PolicyProblem)
    }

    static func read(_ path: String) -> Observation {
        do {
            return .text(try PolicyLoader.readFile(path))
        } catch {
            let problem = error.problems.first ?? PolicyProblem(file: path, line: nil, column: nil, path: "", message: "cannot read")
            // a dangling ConfigMap symlink reads as ENOENT too: missing
            var info = stat()
            if stat(path, &info) != 0, errno == ENOENT || errno == ENOTDIR {
                return .missing(PolicyProblem(file: path, line: nil, column: nil, path: "", message: "the file is gone"))
            }
            return .unreadable(problem)
        }
    }

    /// Where a ConfigMap mount's `..data` points ("..2024_01_01_00_00_00.123"),
    /// when the file lives in one: logged with a reload, so an operator can
    /// tell which ConfigMap version is in force.
    static func configMapData(of path: String) -> String? {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink((directory.isEmpty ? "" : directory) + "/..data", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// FNV-1a 64 of the text, 16 hex digits: a short name for a content.
    static func digest(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
