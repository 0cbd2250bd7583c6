import CMemwarden
import Foundation
import MemwardenModel

/// A target the confirmation stage keeps history for: a process, or a memory
/// cgroup (the kernel's cgroup id live, the trace's string id in replay). One
/// word, hashed once: it is looked up on every sample.
public struct ConfirmationKey: Hashable, Sendable {
    let raw: UInt64

    public static func process(_ pid: Int32) -> ConfirmationKey {
        ConfirmationKey(raw: UInt64(UInt32(bitPattern: pid)) | 1 << 63)
    }

    /// Cgroup ids stay below 2^63 (inode numbers live, string ids in replay).
    public static func cgroup(_ id: UInt64) -> ConfirmationKey {
        ConfirmationKey(raw: id & ~(1 << 63))
    }
}

/// The detectors' long memory, shared by replay and the live agent: decides
/// `leak.suspected`, `leak.updated` and `leak.cleared` from a bounded,
/// downsampled history of each target's held memory (anon + shmem + swap),
/// with the kernel's fast path as a pre-screen for leaks too fast to wait for.
///
/// A target is suspected when growth holds (`GrowthTest`: steady, new highs,
/// not levelling off) and either
///  - **urgent**: the forecast reaches the limit within `urgency` × the time
///    the growth has lasted (however young the target: a leak must never meet
///    its OOM kill unannounced), or
///  - **patient**: the growth has lasted `patienceSeconds`, the target is past
///    its grace, and the limit is within `horizonSeconds` (or unknown);
/// or when the kernel's fast path fired and the limit is within
/// `fastHorizonSeconds` at that rate.
/// It clears when growth over the clear window fell below a quarter of the
/// suspected rate, or memory fell back below where the suspicion started.
public struct ConfirmationStage: Sendable {
    /// The node's settings; a target's own (a policy rule's `detectors`) come
    /// through the `resolve` argument of `sample` and `kernelVerdict`.
    public var settings: ConfirmationSettings
    public let maximumTargets: Int
    public private(set) var evicted: UInt64 = 0

    struct Suspicion: Sendable {
        var since: Int64
        var identity: AssessmentContext
        var rate: Double
        /// Held memory when the suspicion started.
        var startLevel: Double
        var detectors: [String]
        var reasons: [String]
        var confidence: Double
        var lastUpdate: Int64
        var forecast: GrowthForecast?
        /// The target was younger than its grace (reason `warmup_grace`: never throttled).
        var inGrace: Bool
        /// The span at which growth held when it was suspected: growth that
        /// comes in steps that far apart has not stopped within one.
        var spanSeconds: Double = 0
    }

    struct Watched: Sendable {
        var history = GrowthHistory()
        var lastEvaluated: Int64 = -1
        var suspicion: Suspicion?
        /// The settings its last evaluation used.
        var settings: ConfirmationSettings?
        var growth = GrowthTest.Cache()
        /// The kernel's fast path fired; the next samples confirm it or not.
        var fast: FastCandidate?
        var churn = ChurnMemory()
    }

    /// How often a target freed lately, kept for every target whether a fast
    /// candidate is open or not: the wait's 3 s are one draw, and churn that
    /// frees a few times a second has a quiet 3 s now and then. Judged on one
    /// window, a minute of `stress-ng --malloc` gives the fast path a score
    /// of tries, and one got through in a CI run (flagged at 33 s).
    struct ChurnMemory: Sendable {
        /// The run of falling samples going on (bytes).
        var falling: Float = 0
        /// Runs deeper than `fastChurnRunBytes` that ended, each weighing
        /// e^(-age / fastChurnMemorySeconds), as of `scoreTime`.
        var score: Float = 0
        var scoreTime: Int64 = 0

        mutating func add(time: Int64, held: Double, previous: Double, settings: ConfirmationSettings) {
            if held < previous {
                falling += Float(previous - held)
                return
            }
            guard falling > 0 else { return }
            if Double(falling) > settings.fastChurnRunBytes {
                score = Float(self.score(at: time, settings: settings)) + 1
                scoreTime = time
            }
            falling = 0
        }

        /// The decayed count of deep runs at `time`.
        func score(at time: Int64, settings: ConfirmationSettings) -> Double {
            guard score > 0 else { return 0 }
            return Double(score) * exp(-Double(time - scoreTime) / 1e9 / settings.fastChurnMemorySeconds)
        }
    }

