extension AgentEvent {
    /// One JSON object on one line (docs/events.md). Unknown values are left
    /// out rather than written as null, except `pid` and `comm` of a leak
    /// event, which say "no process" for a cgroup target.
    public func jsonLine() -> String {
        var line = JSONLine()
        line.add("type", type.rawValue)
        line.add("time", WallClock.rfc3339(epochNanoseconds: epochNanoseconds))
        if let t { line.add("t", t, decimals: 6) }
        if let node { line.add("node", node) }
        line.add("severity", severity.rawValue)
        if let target { Self.add(target, to: &line, nullProcess: type.isLeak) }
        switch details {
        case .leak(let leak): Self.add(leak, type: type, to: &line)
        case .budget(let budget): Self.add(budget, to: &line)
        case .response(let response): Self.add(response, to: &line)
        case .policy(let policy): Self.add(policy, to: &line)
        case .agent(let agent): Self.add(agent, to: &line)
        }
        return line.finish()
    }

    package static func add(_ target: EventTarget, to line: inout JSONLine, nullProcess: Bool) {
        line.add("scope", target.scope.rawValue)
        if nullProcess || target.pid != nil { line.add("pid", target.pid) }
        if nullProcess || target.comm != nil { line.add("comm", target.comm) }
        line.addIdentity(target.identity)
    }

    private static func add(_ leak: LeakDetails, type: EventType, to line: inout JSONLine) {
        if type == .leakSuspected || type == .leakUpdated {
            line.addRaw("detectors", JSONLine.array(leak.detectors))
            line.add("confidence", leak.confidence, decimals: 3)
            line.add("growth_bytes_per_second", leak.growthBytesPerSecond)
            if let value = leak.secondsToLimit { line.add("seconds_to_limit", value, decimals: 1) }
            if let interval = leak.forecastInterval {
                line.add("seconds_to_limit_low", interval.lowerBound, decimals: 1)
                line.add("seconds_to_limit_high", interval.upperBound, decimals: 1)
            }
            if let value = leak.forecastModel { line.add("forecast_model", value) }
            if let value = leak.limit { line.add("limit", value) }
            line.addRaw("reasons", JSONLine.array(leak.reasons))
            if let value = leak.suspectedSeconds { line.add("suspected_seconds", value, decimals: 3) }
            if let value = leak.samplesLostRatio {
                line.add("forecast_confidence", "low")
                line.add("samples_lost_ratio", value, decimals: 4)
            }
        } else {
            line.addRaw("reasons", JSONLine.array(leak.reasons))
            if let value = leak.suspectedSeconds { line.add("suspected_seconds", value, decimals: 3) }
        }
    }

    private static func add(_ budget: BudgetDetails, to line: inout JSONLine) {
        line.add("tier", budget.tier.rawValue)
        line.add("rule", budget.rule)
        line.add("budget_bytes", budget.budgetBytes)
        line.add("usage_bytes", budget.usageBytes)
        line.add("budget_share", budget.share, decimals: 4)
        if let value = budget.growthBytesPerSecond { line.add("growth_bytes_per_second", value) }
        if let value = budget.secondsToBudget { line.add("seconds_to_budget", value, decimals: 1) }
    }

    private static func add(_ response: ResponseDetails, to line: inout JSONLine) {
        line.add("mode", response.mode.rawValue)
        line.add("rule", response.rule)
        line.add("dry_run", response.dryRun)
        if let value = response.memoryHighBefore { line.add("memory_high_before", value) }
        if let value = response.memoryHighAfter { line.add("memory_high_after", value) }
        if let value = response.floorBytes { line.add("floor_bytes", value) }
        if let value = response.pressureMicroseconds { line.add("pressure_microseconds", value) }
        if let value = response.reason { line.add("reason", value) }
        if let annotations = response.annotations { line.addRaw("annotations", JSONLine.object(annotations)) }
        if let verdict = response.verdict {
            var inner = JSONLine()
            inner.add("target", verdict.target)
            inner.add("confidence", verdict.confidence, decimals: 3)
            inner.add("suspected_since", WallClock.rfc3339(epochNanoseconds: verdict.suspectedSince))
            line.addRaw("verdict", inner.finish())
        }
        if let cap = response.growthCap {
            var inner = JSONLine()
            inner.add("rate_bytes_per_second", cap.rateBytesPerSecond)
            inner.add("allowance_bytes", cap.allowanceBytes)
            if let value = cap.usageBytes { inner.add("usage_bytes", value) }
            if let value = cap.ceilingBytes { inner.add("ceiling_bytes", value) }
            if let value = cap.secondsToCeiling { inner.add("seconds_to_ceiling", value, decimals: 1) }
            line.addRaw("growth_cap", inner.finish())
        }
    }

    private static func add(_ policy: PolicyDetails, to line: inout JSONLine) {
        line.add("file", policy.file)
        if let rules = policy.rules { line.add("rules", rules) }
        if !policy.problems.isEmpty { line.addRaw("problems", JSONLine.array(policy.problems)) }
    }

    private static func add(_ agent: AgentDetails, to line: inout JSONLine) {
        if let value = agent.version { line.add("version", value) }
        if let value = agent.message { line.add("message", value) }
        if !agent.lost.isEmpty {
            line.addRaw("lost", JSONLine.object(agent.lost.mapValues { String($0) }, raw: true))
        }
    }
}

extension AgentEvent.EventType {
    /// leak.suspected, leak.updated, leak.cleared: their `pid`/`comm` are null for a cgroup.
    public var isLeak: Bool { self == .leakSuspected || self == .leakCleared || self == .leakUpdated }
}

extension JSONLine {
    /// A JSON array of strings.
    public static func array(_ values: [String]) -> String {
        var text = "["
        for (i, value) in values.enumerated() {
            if i > 0 { text += "," }
            text += quoted(value)
        }
        return text + "]"
    }

    /// A JSON object, keys sorted; values quoted unless `raw` (already JSON).
    public static func object(_ values: [String: String], raw: Bool = false) -> String {
        var text = "{"
        for (i, key) in values.keys.sorted().enumerated() {
            if i > 0 { text += "," }
            text += quoted(key) + ":" + (raw ? values[key]! : quoted(values[key]!))
        }
        return text + "}"
    }
}
