/// What the detection confirmation stage holds: its memory is bounded
/// (a fixed-size history a target, at most `maximumTargets`) and this is how
/// an operator sees where it stands (stats lines, /metrics).
public struct ConfirmationStatistics: Sendable, Hashable {
    /// Targets with a history.
    public var targets: Int = 0
    public var suspected: Int = 0
    /// What their histories take (bytes).
    public var historyBytes: Int = 0
    /// Targets dropped, oldest first, to stay within the bound (total).
    public var evicted: UInt64 = 0

    public init(targets: Int = 0, suspected: Int = 0, historyBytes: Int = 0, evicted: UInt64 = 0) {
        self.targets = targets
        self.suspected = suspected
        self.historyBytes = historyBytes
        self.evicted = evicted
    }
}
