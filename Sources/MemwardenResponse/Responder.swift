import Logging
import MemwardenIdentity
import MemwardenModel

/// The responder's settings: where the memory hierarchy is, the state file,
/// dry-run.
public struct ResponderConfiguration: Sendable {
    /// The memory hierarchy's mount point (cgroup v2's unified tree, or v1's
    /// memory tree); target paths are relative to it.
    public var cgroupRoot: String
    /// nil: no memory hierarchy was found (throttling is impossible).
    public var version: CgroupHierarchy.Version?
    public var stateFile: ResponseStateFile
    /// Say what would be done, write nothing (no memory.high, no state file).
    public var dryRun: Bool
    public var pageSize: UInt64
    public var node: String?
    /// The subtrees a throttle may write under (cgroup paths such as
    /// "/kubepods.slice"); empty: the whole hierarchy. The chart mounts only
    /// the pods' subtree writable, and the responder refuses the rest itself,
    /// so a system service or the node's own slices are never throttled
    /// whatever a policy rule matches.
    public var writableSubtrees: [String]
    /// Called at each point where a kill would leave the disk in another
    /// state: around every memory.high write and at each step of a state-file
    /// save. The kill-at-every-step tests snapshot the disk there
    /// (ResponderCrashTests); the agent leaves it nil.
    public var observeDurableStep: DurableStepObserver?

    public init(
        cgroupRoot: String, version: CgroupHierarchy.Version?, stateFile: ResponseStateFile = ResponseStateFile(),
        dryRun: Bool = false, pageSize: UInt64? = nil, node: String? = nil, writableSubtrees: [String] = []
    ) {
        self.cgroupRoot = cgroupRoot
        self.version = version
        self.stateFile = stateFile
        self.dryRun = dryRun
        self.pageSize = pageSize ?? UInt64(MemwardenModel.pageSize)
        self.node = node
        self.writableSubtrees = writableSubtrees.map(Self.normalized)
    }

    public init(
        hierarchy: CgroupHierarchy?, stateFile: ResponseStateFile = ResponseStateFile(), dryRun: Bool = false, node: String? = nil,
        writableSubtrees: [String] = []
    ) {
        self.init(
            cgroupRoot: hierarchy?.mountPoint ?? "/sys/fs/cgroup", version: hierarchy?.version, stateFile: stateFile,
            dryRun: dryRun, node: node, writableSubtrees: writableSubtrees)
    }

    /// Whether a throttle may write under `cgroup` (a path relative to the
    /// hierarchy's root): it is a writable subtree or below one. Components
    /// are compared whole, so "/kubepods.slice" does not admit "/kubepods.slice2".
    public func mayWrite(_ cgroup: String) -> Bool {
        guard !writableSubtrees.isEmpty else { return true }
        let path = Self.normalized(cgroup)
        return writableSubtrees.contains { subtree in
            subtree == "/" || path == subtree || path.hasPrefix(subtree + "/")
        }
    }

    /// "/a/b" for "a/b/", "/a//b" or "/a/b": one spelling to compare.
    static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
    }

    /// Why a subtree cannot be one (nil: it can): it must be an absolute cgroup
    /// path without "." or ".." components.
    public static func subtreeProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "a cgroup path starting with '/' (\"/kubepods.slice\")" }
        if path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
            return "a cgroup path without '.' or '..' components"
        }
        return nil
    }
}

/// The response ladder, per memory cgroup: observe → annotate → throttle.
/// Throttling starts when a leak is suspected in the cgroup (any of its
/// processes, or the cgroup itself) and its usage holds the policy's
/// `throttle.fromTier`, and only in mode `throttle`. It writes memory.high,
/// steered by `MemoryHighController` (PSI) while there is reclaimable memory
/// to squeeze, and by `GrowthCapController` (a fixed growth rate) once the
/// growth is memory the kernel cannot reclaim; it puts the original back when
/// the leak clears, the target goes, its policy changes, the cap has stood
/// idle, or the agent stops.
/// Originals are in the state file before the first write, so a restart
/// after a crash puts them back too (`start()`).
///
/// Only a confirmed suspicion starts a throttle: confidence at least the
/// policy's `throttle.minConfidence` (0.8), suspected for `throttle.minSuspected`
/// (2 min), its target past its warm-up grace. `response.throttle` names it.
///
/// Every method returns the events it produced; the caller delivers them.
/// Not thread-safe: `ResponderService` owns one behind a lock.
public struct Responder: Sendable {
    /// An open leak suspicion as the responder weighs it.
    struct LeakSuspect: Sendable {
        /// Responder clock (monotonic) and wall clock when it opened.
        var since: UInt64
        var sinceEpoch: UInt64
        var confidence: Double
        var inGrace: Bool
    }

