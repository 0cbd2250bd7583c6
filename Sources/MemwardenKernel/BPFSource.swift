import Logging
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// What the kernel source hands to the rest of the agent.
public enum SourceOutput: Sendable {
    /// The program is loaded and attached: from here on memory is watched.
    case attached
    /// Records in the order the ring buffer delivered them.
    case records([KernelRecord])
    /// A periodic reading of the kernel counters.
    case counters(KernelCounters)
}

/// The agent's kernel source: loads the program, drains the ring buffer on a
/// dedicated thread (libbpf handles never leave it), and streams batches of
/// records and periodic counters. Graceful shutdown detaches everything.
public final class BPFSource: Service, Sendable {
    public let output: AsyncStream<SourceOutput>
    private let continuation: AsyncStream<SourceOutput>.Continuation
    private let configuration: KernelConfiguration
    private let statsIntervalNanoseconds: UInt64
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let userspaceDrops = Atomic<UInt64>(0)
    private let onAttached: @Sendable () -> Void
    private let onSettled: @Sendable () -> Void

    /// - Parameter bufferedBatches: batches held for a slow consumer before the
    ///   oldest are dropped (and counted in `userspaceDrops`).
    /// - Parameter onAttached: called once, on the drain thread, when the program is attached
    ///   (systemd's READY=1 waits for this).
    /// - Parameter onSettled: called once, on the drain thread, at the first counters reading
    ///   (`statsInterval` after attaching: the other services have started by then).
    public init(
        configuration: KernelConfiguration, statsInterval: Duration = .seconds(5), bufferedBatches: Int = 4096,
        logger: Logger, onAttached: @escaping @Sendable () -> Void = {}, onSettled: @escaping @Sendable () -> Void = {}
    ) {
        self.onAttached = onAttached
        self.onSettled = onSettled
        (output, continuation) = AsyncStream.makeStream(of: SourceOutput.self, bufferingPolicy: .bufferingNewest(bufferedBatches))
        self.configuration = configuration
        let (seconds, attoseconds) = statsInterval.components
        statsIntervalNanoseconds = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        self.logger = logger
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await drainOnThread()
            } onCancel: {
                stopRequested.store(true, ordering: .relaxed)
            }
        } onGracefulShutdown: {
            self.stopRequested.store(true, ordering: .relaxed)
        }
    }

    /// Loads and attaches the program on a thread of its own, which then drains
    /// until a graceful shutdown; throws what the kernel refused.
    private func drainOnThread() async throws {
        let configuration = configuration
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            DedicatedThread.start { [self] in
                let monitor: KernelMonitor
                do {
                    monitor = try KernelMonitor(configuration: configuration)
                } catch {
                    continuation.finish()
                    done.resume(throwing: error)
                    return
                }
                logger.info(
                    "kernel program attached",
                    metadata: ["step_bytes": "\(configuration.stepBytes)", "heartbeat_ns": "\(configuration.heartbeatNanoseconds)"])
                send(.attached, count: 0)
                onAttached()
                var settled = false
                var nextStats = monotonicNanoseconds() + statsIntervalNanoseconds
                while !stopRequested.load(ordering: .relaxed) {
                    let records = monitor.poll(timeoutMilliseconds: 100)
                    if !records.isEmpty { send(.records(records), count: records.count) }
                    let now = monotonicNanoseconds()
                    if now >= nextStats {
                        send(.counters(counters(monitor)), count: 0)
                        nextStats = now + statsIntervalNanoseconds
                        if !settled {
                            settled = true
                            onSettled()
                        }
                    }
                }
                // what is already in the ring buffer still goes out, then a last reading
                let rest = monitor.drain()
                if !rest.isEmpty { send(.records(rest), count: rest.count) }
                send(.counters(counters(monitor)), count: 0)
                continuation.finish()
                done.resume()
            }
        }
    }

    private func counters(_ monitor: KernelMonitor) -> KernelCounters {
        var counters = monitor.counters()
        counters.userspaceDrops = userspaceDrops.load(ordering: .relaxed)
        return counters
    }

    private func send(_ output: SourceOutput, count: Int) {
        if case .dropped(let old) = continuation.yield(output), case .records(let lost) = old {
            userspaceDrops.add(UInt64(lost.count), ordering: .relaxed)
        }
    }
}
