import Glibc

/// Drives a workload: every tick it computes the elapsed time and lets the workload match its
/// shape, until the duration is up or a stop signal arrives. Levels come from the real elapsed
/// time, so a slow tick (a large allocation) never shifts the shape, it only delays a step.
struct Timeline {
    enum Outcome: Equatable {
        case finished
        case stopped(signal: Int32)
        /// The parent of a forked child is gone: the child must not live on alone.
        case orphaned
    }

    let start: UInt64
    /// Seconds; 0 runs until a stop signal.
    let duration: Double
    /// 50 ms: smooth enough for a 50 MiB/s leak (2.5 MiB a step), cheap when idle.
    let tickNanoseconds: UInt64 = 50_000_000

    func run(_ workload: any Workload, parent: pid_t? = nil) throws -> Outcome {
        while true {
            let elapsed = Clock.seconds(since: start)
            if duration > 0 && elapsed >= duration { return .finished }
            guard try workload.advance(to: elapsed) else { return .finished }
            // A parent killed with SIGKILL cannot stop its children; they notice the new parent
            // (init or a subreaper) instead.
            if let parent, getppid() != parent { return .orphaned }
            let ticks = (Clock.now() - start) / tickNanoseconds + 1
            if let signal = StopSignals.wait(until: start + ticks * tickNanoseconds) {
                return .stopped(signal: signal)
            }
        }
    }
}