    struct Throttle: Sendable {
        /// The policy it started under (a change ends the throttle).
        var policy: TargetPolicy
        var files: CgroupMemoryFiles
        var record: ResponseStateRecord
        var controller: MemoryHighController
        /// Set once the cgroup's growth is memory the kernel cannot reclaim:
        /// it steers instead of `controller` from then on.
        var growthCap: GrowthCapController?
        /// memory.high in force: the last value written (dry-run: would have been).
        var current: UInt64
        var floor: UInt64
        var ceiling: UInt64?
        /// memory.current at the last step.
        var usage: UInt64
        /// The confirmed suspicion it started on.
        var verdict: ResponseVerdict
    }

    struct Entry: Sendable {
        var target: EventTarget
        var policy: TargetPolicy
        /// The leak suspicions open in this cgroup (process or cgroup scope), by target key.
        var suspects: [String: LeakSuspect] = [:]
        var tier: BudgetTier?
        var throttle: Throttle?
        /// memory.high was changed by someone else: hands off until the target
        /// goes or its policy changes.
        var handsOff = false
        /// When a throttle last ended (the response cooldown runs from there).
        var lastRestore: UInt64?
        /// Skip reasons already said in this episode (said once, not every tick).
        var said: Set<String> = []

        /// Usage holds the tier throttling starts at, with a suspicion open.
        var atThrottleTier: Bool {
            guard !suspects.isEmpty, policy.budget != nil, let tier else { return false }
            return tier >= policy.throttle.fromTier
        }

        /// The confirmed suspicion a throttle may act on: confident enough, old
        /// enough, its target past its warm-up grace (the oldest such, for a
        /// stable answer).
        func confirmed(now: UInt64) -> (key: String, suspect: LeakSuspect)? {
            let minimum = MemoryHighController.nanoseconds(policy.throttle.minSuspected)
            return suspects.filter {
                !$0.value.inGrace && $0.value.confidence >= policy.throttle.minConfidence
                    && now &- $0.value.since >= minimum
            }.min { ($0.value.since, $0.key) < ($1.value.since, $1.key) }.map { ($0.key, $0.value) }
        }
    }

    public let configuration: ResponderConfiguration
    private let clock: @Sendable () -> ClockReading
    private let logger: Logger
    private var entries: [String: Entry] = [:]
    private var records: [String: ResponseStateRecord] = [:]
    /// Records were removed since the last save.
    private var dirty = false

    public init(configuration: ResponderConfiguration, clock: @escaping @Sendable () -> ClockReading, logger: Logger) {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
    }

    /// The cgroups being throttled now, by key, with memory.high in force.
    public var throttled: [String: UInt64] { entries.compactMapValues { $0.throttle?.current } }

    /// Once at startup: says when throttling cannot work on this node, and
    /// puts back every original a previous run left in the state file.
    public mutating func start() -> [AgentEvent] {
        switch configuration.version {
        case .v1:
            logger.warning(
                "memory cgroup hierarchy is cgroup v1: memory.high throttling is unsupported, the responder emits events only",
                metadata: ["cgroup_root": "\(configuration.cgroupRoot)"])
        case nil:
            logger.warning("no memory cgroup hierarchy: memory.high throttling is unavailable, events only")
        case .v2:
            break
        }
        return recover()
    }

