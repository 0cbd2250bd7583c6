/// What the assessor knows about a target besides its verdict.
public struct AssessmentContext: Sendable {
    public var timeNanoseconds: Int64
    public var scope: LeakScope
    public var pid: Int32?
    public var comm: String?
    public var cgroup: String
    /// The cgroup's limit (memory.max, or a policy budget), bytes.
    public var limit: UInt64?
    /// What the limit is compared with now: the cgroup's resident memory, bytes.
    public var usage: UInt64

    public init(
        timeNanoseconds: Int64, scope: LeakScope, pid: Int32?, comm: String?, cgroup: String, limit: UInt64?,
        usage: UInt64
    ) {
        self.timeNanoseconds = timeNanoseconds
        self.scope = scope
        self.pid = pid
        self.comm = comm
        self.cgroup = cgroup
        self.limit = limit
        self.usage = usage
    }
}

/// The assessor's memory of one target (a process or a cgroup); its owner
/// keeps one per target and drops it with the target.
public struct TargetAssessment: Sendable {
    public fileprivate(set) var suspected = false
    /// Confidence after the last verdict.
    public fileprivate(set) var confidence = 0.0
    fileprivate var since: Int64 = 0
    fileprivate var identity: AssessmentContext?

    public init() {}
}

/// Turns the three detectors' verdicts into one combined verdict with a
/// confidence, with hysteresis: a suspicion starts on strict evidence and
/// lasts while any growth evidence remains. Pure and deterministic: replay
/// and the live agent feed it the same verdict changes and get the same events.
///
/// Entry (`leak.suspected`): no veto (growth that is only page cache, or anon
/// moving to swap, is not a leak), and either
///  - composition confirms held-memory growth, and the trend or the
///    rising-floor duration fired, or
///  - fast growth fired (a fast leak needs no second opinion), or
///  - VSZ divergence fired (fragmentation barely moves RSS).
/// Exit (`leak.cleared`): a veto, or neither the trend nor any multi-factor
/// factor still on; or the target is gone (exit, exec, empty cgroup).
///
/// Confidence: the mean of the three scores scaled into [0.5, 1] when the
/// entry rule holds and into [0, 0.5) when it does not, so 0.5 is the line.
public struct Assessor: Sendable {
    public init() {}

    public static func vetoed(_ verdict: DetectorVerdict) -> Bool {
        !verdict.reasons.isDisjoint(with: [.cacheOnly, .swapShuffle])
    }

    public static func entryHolds(_ verdict: DetectorVerdict) -> Bool {
        let f = verdict.factors
        guard !vetoed(verdict) else { return false }
        if f.contains(.fast) || f.contains(.vsz) { return true }
        return f.contains(.composition) && (f.contains(.trend) || f.contains(.rise))
    }

    public static func evidenceRemains(_ verdict: DetectorVerdict) -> Bool {
        guard !vetoed(verdict) else { return false }
        return !verdict.factors.isDisjoint(with: [.trend, .fast, .rise, .vsz])
    }

    public static func confidence(_ verdict: DetectorVerdict) -> Double {
        let strength = DetectorKind.allCases.reduce(0.0) { $0 + Double(min(verdict.score($1), 1000)) / 1000 } / 3
        return entryHolds(verdict) ? 0.5 + 0.5 * strength : 0.499 * strength
    }

    /// Seconds until `usage` grows to `limit` at `growth` bytes/s; nil when no
    /// limit is known or nothing grows.
    public static func secondsToLimit(limit: UInt64?, usage: UInt64, growth: Int64) -> Double? {
        guard let limit, growth > 0 else { return nil }
        guard usage < limit else { return 0 }
        return Double(limit - usage) / Double(growth)
    }

    /// Feeds a verdict (a changed one: the kernel sends only those). Returns
    /// the event it causes, if any.
    public func assess(_ verdict: DetectorVerdict, context: AssessmentContext, target: inout TargetAssessment)
        -> LeakEvent?
    {
        let confidence = Self.confidence(verdict)
        target.confidence = confidence
        if !target.suspected {
            guard Self.entryHolds(verdict) else { return nil }
            target.suspected = true
            target.since = context.timeNanoseconds
            target.identity = context
            let growth = verdict.growthBytesPerSecond
            return LeakEvent(
                kind: .suspected, timeNanoseconds: context.timeNanoseconds, scope: context.scope, pid: context.pid,
                comm: context.comm, cgroup: context.cgroup,
                detectors: DetectorKind.allCases.filter { verdict.hasFired($0) }.map(\.name),
                confidence: confidence, growthBytesPerSecond: growth,
                secondsToLimit: Self.secondsToLimit(limit: context.limit, usage: context.usage, growth: growth),
                limit: context.limit, reasons: verdict.reasons.names)
        }
        guard !Self.evidenceRemains(verdict) else { return nil }
        let why = Self.vetoed(verdict) ? verdict.reasons.intersection([.cacheOnly, .swapShuffle]).names : ["growth_stopped"]
        return clear(context: context, reasons: why, target: &target)
    }

    /// The target is gone or starts over (process exit, exec, last process of a
    /// cgroup gone): ends its suspicion, if any.
    public func end(context: AssessmentContext, reason: String, target: inout TargetAssessment) -> LeakEvent? {
        target.confidence = 0
        guard target.suspected else { return nil }
        return clear(context: context, reasons: [reason], target: &target)
    }

    private func clear(context: AssessmentContext, reasons: [String], target: inout TargetAssessment) -> LeakEvent {
        let identity = target.identity ?? context
        target.suspected = false
        target.identity = nil
        return LeakEvent(
            kind: .cleared, timeNanoseconds: context.timeNanoseconds, scope: identity.scope, pid: identity.pid,
            comm: identity.comm, cgroup: identity.cgroup, detectors: [], confidence: target.confidence,
            growthBytesPerSecond: 0, secondsToLimit: nil, limit: identity.limit, reasons: reasons,
            suspectedSeconds: Double(context.timeNanoseconds - target.since) / 1e9)
    }
}
