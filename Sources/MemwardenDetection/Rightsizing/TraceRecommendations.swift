import MemwardenModel

/// `memwarden recommend`'s work: one pass over a trace that replays it
/// through the detectors (so each cgroup's leak verdict at the end is known)
/// and keeps each cgroup's usage in per-minute buckets, then a
/// `Recommendation` per cgroup.
///
/// A trace names cgroups by path and has no pod labels or owners, so each
/// cgroup (a container) is its own target; aggregation over a workload's
/// pods needs the live agent's pod metadata (/api/v1/recommendations).
public struct TraceRecommendations {
    public var configuration = DetectorConfiguration()
    public var confirmation = ConfirmationSettings()
    public var settings = RecommendationSettings()
    public var bucketSeconds: Double = 60

    public init() {}

    public struct Target: Sendable {
        public var cgroup: String
        public var recommendation: Recommendation
    }

    /// Per cgroup, in path order. A cgroup's usage is its processes' held
    /// memory (anon + shmem + swap): what the confirmation stage watches, and
    /// what the kernel cannot reclaim from the container; file pages are
    /// cache it gives back under its limit (VPA's working set leaves the
    /// inactive ones out for the same reason).
    public func run(_ reader: TraceReader) throws(TraceError) -> [Target] {
        let replayer = Replayer(strings: reader.strings, configuration: configuration, confirmation: confirmation)
        var cgroups: [Int32: CgroupUsage] = [:]
        var processes: [Int32: (cgroup: Int32, held: Double)] = [:]
        var verdicts = LeakVerdicts()
        var events: [LeakEvent] = []
        while let sample = try reader.next() {
            replayer.feed(sample, into: &events)
            for event in events { verdicts.record(event) }
            events.removeAll(keepingCapacity: true)

            let t = sample.time
            let held = Double(sample.anon &+ sample.shmem &+ sample.swap)
            if let previous = processes[sample.pid], previous.cgroup != sample.cgroup || sample.event == .exit {
                cgroups[previous.cgroup]?.change(by: -previous.held, at: t)
                processes[sample.pid] = nil
            }
            guard sample.event != .exit, !reader.strings.isEmpty(sample.cgroup) else { continue }
            let before = processes[sample.pid]?.held ?? 0
            processes[sample.pid] = (sample.cgroup, held)
            cgroups[sample.cgroup, default: CgroupUsage(bucketSeconds: bucketSeconds)].change(by: held - before, at: t)
            if let limit = sample.limit { cgroups[sample.cgroup]?.limit = Double(limit) }
        }
        var targets: [Target] = []
        for (id, usage) in cgroups {
            let path = reader.strings[id]
            let member = RecommendationMember(history: usage.builder.history, leak: verdicts.leak(cgroup: path))
            guard let recommendation = Recommender.recommend([member], limit: usage.limit, settings: settings) else {
                continue
            }
            targets.append(Target(cgroup: path, recommendation: recommendation))
        }
        return targets.sorted { $0.cgroup < $1.cgroup }
    }

    struct CgroupUsage {
        var builder: UsageHistoryBuilder
        var total = 0.0
        var limit: Double?

        init(bucketSeconds: Double) {
            builder = UsageHistoryBuilder(bucketSeconds: bucketSeconds)
        }

        mutating func change(by delta: Double, at t: Double) {
            total = max(0, total + delta)
            builder.add(time: t, bytes: total)
        }
    }

    /// The suspicions open at the end of the trace, by cgroup path: the
    /// cgroup's own, else its processes' (a leak in one worker is the
    /// container's leak; the fastest stands for it).
    struct LeakVerdicts {
        private var cgroups: [String: Double] = [:]
        private var processes: [String: [Int32: Double]] = [:]

        mutating func record(_ event: LeakEvent) {
            let rate = event.kind == .cleared ? nil : Double(event.growthBytesPerSecond)
            switch event.scope {
            case .cgroup: cgroups[event.cgroup] = rate
            case .process: processes[event.cgroup, default: [:]][event.pid ?? -1] = rate
            }
        }

        func leak(cgroup: String) -> LeakTrend? {
            let rate = cgroups[cgroup] ?? processes[cgroup]?.values.max()
            // the onset is left to the history: a suspicion's start is when the
            // evidence was enough, hours after the growth began
            return rate.flatMap { $0 > 0 ? LeakTrend(bytesPerSecond: $0) : nil }
        }
    }
}