    /// Puts back every original recorded in the state file (after a crash or
    /// kill -9 of a previous run), where memory.high still holds a value the
    /// agent wrote and the cgroup is the same one (same inode).
    public mutating func recover() -> [AgentEvent] {
        let (loaded, problem) = configuration.stateFile.load()
        if let problem { logger.error("state file: \(problem)") }
        var events: [AgentEvent] = []
        var kept: [String: ResponseStateRecord] = [:]
        for record in loaded {
            let target = EventTarget(scope: .cgroup, identity: TargetIdentity(cgroup: record.cgroup))
            let policy = TargetPolicy(rule: record.rule, mode: .throttle)
            if configuration.dryRun {
                // a dry run writes nothing, not even a restore: the record stays for a real run
                events.append(event(.responseSkipped, target, policy, ResponseDetails(mode: .throttle, rule: record.rule, dryRun: true, reason: "dry_run")))
                kept[record.key] = record
                continue
            }
            // the state file is trusted no further than the cgroup root, and
            // only with a value memory.high could hold
            guard MemoryKnob(parsing: record.original) != nil else {
                logger.error("state file: record for \(record.cgroup) has no valid original memory.high ('\(record.original)'): not restored")
                events.append(skipped(target, policy, reason: "state_invalid"))
                continue
            }
            let files: CgroupMemoryFiles
            do {
                try CgroupMemoryFiles.requireInside(root: configuration.cgroupRoot, record.directory)
                files = try CgroupMemoryFiles(directory: record.directory)
                guard try files.inode() == record.inode else {
                    events.append(skipped(target, policy, reason: "cgroup_replaced"))
                    continue
                }
            } catch {
                let unsafe = error.code == .unsafePath
                if unsafe { logger.error("state file: \(error): not restored") }
                events.append(skipped(target, policy, reason: unsafe ? "unsafe_path" : "cgroup_gone"))
                continue
            }
            do {
                let now = try files.high()
                guard record.isOurs(now) else {
                    events.append(skipped(target, policy, reason: "external_write", before: now.bytes))
                    continue
                }
                configuration.observeDurableStep?("recover: before restoring \(record.cgroup)")
                try files.writeHigh(text: record.original)
                configuration.observeDurableStep?("recover: restored \(record.cgroup)")
                var growthCap: GrowthCapDetails?
                // (a crash before the first write leaves the original: no cap to tell of)
                if record.throttleMode == ResponseStateRecord.growthCapMode, let cap = record.growthCap, let value = now.bytes,
                    MemoryKnob(parsing: record.original) != now
                {
                    growthCap = GrowthCapDetails(
                        rateBytesPerSecond: cap.rateBytesPerSecond, allowanceBytes: value &- min(cap.start, value))
                }
                events.append(
                    event(
                        .responseRestore, target, policy,
                        ResponseDetails(
                            mode: .throttle, rule: record.rule, memoryHighBefore: now.bytes,
                            memoryHighAfter: MemoryKnob(parsing: record.original)?.bytes, reason: "agent_restarted",
                            growthCap: growthCap)))
            } catch {
                logger.error("cannot restore memory.high: \(error)", metadata: ["cgroup": "\(record.cgroup)"])
                kept[record.key] = record  // the next start tries again
                events.append(skipped(target, policy, reason: "write_failed"))
            }
        }
        records = kept
        if !configuration.dryRun && (!loaded.isEmpty || problem != nil) { persist() }
        return events
    }

    /// A leak suspicion opened (`target`: a process or a cgroup; the cgroup it
    /// lives in is what gets throttled).
    public mutating func leakSuspected(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) -> [AgentEvent] {
        defer { flush() }
        let events = update(target, policy: policy)
        let key = Self.key(target)
        let now = clock()
        entries[key]?.suspects[target.key] = LeakSuspect(
            since: now.monotonicNanoseconds, sinceEpoch: now.epochNanoseconds, confidence: verdict.confidence,
            inGrace: verdict.inGrace)
        return events
    }

    /// A suspicion's new numbers (leak.updated): its confidence, whether the
    /// target is still in its grace. Unknown suspicions start here.
    public mutating func leakUpdated(_ target: EventTarget, policy: TargetPolicy, verdict: LeakVerdict) -> [AgentEvent] {
        let key = Self.key(target)
        guard entries[key]?.suspects[target.key] != nil else { return leakSuspected(target, policy: policy, verdict: verdict) }
        entries[key]?.suspects[target.key]?.confidence = verdict.confidence
        entries[key]?.suspects[target.key]?.inGrace = verdict.inGrace
        return []
    }

    /// A leak suspicion closed. When it was the cgroup's last, a throttle
    /// ends; a growth cap once the cgroup stops pressing on it (`step`): the
    /// detectors saw the capped rate, and a leak that is only held back
    /// would run at its own pace again the moment the cap went.
    public mutating func leakCleared(_ target: EventTarget) -> [AgentEvent] {
        defer { flush() }
        let key = Self.key(target)
        guard var entry = entries[key] else { return [] }
        entry.suspects[target.key] = nil
        entries[key] = entry
        guard entry.suspects.isEmpty, let throttle = entry.throttle else { return [] }
        if throttle.growthCap != nil { return [] }
        return restore(key, reason: "leak_cleared")
    }