    struct FastCandidate: Sendable {
        var since: Int64
        var level: Double
        /// The lowest held memory since it opened: a leak does not give back.
        var low: Double
        var rate: Double
        var context: AssessmentContext
        var detectors: [String]
        var reasons: [String]
        var confidence: Double
        var fit: Double
        /// The wait before it is judged (see `confirmFast`), and the last
        /// sample of its first half: growth must go on through the second
        /// half too, not only add up over the whole wait.
        var wait: Double = 0
        var midway: (time: Int64, level: Double)?
        /// What the target gave back on the way: a leak does not free,
        /// allocate/free churn frees a good part of what it takes. Counted in
        /// runs of falling samples, each deeper than noise can fall (see
        /// `ConfirmationSettings.fastChurnShare`).
        var fell: Double = 0
        var falling: Double = 0
        /// How many such runs ended: churn frees often, a leak not at all.
        var runs = 0
        var last: Double = 0

        /// `fell` and `runs` with the sample `held` taken in, and the run it ends or extends.
        func churn(after held: Double, settings: ConfirmationSettings) -> (fell: Double, falling: Double, runs: Int) {
            if held < last { return (fell, falling + last - held, runs) }
            let deep = falling > settings.fastChurnRunBytes
            return (fell + (deep ? falling : 0), 0, runs + (deep ? 1 : 0))
        }
    }

    /// Per-target settings: nil, the node's.
    public typealias SettingsResolver = (AssessmentContext) -> ConfirmationSettings

    /// Targets by key: a slot in `watched` (see `KeyTable` for why not a Dictionary).
    private var table = KeyTable()
    /// nil: a free slot (listed in `free`), or the target under analysis.
    private var watched: [Watched?] = []
    private var keys: [ConfirmationKey] = []
    private var free: [Int32] = []

    public init(settings: ConfirmationSettings = ConfirmationSettings(), maximumTargets: Int = 20_000) {
        self.settings = settings
        self.maximumTargets = maximumTargets
    }

    public var trackedTargets: Int { table.count }
    public var suspectedTargets: Int { watched.count { $0?.suspicion != nil } }
    /// What the histories take: a bound, since each is fixed-size.
    public var historyBytes: Int { table.count * GrowthHistory.bytesPerTarget }
    public var statistics: ConfirmationStatistics {
        ConfirmationStatistics(
            targets: trackedTargets, suspected: suspectedTargets, historyBytes: historyBytes, evicted: evicted)
    }

    /// One sample of a target. `context` is asked for only when an event comes of it.
    /// `cgroup`: a process's memory cgroup, whose growth the forecast uses
    /// (the limit and the usage are the cgroup's).
    public mutating func sample(
        _ key: ConfirmationKey, time: Int64, held: UInt64, context: () -> AssessmentContext,
        into events: inout [LeakEvent], resolve: SettingsResolver? = nil, cgroup: ConfirmationKey? = nil
    ) {
        let slot = Int(self.slot(key))
        let node = settings
        // in place: most samples only add to the rings
        guard Self.add(&self.watched[slot]!, time: time, held: held, node: node) else { return }
        // moved out and back for the analysis: no copy of the rings, and the cgroup's history stays readable
        var watched = self.watched[slot]!
        self.watched[slot] = nil
        let event: LeakEvent?
        if let fast = watched.fast {
            event = Self.confirmFast(&watched, fast, time: time, held: Double(held), context: context, node: node)
        } else {
            event = Self.evaluate(
                &watched, time: time, context: context, node: node, resolve: resolve,
                cgroup: cgroup.flatMap { self[$0]?.history })
        }
        self.watched[slot] = watched
        if let event { events.append(event) }
    }

    /// How long a suspected or waiting target may send nothing before `idle`
    /// speaks for it: longer than the kernel's heartbeat (10 s), which a
    /// target whose memory still moves sends at least that often.
    public static let quietNanoseconds: Int64 = 15_000_000_000
    /// How often the live agent and replay call `idle`.
    public static let idleIntervalNanoseconds: Int64 = 5_000_000_000

