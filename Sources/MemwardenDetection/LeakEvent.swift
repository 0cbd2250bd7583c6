import MemwardenModel

/// A change of the combined verdict: the start or the end of a suspicion. What it says
/// about the leak is the events' own `LeakDetails` (one type for replay, live, events and
/// the HTTP API), read through this value as if its fields were its own (`leak.confidence`).
@dynamicMemberLookup
public struct LeakEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case suspected = "leak.suspected"
        case cleared = "leak.cleared"
        /// A suspicion's forecast moved (rate-limited): same target, new numbers.
        case updated = "leak.updated"
    }

    public var kind: Kind
    /// The target's clock: the trace's `t` in replay, time since the agent's
    /// origin live, in nanoseconds.
    public var timeNanoseconds: Int64
    public var scope: LeakScope
    /// The process (process scope only).
    public var pid: Int32?
    public var comm: String?
    /// The memory cgroup's path ("" when unknown).
    public var cgroup: String
    /// The detectors that fired, the confidence (0...1; at least 0.5 while suspected), the
    /// growth (from the floor's trend, or the fast window's floor for a fast leak), the
    /// forecast to the limit with its interval and model, and why (suspected: the detectors'
    /// reason codes; cleared: why it ended, with how long it lasted).
    public var details: LeakDetails

    public subscript<Value>(dynamicMember field: WritableKeyPath<LeakDetails, Value>) -> Value {
        get { details[keyPath: field] }
        set { details[keyPath: field] = newValue }
    }

    public init(
        kind: Kind, timeNanoseconds: Int64, scope: LeakScope, pid: Int32?, comm: String?, cgroup: String,
        detectors: [String], confidence: Double, growthBytesPerSecond: Int64, secondsToLimit: Double?, limit: UInt64?,
        reasons: [String], suspectedSeconds: Double? = nil, forecastInterval: ClosedRange<Double>? = nil,
        forecastModel: String? = nil
    ) {
        self.kind = kind
        self.timeNanoseconds = timeNanoseconds
        self.scope = scope
        self.pid = pid
        self.comm = comm
        self.cgroup = cgroup
        details = LeakDetails(
            detectors: detectors, confidence: confidence, growthBytesPerSecond: growthBytesPerSecond,
            secondsToLimit: secondsToLimit, limit: limit, reasons: reasons, suspectedSeconds: suspectedSeconds,
            forecastInterval: forecastInterval, forecastModel: forecastModel)
    }

    /// Seconds on the target's clock.
    public var t: Double { Double(timeNanoseconds) / 1e9 }

    /// One JSON line (docs/events.md), with no identity beyond the cgroup
    /// path. `epochNanoseconds` is the wall-clock time of t = 0.
    public func jsonLine(epochNanoseconds: UInt64) -> String {
        AgentEvent(leak: self, epochNanoseconds: epochNanoseconds, node: nil).jsonLine()
    }

    static func array(_ values: [String]) -> String { JSONLine.array(values) }
}

extension AgentEvent {
    /// A leak event of the assessor, on the wall clock, with its target's identity.
    public init(leak: LeakEvent, epochNanoseconds epoch: UInt64, node: String?, identity: TargetIdentity? = nil) {
        let wall = Int64(bitPattern: epoch) &+ leak.timeNanoseconds
        var resolved = identity ?? TargetIdentity(cgroup: leak.cgroup)
        resolved.cgroup = leak.cgroup
        self.init(
            type: leak.kind.eventType,
            severity: leak.kind == .cleared ? .info : .warning,
            epochNanoseconds: UInt64(max(0, wall)), t: leak.t, node: node,
            target: EventTarget(scope: leak.scope, pid: leak.pid, comm: leak.comm, identity: resolved),
            details: .leak(leak.details))
    }
}

extension LeakEvent.Kind {
    var eventType: AgentEvent.EventType {
        switch self {
        case .suspected: .leakSuspected
        case .cleared: .leakCleared
        case .updated: .leakUpdated
        }
    }
}

/// Why a suspicion ended: a `leak.cleared` event's `reasons` (docs/events.md).
/// Live and replay end targets on the same facts, so both spell them here.
public enum ClearReason: String, Sendable, CaseIterable {
    /// The growth test no longer passes, or growth stalled (ConfirmationStage).
    case growthStopped = "growth_stopped"
    case processExited = "process_exited"
    /// exec started the process over: a new program, a new baseline.
    case exec
    /// The cgroup's last process left.
    case cgroupEmpty = "cgroup_empty"
}