    /// The budget tier the cgroup holds now (BudgetEvaluator.tier(of:)).
    public mutating func budgetTier(_ tier: BudgetTier?, target: EventTarget, policy: TargetPolicy) -> [AgentEvent] {
        defer { flush() }
        let events = update(target, policy: policy)
        entries[Self.key(target)]?.tier = tier
        return events
    }

    /// The policy that applies to a target changed (a reload, a new rule):
    /// a throttle under the old one ends; the new one decides from scratch.
    public mutating func policyChanged(_ target: EventTarget, policy: TargetPolicy) -> [AgentEvent] {
        defer { flush() }
        return update(target, policy: policy)
    }

    /// The target went away. A cgroup (container exit, pod deletion): put the
    /// original back if the directory is still there, and forget it. A
    /// process: its suspicion ends with it; the cgroup stays known, and its
    /// throttle ends only when that was the last suspicion.
    public mutating func targetGone(_ target: EventTarget) -> [AgentEvent] {
        defer { flush() }
        let key = Self.key(target)
        if target.scope == .process {
            guard var entry = entries[key] else { return [] }
            entry.suspects[target.key] = nil
            entries[key] = entry
            guard entry.suspects.isEmpty, entry.throttle != nil else { return [] }
            return restore(key, reason: "target_gone")
        }
        let events = entries[key]?.throttle != nil ? restore(key, reason: "target_gone") : []
        entries[key] = nil
        return events
    }

    /// Shutdown: every original back.
    public mutating func restoreAll(reason: String = "agent_stopping") -> [AgentEvent] {
        defer { flush() }
        var events: [AgentEvent] = []
        for key in entries.keys.sorted() where entries[key]?.throttle != nil {
            events += restore(key, reason: reason)
        }
        return events
    }

    /// One control step for every target: start, step or hold.
    public mutating func tick() -> [AgentEvent] {
        defer { flush() }
        var events: [AgentEvent] = []
        var planned: [PlannedWrite] = []
        for key in entries.keys.sorted() {
            guard let entry = entries[key] else { continue }
            if entry.throttle != nil {
                events += step(key, into: &planned)
            } else if entry.atThrottleTier {
                events += begin(key, into: &planned)
            } else if !entry.said.isEmpty {
                entries[key]?.said = []  // the episode is over; a new one may say it again
            }
        }
        return events + apply(planned)
    }

    // MARK: - the ladder

    private mutating func update(_ target: EventTarget, policy: TargetPolicy) -> [AgentEvent] {
        let key = Self.key(target)
        guard var entry = entries[key] else {
            entries[key] = Entry(target: Self.cgroupTarget(target), policy: policy)
            return []
        }
        if target.identity.pod != nil || entry.target.identity.pod == nil {
            entry.target.identity = target.identity  // later events know more about the pod
        }
        guard entry.policy != policy else {
            entries[key] = entry
            return []
        }
        entry.policy = policy
        entry.handsOff = false
        entry.said = []
        entries[key] = entry
        return entry.throttle != nil ? restore(key, reason: "policy_changed") : []
    }