    /// Targets gone quiet. The kernel sends a sample only when memory moves
    /// (a step, and a heartbeat on a later move), so a target whose memory
    /// stopped moving sends nothing, and its suspicion (or fast candidate)
    /// would never be judged again: a cache that filled fast and then sat
    /// still stayed suspected until it exited. Each suspected or waiting
    /// target whose newest sample is older than `quietNanoseconds` gets its
    /// last value again at `now` (silence means no movement, as the rings
    /// already assume). The live agent calls this every few seconds and
    /// replay as its trace's clock passes, so the two agree.
    public mutating func idle(now: Int64, into events: inout [LeakEvent]) {
        for slot in watched.indices {
            guard let target = watched[slot], target.suspicion != nil || target.fast != nil,
                target.history.lastTime >= 0, now - target.history.lastTime >= Self.quietNanoseconds
            else { continue }
            var context = target.suspicion?.identity ?? target.fast!.context
            context.timeNanoseconds = now
            let held = UInt64(max(0, target.history.latest))
            sample(keys[slot], time: now, held: held, context: { context }, into: &events)
        }
    }

    /// A kernel verdict change: the fast path (≥ 10 MiB/s for 6 s,
    /// docs/detectors.md). It only opens a candidate: the next samples must
    /// show the growth going on (`fastConfirmSeconds` more at half the rate,
    /// over the wait's second half as well as over all of it) to a new high
    /// (above every peak in the history), so a step or a heap resize that
    /// ends within the wait, or an allocation burst that revisits earlier
    /// peaks, is no leak.
    public mutating func kernelVerdict(
        _ key: ConfirmationKey, verdict: DetectorVerdict, context: AssessmentContext, resolve: SettingsResolver? = nil,
        cgroup: ConfirmationKey? = nil
    ) -> LeakEvent? {
        guard verdict.factors.contains(.fast), !Assessor.vetoed(verdict) else { return nil }
        let rate = Double(verdict.growthBytesPerSecond)
        guard rate > 0 else { return nil }
        let s = resolve?(context) ?? settings
        // a process that restarts grows back fast to where its predecessor was: its cgroup
        // must reach a new high too
        if let cgroup, let history = self[cgroup]?.history,
            let peak = history.peakBefore(seconds: s.fastSpanSeconds),
            history.latest <= peak + GrowthTest(settings: s).tolerance(level: history.latest)
        {
            return nil
        }
        let node = settings
        var event: LeakEvent?
        update(key) { watched in
            guard watched.suspicion == nil, watched.fast == nil else { return }
            watched.settings = s
            let level = watched.history.firstTime >= 0 ? watched.history.latest : Double(context.usage)
            let peak = watched.history.peakBefore(seconds: s.fastSpanSeconds)
            if let peak, level <= peak + GrowthTest(settings: s).tolerance(level: level) { return }
            // urgency overrides patience: a limit nearer than the wait would be met unannounced
            let headroom = context.limit.map { Double($0) - Double(context.usage) } ?? .infinity
            watched.fast = FastCandidate(
                since: context.timeNanoseconds, level: level, low: level, rate: rate, context: context,
                detectors: DetectorKind.allCases.filter { verdict.hasFired($0) }.map(\.name),
                reasons: verdict.reasons.names, confidence: Assessor.confidence(verdict),
                fit: Double(verdict.raw.level_r2) / 1000, wait: min(s.fastConfirmSeconds, headroom / rate / 2),
                last: level)
            // the limit comes before the next samples could confirm: now or never
            if let limit = context.limit, (Double(limit) - Double(context.usage)) / rate / 2 <= 1, let fast = watched.fast {
                event = Self.confirmFast(
                    &watched, fast, time: context.timeNanoseconds, held: level, context: { context }, node: node, now: true)
            }
        }
        return event
    }

    private mutating func update(_ key: ConfirmationKey, _ body: (inout Watched) -> Void) {
        let slot = Int(slot(key))
        body(&watched[slot]!)
    }

    private subscript(key: ConfirmationKey) -> Watched? {
        table.find(key.raw).flatMap { watched[Int($0)] }
    }

