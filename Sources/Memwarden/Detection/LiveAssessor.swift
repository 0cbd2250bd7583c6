/// The live agent's side of the assessor: keeps one `TargetAssessment` per
/// process and per memory cgroup, feeds it the kernel's verdict changes, and
/// ends it when the target goes (exit, exec, last process of a cgroup), the
/// way `Replayer` does for a trace, so `run` and `replay` print the same events.
public struct LiveAssessor: Sendable {
    public let assessor: Assessor
    private var processes: [Int32: TargetAssessment] = [:]
    private var cgroups: [UInt64: TargetAssessment] = [:]

    public init(assessor: Assessor = Assessor()) {
        self.assessor = assessor
    }

    /// Targets with assessment state (for tests and status).
    public var trackedTargets: Int { processes.count + cgroups.count }

    /// A verdict change from the kernel. `context` carries the target's
    /// identity, limit and usage as the agent resolved them.
    public mutating func verdict(_ record: VerdictRecord, context: AssessmentContext) -> LeakEvent? {
        let verdict = DetectorVerdict(raw: record.raw)
        switch record.scope {
        case .process(let pid):
            return assessor.assess(verdict, context: context, target: &processes[pid, default: TargetAssessment()])
        case .cgroup:
            return assessor.assess(verdict, context: context, target: &cgroups[record.cgroupID, default: TargetAssessment()])
        }
    }

    /// A process exited or exec'd: its suspicion (if any) ends, its state goes.
    public mutating func processEnded(pid: Int32, reason: String, context: AssessmentContext) -> LeakEvent? {
        guard var target = processes.removeValue(forKey: pid) else { return nil }
        return assessor.end(context: context, reason: reason, target: &target)
    }

    /// A cgroup's last tracked process left.
    public mutating func cgroupEmptied(id: UInt64, context: AssessmentContext) -> LeakEvent? {
        guard var target = cgroups.removeValue(forKey: id) else { return nil }
        return assessor.end(context: context, reason: "cgroup_empty", target: &target)
    }
}