    private mutating func begin(_ key: String, into planned: inout [PlannedWrite]) -> [AgentEvent] {
        guard let entry = entries[key] else { return [] }
        let now = clock()
        let policy = entry.policy
        switch policy.mode {
        case .observe: return say(key, "mode_observe")
        case .annotate: return say(key, "mode_annotate")
        case .throttle: break
        }
        if entry.handsOff { return [] }
        // only a confirmed leak slows a pod: a young or doubtful suspicion may be a healthy shape
        guard let (verdictKey, verdict) = entry.confirmed(now: now.monotonicNanoseconds) else {
            return say(key, "leak_unconfirmed")
        }
        if let last = entry.lastRestore,
            now.monotonicNanoseconds &- last < MemoryHighController.nanoseconds(policy.cooldowns.response)
        {
            return say(key, "cooldown")
        }
        switch configuration.version {
        case .v1: return say(key, "cgroup_v1")
        case nil: return say(key, "memory_controller_missing")
        case .v2: break
        }
        // an unknown cgroup resolves to the hierarchy's root: never a target
        let cgroup = entry.target.identity.cgroup
        guard !cgroup.isEmpty, cgroup != "/" else { return say(key, "cgroup_unknown") }
        guard configuration.mayWrite(cgroup) else { return say(key, "outside_writable_subtree") }
        let files: CgroupMemoryFiles
        do {
            files = try CgroupMemoryFiles(root: configuration.cgroupRoot, path: cgroup)
        } catch {
            return say(key, error.code == .unsafePath ? "unsafe_path" : "cgroup_gone")
        }
        switch files.kind {
        case .v1: return say(key, "cgroup_v1")
        case .v2WithoutMemoryController: return say(key, "memory_controller_missing")
        case .v2: break
        }
        let usage: UInt64
        let limit: MemoryKnob
        var original: String
        let pressure: MemoryPressure
        let nonReclaimable: UInt64
        let inode: UInt64
        do {
            usage = try files.usage()
            limit = try files.limit()
            original = try files.highText()
            pressure = try files.pressure()
            nonReclaimable = try files.nonReclaimable(usage: usage)
            inode = try files.inode()
        } catch {
            logger.warning("cannot read the cgroup to throttle it: \(error)", metadata: ["cgroup": "\(entry.target.identity.cgroup)"])
            return say(key, error.code == .cgroupMissing ? "cgroup_gone" : "read_failed")
        }
        // a restore that failed earlier left its record: that original is the
        // real one, not the value still in the file
        if let earlier = records[key], earlier.inode == inode { original = earlier.original }
        let originalKnob = MemoryKnob(parsing: original) ?? .max
        let ceiling = [limit.bytes, originalKnob.bytes].compactMap { $0 }.min()
        let floor = Self.floor(policy: policy, identity: entry.target.identity, nonReclaimable: nonReclaimable)
        let page = configuration.pageSize
        // start where usage is now: growth beyond it is reclaimed or stalled at
        // once; the controller's probes tighten from there
        let start = min(usage / page * page, ceiling ?? .max)
        let record = ResponseStateRecord(
            key: key, cgroup: entry.target.identity.cgroup, directory: files.directory, inode: inode, original: original,
            rule: policy.rule, sinceEpochNanoseconds: now.epochNanoseconds, throttleMode: ResponseStateRecord.pressureMode)
        let controller = MemoryHighController(
            settings: policy.throttle, pageSize: page, now: now.monotonicNanoseconds,
            pressureTotal: pressure.someTotalMicroseconds)
        var throttle = Throttle(
            policy: policy, files: files, record: record, controller: controller, current: 0, floor: floor, ceiling: ceiling,
            usage: usage,
            verdict: ResponseVerdict(target: verdictKey, confidence: verdict.confidence, suspectedSince: verdict.sinceEpoch))
        if start > MemoryHighController.alignUp(floor, page) {
            throttle.current = MemoryHighController.clamp(start, floor: floor, ceiling: ceiling, pageSize: page)
            throttle.record.pending = String(throttle.current)
            planned.append(
                PlannedWrite(key: key, throttle: throttle, before: originalKnob.bytes, reason: "start", pressure: 0, first: true))
            return []
        }
        // the container's request or the policy's minimum is no reason to
        // hold it back; only memory the kernel cannot reclaim leaves the
        // pressure controller no room, and that growth can still be slowed
        let policyFloor = Self.floor(policy: policy, identity: entry.target.identity, nonReclaimable: 0)
        guard start > MemoryHighController.alignUp(policyFloor, page) else {
            return say(key, "below_floor", floor: floor)
        }
        guard let value = GrowthCapController.startValue(nonReclaimable: nonReclaimable, ceiling: ceiling, pageSize: page)
        else {
            return say(key, "at_ceiling", floor: floor)
        }
        throttle = Self.capped(
            throttle, at: value, settings: policy.throttle, pageSize: page, now: now.monotonicNanoseconds,
            highEvents: highEvents(files))
        planned.append(
            PlannedWrite(key: key, throttle: throttle, before: originalKnob.bytes, reason: "growth_cap", pressure: nil, first: true))
        return []
    }

    /// The throttle handed to a growth cap starting at `value` (its first
    /// memory.high), the state record saying so for a restart.
    static func capped(
        _ throttle: Throttle, at value: UInt64, settings: ThrottleSettings, pageSize: UInt64, now: UInt64, highEvents: UInt64?
    ) -> Throttle {
        var next = throttle
        next.growthCap = GrowthCapController(settings: settings, pageSize: pageSize, start: value, now: now, highEvents: highEvents)
        next.current = value
        next.record.pending = String(value)
        next.record.throttleMode = ResponseStateRecord.growthCapMode
        next.record.growthCap = ResponseStateRecord.GrowthCapRecord(start: value, rateBytesPerSecond: settings.maxGrowthRate)
        return next
    }

