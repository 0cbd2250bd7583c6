import MemwardenModel

/// What the Kubernetes sink writes for one AgentEvent: the Event's reason, action, type and
/// note, and the pod annotations to set (a value) or remove (nil). Pure, so tests check the
/// mapping without a server.
public struct KubernetesEventFormat: Sendable, Hashable {
    public var reason: String
    public var action: String
    /// "Normal" or "Warning".
    public var type: String
    public var note: String
    /// memwarden.io/… → value, or nil to remove.
    public var annotations: [String: String?]

    public static let reasonLimit = 128
    public static let noteLimit = 1024

    public static let leakSuspectedAnnotation = "memwarden.io/leak-suspected"
    public static let leakSinceAnnotation = "memwarden.io/leak-since"
    public static let budgetTierAnnotation = "memwarden.io/budget-tier"
    public static let throttledAnnotation = "memwarden.io/throttled"

    public init(_ event: AgentEvent) {
        let container = event.target?.identity.pod?.container
        let who = container.map { "container \($0)" } ?? "pod"
        var process = ""
        if let pid = event.target?.pid {
            let comm = event.target?.comm.map { " " + $0 } ?? ""
            process = " (pid \(pid)\(comm))"
        }
        type = event.severity == .info ? "Normal" : "Warning"
        var annotations: [String: String?] = [:]
        var note: String
        switch (event.type, event.details) {
        case (.leakSuspected, .leak(let leak)):
            reason = "LeakSuspected"
            action = "Detected"
            note = "memory leak suspected in \(who)\(process): growing \(Self.bytes(leak.growthBytesPerSecond))/s, confidence \(Self.decimal(leak.confidence, 2))"
            if let seconds = leak.secondsToLimit { note += ", limit in \(Self.duration(seconds))" }
            if !leak.detectors.isEmpty { note += "; detectors: \(leak.detectors.joined(separator: ", "))" }
            if !leak.reasons.isEmpty { note += "; reasons: \(leak.reasons.joined(separator: ", "))" }
            annotations[Self.leakSuspectedAnnotation] = "true"
            annotations[Self.leakSinceAnnotation] = WallClock.rfc3339(epochNanoseconds: event.epochNanoseconds)
        case (.leakCleared, .leak(let leak)):
            reason = "LeakCleared"
            action = "Cleared"
            note = "memory leak suspicion cleared for \(who)\(process)"
            if let seconds = leak.suspectedSeconds { note += " after \(Self.duration(seconds))" }
            if !leak.reasons.isEmpty { note += "; reasons: \(leak.reasons.joined(separator: ", "))" }
            annotations[Self.leakSuspectedAnnotation] = .some(nil)
            annotations[Self.leakSinceAnnotation] = .some(nil)
        case (.budgetRecovered, .budget(let budget)):
            reason = "BudgetRecovered"
            action = "Recovered"
            note = "\(who) back below its \(budget.tier.rawValue) budget tier (rule \(budget.rule)): \(Self.bytes(Int64(clamping: budget.usageBytes))) of \(Self.bytes(Int64(clamping: budget.budgetBytes)))"
            annotations[Self.budgetTierAnnotation] = .some(nil)
        case (_, .budget(let budget)):
            reason = "Budget" + budget.tier.rawValue.prefix(1).uppercased() + budget.tier.rawValue.dropFirst()
            action = "BudgetExceeded"
            note = "\(who) reached its \(budget.tier.rawValue) budget tier (rule \(budget.rule)): \(Self.bytes(Int64(clamping: budget.usageBytes))) of \(Self.bytes(Int64(clamping: budget.budgetBytes))) (\(Self.decimal(budget.share * 100, 1))%)"
            if let seconds = budget.secondsToBudget { note += ", budget reached in \(Self.duration(seconds))" }
            annotations[Self.budgetTierAnnotation] = budget.tier.rawValue
        case (.responseThrottle, .response(let response)):
            reason = "MemoryThrottled"
            action = response.dryRun ? "WouldThrottle" : "Throttled"
            note = "\(response.dryRun ? "dry run: would set" : "set") memory.high of \(who) to \(response.memoryHighAfter.map { Self.bytes(Int64(clamping: $0)) } ?? "max") (rule \(response.rule))"
            if let cap = response.growthCap {
                // what a reader of `kubectl describe pod` needs to know: the pod is slowed, not stopped, and how much
                note += ": memory it cannot give back, growth slowed to \(Self.bytes(Int64(clamping: cap.rateBytesPerSecond)))/s"
                    + ", \(Self.bytes(Int64(clamping: cap.allowanceBytes))) allowed since the cap started"
                if let seconds = cap.secondsToCeiling { note += "; at this rate the limit in \(Self.duration(seconds))" }
            }
            if !response.dryRun { annotations[Self.throttledAnnotation] = "true" }
        case (.responseRestore, .response(let response)):
            reason = "MemoryRestored"
            action = response.dryRun ? "WouldRestore" : "Restored"
            note = "restored memory.high of \(who) to \(response.memoryHighAfter.map { Self.bytes(Int64(clamping: $0)) } ?? "max")"
            if let why = response.reason { note += " (\(why))" }
            if !response.dryRun { annotations[Self.throttledAnnotation] = .some(nil) }
        case (.responseSkipped, .response(let response)):
            reason = "ResponseSkipped"
            action = "Skipped"
            note = "no response for \(who)" + (response.reason.map { ": \($0)" } ?? "")
        default:
            // Agent and policy events are about the node, not a pod; the sink skips them, but
            // the mapping stays total.
            reason = Self.camelCase(event.type.rawValue)
            action = "Reported"
            note = event.type.rawValue
        }
        self.note = Self.truncate(note, to: Self.noteLimit)
        self.annotations = annotations
        reason = Self.truncate(reason, to: Self.reasonLimit)
        action = Self.truncate(action, to: Self.reasonLimit)
    }

    /// At most `limit` UTF-8 bytes, cut at a character boundary, "…" marking a cut.
    static func truncate(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var result = ""
        var used = 0
        let ellipsis = "…"
        for character in text {
            let size = character.utf8.count
            if used + size + ellipsis.utf8.count > limit { break }
            result.append(character)
            used += size
        }
        return result + ellipsis
    }

    static func camelCase(_ text: String) -> String {
        text.split(whereSeparator: { $0 == "." || $0 == "_" }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    static func bytes(_ value: Int64) -> String {
        let magnitude = Double(value.magnitude)
        let sign = value < 0 ? "-" : ""
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where magnitude >= Double(size) {
            return sign + decimal(magnitude / Double(size), 1) + " " + unit
        }
        return sign + String(value.magnitude) + " B"
    }

    static func decimal(_ value: Double, _ places: Int) -> String {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = (value * scale).rounded()
        let whole = Int64(scaled / scale)
        let fraction = Int64(abs(scaled.truncatingRemainder(dividingBy: scale)))
        guard places > 0 else { return String(whole) }
        let digits = String(fraction)
        return (scaled < 0 && whole == 0 ? "-" : "") + String(whole) + "." + String(repeating: "0", count: places - digits.count) + digits
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 120 { return "\(Int(seconds.rounded())) s" }
        if seconds < 7200 { return "\(Int((seconds / 60).rounded())) min" }
        return "\(decimal(seconds / 3600, 1)) h"
    }
}