    /// The key's slot; a new target gets one (evicting the oldest when full).
    @inline(__always)
    private mutating func slot(_ key: ConfirmationKey) -> Int32 {
        if let slot = table.find(key.raw) { return slot }
        if table.count >= maximumTargets { evictOldest() }
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            watched[Int(slot)] = Watched()
            keys[Int(slot)] = key
        } else {
            slot = Int32(watched.count)
            watched.append(Watched())
            keys.append(key)
        }
        table.insert(key.raw, slot)
        return slot
    }

    private mutating func remove(_ key: ConfirmationKey) -> Watched? {
        guard let slot = table.remove(key.raw) else { return nil }
        let removed = watched[Int(slot)]
        watched[Int(slot)] = nil
        free.append(slot)
        return removed
    }

    /// A fast candidate after its confirmation time: a suspicion, or nothing.
    private static func confirmFast(
        _ watched: inout Watched, _ fast: FastCandidate, time: Int64, held: Double, context: () -> AssessmentContext,
        node: ConfirmationSettings, now: Bool = false
    ) -> LeakEvent? {
        let s = watched.settings ?? node
        let waited = Double(time - fast.since) / 1e9
        let churn = fast.churn(after: held, settings: s)
        guard now || waited >= fast.wait else {
            watched.fast?.low = min(fast.low, held)
            watched.fast?.fell = churn.fell
            watched.fast?.falling = churn.falling
            watched.fast?.runs = churn.runs
            watched.fast?.last = held
            if waited <= fast.wait / 2 { watched.fast?.midway = (time, held) }
            return nil
        }
        watched.fast = nil
        guard held - fast.level >= 0.5 * fast.rate * waited else { return nil }
        // a step or a heap resize that ends within the wait still adds up to
        // half the rate over all of it; a leak goes on growing to its end, and
        // does not slow down within seconds (the kernel's window asks the same)
        if !now {
            let midway = fast.midway ?? (fast.since, fast.level)
            let second = Double(time - midway.time) / 1e9
            guard held - midway.level >= 0.5 * fast.rate * second else { return nil }
            let first = Double(midway.time - fast.since) / 1e9
            if first >= fast.wait / 4, second > 0 {
                let firstRate = (midway.level - fast.level) / first
                guard (held - midway.level) / second >= 0.5 * firstRate else { return nil }
            }
        }
        // allocate/free churn climbs as fast between its frees: a fall back
        // below where the candidate opened is no leak
        guard min(fast.low, held) >= fast.level - GrowthTest(settings: s).tolerance(level: fast.level) else { return nil }
        // nor is churn that frees as it climbs: a malloc stress gives back a
        // quarter to most of what it takes within seconds (stress-ng --malloc,
        // docs/detectors.md); a leak's own drops are noise
        let deepNow = churn.falling > s.fastChurnRunBytes
        let fell = churn.fell + (deepNow ? churn.falling : 0)
        guard fell <= s.fastChurnShare * max(0, held - fast.level) else { return nil }
        // and churn that frees little but often: early on, a malloc stress's
        // live set grows so fast that its frees are a small share of it
        guard churn.runs + (deepNow ? 1 : 0) < s.fastChurnRuns else { return nil }
        // nor churn that freed often lately, if not in this wait (unless the limit is
        // nearer than a wait: an OOM kill seconds away is worth saying, whatever the shape)
        guard now || watched.churn.score(at: time, settings: s) < s.fastChurnRecentRuns else { return nil }
        let ctx = context()
        let rate = waited > 0 ? (held - fast.level) / waited : fast.rate
        var forecast: GrowthForecast?
        if let limit = ctx.limit {
            let seconds = max(0, (Double(limit) - Double(ctx.usage)) / rate)
            guard seconds <= s.fastHorizonSeconds else { return nil }
            // seconds of growth: the rate may be off by a quarter either way
            forecast = GrowthForecast(
                model: .linear, seconds: seconds, low: seconds * 0.75, high: seconds * 1.5, rate: rate, fit: fast.fit)
        }
        let suspicion = Suspicion(
            since: ctx.timeNanoseconds, identity: ctx, rate: rate, startLevel: fast.level, detectors: fast.detectors,
            reasons: fast.reasons, confidence: fast.confidence, lastUpdate: ctx.timeNanoseconds, forecast: forecast,
            inGrace: Double(watched.history.age) / 1e9 < s.graceSeconds)
        watched.suspicion = suspicion
        return Self.event(.suspected, suspicion, context: ctx)
    }

    /// The target is gone or starts over (exit, exec, emptied cgroup): its
    /// suspicion ends and its history goes.
    public mutating func end(_ key: ConfirmationKey, reason: ClearReason, context: AssessmentContext) -> LeakEvent? {
        guard let watched = remove(key), let suspicion = watched.suspicion else { return nil }
        return Self.cleared(suspicion, reason: reason, context: context)
    }

    public func isSuspected(_ key: ConfirmationKey) -> Bool { self[key]?.suspicion != nil }

    // MARK: right-sizing (/api/v1/recommendations)

    /// Every watched cgroup's history, with the growth of the leak suspected
    /// in it, if any. The onset is where the suspected growth began: the
    /// suspicion's start less the three spans the growth test had to see.
    public func cgroupHistories() -> [(id: UInt64, history: GrowthHistory, leak: LeakTrend?)] {
        var result: [(id: UInt64, history: GrowthHistory, leak: LeakTrend?)] = []
        for (slot, key) in keys.enumerated() where key.raw & (1 << 63) == 0 {
            guard let watched = watched[slot] else { continue }
            result.append((key.raw, watched.history, watched.suspicion.map(Self.trend)))
        }
        return result
    }

    /// Process suspicions by the cgroup path they were suspected in: a
    /// cgroup's history pairs with them through its path.
    public func processLeaks() -> [String: LeakTrend] {
        var leaks: [String: LeakTrend] = [:]
        for (slot, key) in keys.enumerated() where key.raw & (1 << 63) != 0 {
            guard let suspicion = watched[slot]?.suspicion else { continue }
            let trend = Self.trend(suspicion)
            let cgroup = suspicion.identity.cgroup
            if trend.bytesPerSecond > leaks[cgroup]?.bytesPerSecond ?? 0 { leaks[cgroup] = trend }
        }
        return leaks
    }

    private static func trend(_ suspicion: Suspicion) -> LeakTrend {
        LeakTrend(
            bytesPerSecond: suspicion.rate, onset: Double(suspicion.since) / 1e9 - 3 * suspicion.spanSeconds)
    }

    private mutating func evictOldest() {
        var oldest: Int?
        for i in watched.indices {
            guard let candidate = watched[i] else { continue }
            if let o = oldest, watched[o]!.history.lastTime <= candidate.history.lastTime { continue }
            oldest = i
        }
        guard let oldest else { return }
        _ = remove(keys[oldest])
        evicted += 1
    }

    // MARK: deciding

    /// Adds a sample; true when the analysis is due: a fast candidate waits
    /// for its confirmation, or the fine ring completed a bucket.
    private static func add(_ watched: inout Watched, time: Int64, held: UInt64, node: ConfirmationSettings) -> Bool {
        if watched.history.firstTime >= 0 {
            watched.churn.add(
                time: time, held: Double(held), previous: watched.history.latest, settings: watched.settings ?? node)
        }
        watched.history.add(time: time, held: held)
        if watched.fast != nil { return true }
        // once per fine bucket: the rings only change their completed buckets then
        let fine = watched.history.fine.openNumber
        guard fine != watched.lastEvaluated, watched.history.fine.count > 0 else { return false }
        watched.lastEvaluated = fine
        return true
    }

    private static func evaluate(
        _ watched: inout Watched, time: Int64, context: () -> AssessmentContext, node: ConfirmationSettings,
        resolve: SettingsResolver?, cgroup: GrowthHistory?
    ) -> LeakEvent? {
        if let suspicion = watched.suspicion {
            return follow(&watched, suspicion, time: time, context: context, node: node, cgroup: cgroup)
        }
        let ctx = context()
        let s = resolve?(ctx) ?? node
        if watched.settings != s { watched.growth = GrowthTest.Cache() }
        watched.settings = s
        let test = GrowthTest(settings: s)
        guard let growth = test.longest(watched.history, cache: &watched.growth) else { return nil }
        // growth that ended before it was judged: its blocks still pass for up to a span after
        if Self.stalled(watched.history, growth: growth, test: test) { return nil }
        let lasted = 3 * Double(growth.span.seconds)
        let points = Self.forecastPoints(watched.history, cgroup: cgroup, span: growth.span)
        var forecast: GrowthForecast?
        if let limit = ctx.limit {
            switch GrowthForecast.make(
                points: points.points, ceiling: points.ceiling(limit: limit, usage: ctx.usage, cgroupHeld: ctx.cgroupHeld), excess: points.excess,
                now: Double(ctx.timeNanoseconds) / 1e9)
            {
            case .levellingOff, .unreachable: return nil
            // too few points to fit (a young target's first minute): only patience can speak
            case .none: forecast = nil
            case .forecast(let f): forecast = f
            }
        }
        let age = Double(watched.history.age) / 1e9
        var reasons = ["sustained_growth", "new_high"]
        // judged on the forecast's cautious side (between the point and the
        // interval's far end): a curved fit over a cycle's trough, or a few
        // overlapping workers, promise more than they keep
        let cautious = forecast.map { ($0.seconds * $0.high).squareRoot() }
        if let cautious, lasted >= s.minimumUrgentSeconds, cautious <= s.urgency * lasted,
            // a process's urgency is its cgroup's: workers that come and go
            // grow one by one while the cgroup they share stays where it was
            !points.fromCgroup || cgroup.map({ test.evaluate($0, span: growth.span) != nil }) == true
        {
            reasons.append("urgent_forecast")
        } else {
            guard lasted >= s.patienceSeconds, age >= s.graceSeconds else { return nil }
            // a limit further away than the target has lived, or than the horizon, can wait:
            // a daily cycle's first rising half looks like a leak for hours, and ends
            if let cautious, cautious > min(s.horizonSeconds, s.horizonPerAge * age) { return nil }
        }
        let rate = forecast?.rate ?? GrowthForecast.theilSen(points.points)
        guard rate > 0 else { return nil }
        let level = growth.blocks.means.2
        if growth.blocks.peaks.2 - growth.blocks.floors.2 > max(8 * test.tolerance(level: level), 0.1 * level) {
            reasons.append("rising_floor_under_sawtooth")
        }
        let fit = forecast?.fit ?? 1
        let suspicion = Suspicion(
            since: ctx.timeNanoseconds, identity: ctx, rate: rate, startLevel: growth.blocks.floors.0,
            detectors: ["history"], reasons: reasons,
            confidence: Self.confidence(lasted: lasted, fit: fit, settings: s),
            lastUpdate: ctx.timeNanoseconds, forecast: forecast, inGrace: age < s.graceSeconds,
            spanSeconds: Double(growth.span.seconds))
        watched.suspicion = suspicion
        return event(.suspected, suspicion, context: ctx)
    }

    /// Whether the growth's newest top has stood longer than its rhythm
    /// explains: more than twice any wait between its tops in the window,
    /// three buckets, and the time the trend takes to climb through the
    /// noise around it before that top. A cache that filled to its bound or
    /// a warm-up's last climb stalls; a leak keeps its own pace of new tops,
    /// however slow, stepped, sawtoothed or noisy it is (`GrowthHistory.tops`).
    static func stalled(_ history: GrowthHistory, growth: GrowthTest.Result, test: GrowthTest) -> Bool {
        let tolerance = test.tolerance(level: growth.blocks.means.2)
        let slope = growth.rate
        guard slope > 0,
            let tops = history.tops(since: growth.blocks.start, ring: growth.span.ring, tolerance: tolerance, slope: slope)
        else { return false }
        let width = Double(history.rings[growth.span.ring].widthNanoseconds) / 1e9
        return tops.standing > max(2 * tops.longestWait, 3 * width, tops.spread / slope)
    }

    /// 0.5 at the first evidence, toward 1 as growth lasts through the
    /// patience window with a good fit.
    static func confidence(lasted: Double, fit: Double, settings: ConfirmationSettings) -> Double {
        let duration = min(1, lasted / max(settings.patienceSeconds, 1))
        return 0.5 + 0.5 * duration * max(0, min(1, fit))
    }

    /// A suspected target: clear it when growth stopped, else re-forecast.
    private static func follow(
        _ watched: inout Watched, _ current: Suspicion, time: Int64, context: () -> AssessmentContext,
        node: ConfirmationSettings, cgroup: GrowthHistory?
    ) -> LeakEvent? {
        var suspicion = current
        let s = watched.settings ?? node
        let history = watched.history
        let level = history.latest
        let test = GrowthTest(settings: s)
        let tol = test.tolerance(level: level)
        // memory gave back what the suspicion was about: a batch cycle, a cache flush
        let window = min(max(s.clearWindow(rate: suspicion.rate, level: level), 2 * suspicion.spanSeconds), s.maximumClearSeconds)
        let suspectedFor = Double(time - suspicion.since) / 1e9
        if level < suspicion.startLevel - tol {
            watched.suspicion = nil
            return cleared(suspicion, reason: .growthStopped, context: context())
        }
        if suspectedFor >= window {
            let recent = Self.recentPoints(history, seconds: window)
            if recent.count >= 6 {
                let slope = GrowthForecast.theilSen(recent)
                if slope < 0.25 * suspicion.rate {
                    watched.suspicion = nil
                    return cleared(suspicion, reason: .growthStopped, context: context())
                }
            }
        }
        // the target outgrew its grace: say so at once, the responder waits for it
        if suspicion.inGrace, Double(history.age) / 1e9 >= s.graceSeconds {
            suspicion.inGrace = false
            suspicion.lastUpdate = time
            watched.suspicion = suspicion
            return event(.updated, suspicion, context: context())
        }
        // re-forecast at most once per update interval
        guard Double(time - suspicion.lastUpdate) / 1e9 >= s.updateIntervalSeconds else { return nil }
        let ctx = context()
        guard let limit = ctx.limit, let growth = test.longest(history, cache: &watched.growth) else { return nil }
        let points = Self.forecastPoints(history, cgroup: cgroup, span: growth.span)
        guard case .forecast(let forecast) = GrowthForecast.make(
            points: points.points, ceiling: points.ceiling(limit: limit, usage: ctx.usage, cgroupHeld: ctx.cgroupHeld), excess: points.excess,
            now: Double(ctx.timeNanoseconds) / 1e9)
        else { return nil }
        let lasted = 3 * Double(growth.span.seconds)
        let previous = suspicion.forecast
        // the forecast of the last event, aged by the time since
        let expected = previous.map { $0.seconds - Double(time - suspicion.lastUpdate) / 1e9 }
        let moved =
            expected.map { abs(forecast.seconds - $0) > s.updateChange * max(forecast.seconds, 1) } ?? true
        let confidence = max(suspicion.confidence, Self.confidence(lasted: lasted, fit: forecast.fit, settings: s))
        let confidenceRose = confidence >= suspicion.confidence + 0.1
        suspicion.rate = forecast.rate
        guard moved || previous?.model != forecast.model || confidenceRose else {
            watched.suspicion = suspicion
            return nil
        }
        suspicion.forecast = forecast
        suspicion.confidence = confidence
        suspicion.lastUpdate = time
        watched.suspicion = suspicion
        return event(.updated, suspicion, context: ctx)
    }

    // MARK: history to points

    /// Bucket means over the growth window of `span` (three blocks), seconds and bytes.
    static func points(_ history: GrowthHistory, span: GrowthTest.Span) -> [GrowthForecast.Point] {
        let ring = history.rings[span.ring]
        let width = Double(ring.widthNanoseconds) / 1e9
        let per = Int(span.seconds / Int64(width))
        let n = min(ring.count, 3 * per)
        return (ring.count - n..<ring.count).map {
            GrowthForecast.Point(t: (Double(ring.number($0)) + 0.5) * width, y: Double(ring[$0].mean))
        }
    }

    /// What a forecast fits: the cgroup's growth for a process (the limit and
    /// the usage it is compared with are the cgroup's: a leak spread over
    /// workers reaches it at the cgroup's rate), when its history holds the span.
    static func forecastPoints(_ history: GrowthHistory, cgroup: GrowthHistory?, span: GrowthTest.Span) -> ForecastInput {
        var source = history
        var fromCgroup = false
        if let cgroup, points(cgroup, span: span).count >= points(history, span: span).count {
            source = cgroup
            fromCgroup = true
        }
        let ring = source.rings[span.ring]
        let n = min(ring.count, 3 * Int(span.seconds / (ring.widthNanoseconds / 1_000_000_000)))
        let growth = points(source, span: span)
        // peaks over the trend, not over their own bucket's mean: a sawtooth
        // slower than a bucket keeps each bucket's high near its mean, yet
        // its teeth stand half a cycle over the trend, and the first peak
        // that reaches the limit is the one that counts
        let width = Double(ring.widthNanoseconds) / 1e9
        let slope = max(0, GrowthForecast.theilSen(growth))
        let intercept = Quantiles.median(growth.map { $0.y - slope * $0.t }) ?? 0
        // within a bucket, steady growth alone puts the high half a bucket's growth over the trend
        let withinBucket = slope * width / 2
        let excess = (ring.count - n..<ring.count).map {
            max(0, Double(ring[$0].high) - (intercept + slope * (Double(ring.number($0)) + 0.5) * width) - withinBucket)
        }
        return ForecastInput(
            points: growth, latest: source.latest, fromCgroup: fromCgroup, excess: Self.peaks(excess))
    }

    /// Heights over the trend from the highest in each sixth of the window:
    /// the lowest of those (reached in every sixth), their median (in most: a
    /// sawtooth's teeth, and spikes that come back about as often, one of
    /// which will meet the limit first) and the highest (a single spike, or
    /// the noise's rarest excursion).
    static func peaks(_ excess: [Double]) -> GrowthForecast.Excess {
        guard !excess.isEmpty else { return GrowthForecast.Excess() }
        let parts = min(6, excess.count)
        let highs = (0..<parts).map { part in
            excess[(part * excess.count / parts)..<((part + 1) * excess.count / parts)].max()!
        }.sorted()
        return GrowthForecast.Excess(least: highs[0], typical: highs[(parts - 1) / 2], high: highs[parts - 1])
    }

    /// A forecast's input: the growth, what it is now, and its peaks over its means.
    struct ForecastInput {
        var points: [GrowthForecast.Point]
        var latest: Double
        /// The points are the cgroup's, not the process's own.
        var fromCgroup = false
        var excess: GrowthForecast.Excess

        /// The limit in the points' terms: what of the usage they do not count
        /// (page cache, other processes) stays as it is.
        func ceiling(limit: UInt64, usage: UInt64, cgroupHeld: UInt64?) -> Double {
            // a cgroup's history may lag its usage by a sample (replay analyses a
            // cgroup at most once per aggregation step): a spike in one and not
            // in the other would count as memory the forecast does not see
            let counted = fromCgroup ? cgroupHeld.map { Double($0) } ?? latest : latest
            return Double(limit) - (Double(usage) - counted)
        }
    }

    /// Bucket means of the last `seconds`, from the finest ring that holds them.
    static func recentPoints(_ history: GrowthHistory, seconds: Double) -> [GrowthForecast.Point] {
        for ring in history.rings {
            let width = Double(ring.widthNanoseconds) / 1e9
            let n = Int((seconds / width).rounded(.up))
            guard n <= ring.capacity else { continue }
            guard ring.count >= n else { return [] }
            return (ring.count - n..<ring.count).map {
                GrowthForecast.Point(t: (Double(ring.number($0)) + 0.5) * width, y: Double(ring[$0].mean))
            }
        }
        return []
    }

    // MARK: events

    private static func event(_ kind: LeakEvent.Kind, _ suspicion: Suspicion, context: AssessmentContext) -> LeakEvent {
        let identity = suspicion.identity
        return LeakEvent(
            kind: kind, timeNanoseconds: context.timeNanoseconds, scope: identity.scope, pid: identity.pid,
            comm: identity.comm, cgroup: identity.cgroup, detectors: suspicion.detectors,
            confidence: suspicion.confidence, growthBytesPerSecond: Int64(suspicion.rate.rounded()),
            secondsToLimit: suspicion.forecast?.seconds, limit: context.limit,
            reasons: suspicion.inGrace ? suspicion.reasons + ["warmup_grace"] : suspicion.reasons,
            suspectedSeconds: kind == .updated ? Double(context.timeNanoseconds - suspicion.since) / 1e9 : nil,
            forecastInterval: suspicion.forecast.map { $0.low...$0.high }, forecastModel: suspicion.forecast?.model.rawValue)
    }

    private static func cleared(_ suspicion: Suspicion, reason: ClearReason, context: AssessmentContext) -> LeakEvent {
        let identity = suspicion.identity
        return LeakEvent(
            kind: .cleared, timeNanoseconds: context.timeNanoseconds, scope: identity.scope, pid: identity.pid,
            comm: identity.comm, cgroup: identity.cgroup, detectors: [], confidence: suspicion.confidence,
            growthBytesPerSecond: 0, secondsToLimit: nil, limit: identity.limit, reasons: [reason.rawValue],
            suspectedSeconds: Double(context.timeNanoseconds - suspicion.since) / 1e9)
    }
}