    /// memory.events' `high` count; nil where it cannot be read, and in a dry
    /// run, where memory.high was never written and the count says nothing
    /// about the cap (a cap then goes by usage alone).
    func highEvents(_ files: CgroupMemoryFiles) -> UInt64? {
        guard !configuration.dryRun else { return nil }
        do { return try files.highEvents() } catch { return nil }
    }

    private mutating func step(_ key: String, into planned: inout [PlannedWrite]) -> [AgentEvent] {
        guard let entry = entries[key], var throttle = entry.throttle else { return [] }
        let now = clock()
        let policy = entry.policy
        let files = throttle.files
        if !configuration.dryRun {
            switch ownership(throttle) {
            case .ours: break
            case .gone(let reason):
                drop(key)
                return [skipped(entry.target, policy, reason: reason)]
            case .external(let found):
                drop(key)
                entries[key]?.handsOff = true
                logger.warning(
                    "memory.high was changed by someone else: leaving this cgroup alone",
                    metadata: ["cgroup": "\(entry.target.identity.cgroup)", "expected": "\(throttle.current)", "found": "\(found)"])
                return [
                    skipped(
                        entry.target, policy, reason: "external_write", before: throttle.current, after: found.bytes,
                        severity: .warning)
                ]
            }
        }
        let pressure: MemoryPressure
        let nonReclaimable: UInt64
        do {
            pressure = try files.pressure()
            throttle.usage = try files.usage()
            nonReclaimable = try files.nonReclaimable(usage: throttle.usage)
            throttle.floor = Self.floor(policy: policy, identity: entry.target.identity, nonReclaimable: nonReclaimable)
        } catch {
            logger.warning("cannot read the throttled cgroup: \(error)", metadata: ["cgroup": "\(entry.target.identity.cgroup)"])
            return say(key, "read_failed")
        }
        let page = configuration.pageSize
        if var cap = throttle.growthCap {
            let decision = cap.observe(
                now: now.monotonicNanoseconds, usage: throttle.usage, highEvents: highEvents(files),
                current: throttle.current, ceiling: throttle.ceiling, suspected: !entry.suspects.isEmpty)
            throttle.growthCap = cap
            entries[key]?.throttle = throttle
            switch decision.step {
            case .hold:
                return []
            case .release:
                return restore(key, reason: entry.suspects.isEmpty ? "leak_cleared" : "growth_stopped")
            case .raise:
                var next = throttle
                next.current = decision.value
                next.record.pending = String(decision.value)
                planned.append(
                    PlannedWrite(key: key, throttle: next, before: throttle.current, reason: "growth_cap_raise", pressure: nil))
                return []
            }
        }
        // memory the kernel cannot reclaim grew past the value in force: the
        // probes have nothing left to squeeze, and following the floor up
        // would let the leak run at its own pace; a growth cap slows it
        let policyFloor = Self.floor(policy: policy, identity: entry.target.identity, nonReclaimable: 0)
        if nonReclaimable > policyFloor, MemoryHighController.alignUp(nonReclaimable, page) > throttle.current,
            let value = GrowthCapController.startValue(nonReclaimable: nonReclaimable, ceiling: throttle.ceiling, pageSize: page)
        {
            entries[key]?.throttle = throttle
            let next = Self.capped(
                throttle, at: max(value, throttle.current), settings: policy.throttle, pageSize: page,
                now: now.monotonicNanoseconds, highEvents: highEvents(files))
            planned.append(PlannedWrite(key: key, throttle: next, before: throttle.current, reason: "growth_cap", pressure: nil))
            return []
        }
        let decision = throttle.controller.observe(
            pressureTotal: pressure.someTotalMicroseconds, now: now.monotonicNanoseconds, current: throttle.current,
            floor: throttle.floor, ceiling: throttle.ceiling)
        // the controller's state (its integral restarted) holds whether or not the write happens
        entries[key]?.throttle = throttle
        if decision.value != throttle.current {
            var next = throttle
            next.current = decision.value
            next.record.pending = String(decision.value)
            // a probe that raises the value was lifted by a floor that rose with usage
            let reason = decision.step == .probe && decision.value > throttle.current ? "floor" : decision.step.rawValue
            planned.append(
                PlannedWrite(
                    key: key, throttle: next, before: throttle.current, reason: reason,
                    pressure: decision.pressureMicroseconds))
        } else if decision.step == .probe {
            // a probe that could not go lower: the floor holds
            return say(key, "below_floor", floor: throttle.floor)
        }
        return []
    }

