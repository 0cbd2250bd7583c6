/// The agent's one account of what it lost. Each place that can lose something (the kernel's
/// ring buffer, the source's stream, stdout, the maps, each sink, the responder's inbox) keeps
/// a running total under its own name; the ledger turns the totals into what grew since the
/// last reading, which `agent.events_lost` reports, so each loss is reported once and none is
/// reported twice, whoever counted it.
public struct LossLedger: Sendable {
    private var last: [String: UInt64] = [:]

    public init() {}

    /// What grew since the last reading, by where it was lost (empty: nothing). A total below
    /// its last reading restarted (a reloaded program's counters start at zero): all of it is new.
    public mutating func grown(_ totals: [String: UInt64]) -> [String: UInt64] {
        var grown: [String: UInt64] = [:]
        for (place, total) in totals {
            let before = last[place, default: 0]
            let new = total >= before ? total - before : total
            if new > 0 { grown[place] = new }
            last[place] = total
        }
        return grown
    }
}

extension KernelCounters {
    /// The running totals of what the kernel side lost, by place, for the ledger. Not
    /// `stdoutDrops`: the stdout sink reports its own (`OutputSinks.lossTotals`).
    public var lossTotals: [String: UInt64] {
        ["ring_buffer": ringBufferDrops, "userspace": userspaceDrops, "map_full": mapFull]
    }
}