    /// A memory.high write a tick decided on.
    struct PlannedWrite: Sendable {
        var key: String
        /// The throttle as it is once the write is done (`current` is the value,
        /// the record's `pending` too).
        var throttle: Throttle
        var before: UInt64?
        var reason: String
        /// The PSI stall the step was decided on (nil: a growth cap's, which is not).
        var pressure: UInt64?
        /// The throttle's first write: if it fails, the cgroup still holds its original.
        var first = false
    }

    /// Does a tick's writes: first one save of the state file for all of them
    /// (each record holds the last value written and the one about to be, so
    /// a crash anywhere after it leaves a value the record recognises), then
    /// the writes. One fsync per tick, not two per cgroup.
    private mutating func apply(_ planned: [PlannedWrite]) -> [AgentEvent] {
        guard !planned.isEmpty else { return [] }
        var events: [AgentEvent] = []
        if !configuration.dryRun {
            let previous = records
            for plan in planned { records[plan.key] = plan.throttle.record }
            guard persist() else {
                // no record, no write: an original that is not on disk could not be restored after a crash
                records = previous
                for plan in planned { events += say(plan.key, "state_file_unwritable") }
                return events
            }
        }
        for var plan in planned {
            if !configuration.dryRun {
                do {
                    configuration.observeDurableStep?("throttle: before writing \(plan.throttle.record.cgroup)")
                    try plan.throttle.files.writeHigh(.bytes(plan.throttle.current))
                    configuration.observeDurableStep?("throttle: wrote \(plan.throttle.record.cgroup)")
                } catch {
                    logger.warning("cannot write memory.high: \(error)", metadata: ["cgroup": "\(plan.throttle.record.cgroup)"])
                    if plan.first {
                        // nothing changed; the saved record's original is still what the file holds
                        records[plan.key] = nil
                        dirty = true
                    }
                    events += say(plan.key, error.code == .cgroupMissing ? "cgroup_gone" : "write_failed")
                    continue
                }
                plan.throttle.record.written = String(plan.throttle.current)
                plan.throttle.record.pending = nil
                records[plan.key] = plan.throttle.record
            }
            entries[plan.key]?.throttle = plan.throttle
            if plan.first { entries[plan.key]?.said = [] }
            guard let entry = entries[plan.key] else { continue }
            events.append(
                event(
                    .responseThrottle, entry.target, plan.throttle.policy,
                    ResponseDetails(
                        mode: plan.throttle.policy.mode, rule: plan.throttle.policy.rule, dryRun: configuration.dryRun,
                        memoryHighBefore: plan.before, memoryHighAfter: plan.throttle.current,
                        floorBytes: plan.throttle.floor, pressureMicroseconds: plan.pressure, reason: plan.reason,
                        verdict: plan.throttle.verdict, growthCap: Self.growthCapDetails(plan.throttle)),
                    severity: .warning))
        }
        return events
    }

    private enum Ownership {
        case ours
        case gone(reason: String)
        case external(found: MemoryKnob)
    }

    /// Whether memory.high is still the value we wrote, on the same cgroup.
    private func ownership(_ throttle: Throttle) -> Ownership {
        do {
            guard try throttle.files.inode() == throttle.record.inode else { return .gone(reason: "cgroup_replaced") }
            let found = try throttle.files.high()
            return found == .bytes(throttle.current) ? .ours : .external(found: found)
        } catch {
            return .gone(reason: "cgroup_gone")
        }
    }

    private mutating func restore(_ key: String, reason: String) -> [AgentEvent] {
        guard let entry = entries[key], let throttle = entry.throttle else { return [] }
        let now = clock()
        let policy = throttle.policy
        let original = MemoryKnob(parsing: throttle.record.original)
        let details = ResponseDetails(
            mode: policy.mode, rule: policy.rule, dryRun: configuration.dryRun, memoryHighBefore: throttle.current,
            memoryHighAfter: original?.bytes, floorBytes: throttle.floor, reason: reason,
            growthCap: Self.growthCapDetails(throttle))
        if configuration.dryRun {
            entries[key]?.throttle = nil
            entries[key]?.lastRestore = now.monotonicNanoseconds
            return [event(.responseRestore, entry.target, policy, details)]
        }
        switch ownership(throttle) {
        case .ours:
            break
        case .gone(let why):
            drop(key)
            return [skipped(entry.target, policy, reason: why)]
        case .external(let found):
            drop(key)
            entries[key]?.handsOff = true
            return [skipped(entry.target, policy, reason: "external_write", before: throttle.current, after: found.bytes, severity: .warning)]
        }
        do {
            configuration.observeDurableStep?("restore: before writing \(throttle.record.cgroup)")
            try throttle.files.writeHigh(text: throttle.record.original)
            configuration.observeDurableStep?("restore: wrote \(throttle.record.cgroup)")
        } catch {
            // the record stays in the state file: the next start puts it back
            logger.error("cannot restore memory.high: \(error)", metadata: ["cgroup": "\(throttle.record.cgroup)"])
            entries[key]?.throttle = nil
            entries[key]?.lastRestore = now.monotonicNanoseconds
            return [skipped(entry.target, policy, reason: "write_failed", severity: .warning)]
        }
        drop(key)
        entries[key]?.lastRestore = now.monotonicNanoseconds
        return [event(.responseRestore, entry.target, policy, details)]
    }

    /// Ends a throttle without writing: forgets the record.
    private mutating func drop(_ key: String) {
        entries[key]?.throttle = nil
        entries[key]?.lastRestore = clock().monotonicNanoseconds
        if records.removeValue(forKey: key) != nil { dirty = true }
    }

    /// Saves removals that no write depended on (a record left behind by a
    /// crash is harmless: the cgroup holds its original or someone else's value).
    private mutating func flush() {
        if dirty { persist() }
    }

    static func growthCapDetails(_ throttle: Throttle) -> GrowthCapDetails? {
        guard let cap = throttle.growthCap else { return nil }
        return GrowthCapDetails(
            rateBytesPerSecond: cap.rate, allowanceBytes: throttle.current &- min(cap.start, throttle.current),
            usageBytes: throttle.usage, ceilingBytes: throttle.ceiling)
    }

    /// Never below the container's memory request, the policy's minimum, or
    /// what the kernel cannot reclaim.
    static func floor(policy: TargetPolicy, identity: TargetIdentity, nonReclaimable: UInt64) -> UInt64 {
        max(identity.pod?.memoryRequest ?? 0, policy.throttle.minimumBytes, nonReclaimable)
    }

    @discardableResult
    private mutating func persist() -> Bool {
        guard !configuration.dryRun else { return true }
        do {
            try configuration.stateFile.save(
                records.keys.sorted().map { records[$0]! }, observe: configuration.observeDurableStep)
            dirty = false
            return true
        } catch {
            logger.error("cannot save the responder's state: \(error)")
            return false
        }
    }

    // MARK: - events

    private mutating func say(_ key: String, _ reason: String, floor: UInt64? = nil) -> [AgentEvent] {
        guard let entry = entries[key], !entry.said.contains(reason) else { return [] }
        entries[key]?.said.insert(reason)
        return [skipped(entry.target, entry.policy, reason: reason, floor: floor)]
    }

    private func skipped(
        _ target: EventTarget, _ policy: TargetPolicy, reason: String, before: UInt64? = nil, after: UInt64? = nil,
        floor: UInt64? = nil, severity: AgentEvent.Severity = .info
    ) -> AgentEvent {
        event(
            .responseSkipped, target, policy,
            ResponseDetails(
                mode: policy.mode, rule: policy.rule, dryRun: configuration.dryRun, memoryHighBefore: before,
                memoryHighAfter: after, floorBytes: floor, reason: reason), severity: severity)
    }

    private func event(
        _ type: AgentEvent.EventType, _ target: EventTarget, _ policy: TargetPolicy, _ details: ResponseDetails,
        severity: AgentEvent.Severity = .info
    ) -> AgentEvent {
        let now = clock()
        return AgentEvent(
            type: type, severity: severity, epochNanoseconds: now.epochNanoseconds, t: now.t, node: configuration.node,
            target: target, details: .response(details))
    }

    /// Throttling acts on memory cgroups: a process's suspicion counts for its cgroup.
    static func key(_ target: EventTarget) -> String { "cgroup:\(target.identity.cgroup)" }

    static func cgroupTarget(_ target: EventTarget) -> EventTarget {
        EventTarget(scope: .cgroup, identity: target.identity)
    }
}
