import Foundation
import Logging
import MemwardenKubernetes
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// Kubernetes Events (events.k8s.io/v1) on the pod, and memwarden.io/… pod annotations, for
/// events whose target resolved to a pod. Both off by default (policy `outputs.kubernetes`).
///
/// `submit` only appends to a bounded queue (the oldest is dropped when it is full, counted);
/// the Service's own task delivers, with a few retries for failures that may pass (no answer,
/// 5xx, 429). So a slow or dead API server delays neither detection nor the other sinks. A
/// repeat of the same (pod, reason) within `seriesWindow` updates the existing Event's series
/// (count, lastObservedTime) with a merge patch instead of creating another Event, the way the
/// kubelet's event recorder does.
public final class KubernetesSink: EventSink, Service {
    public struct Settings: Sendable {
        public var output: KubernetesOutputSettings
        public var queueSize: Int
        public var seriesWindow: Duration
        /// Attempts per request, the first included.
        public var maxAttempts: Int
        public var backoff: Backoff
        /// At graceful shutdown, what is still queued is delivered for at most this long:
        /// the restore the responder made on SIGTERM must take its `memwarden.io/throttled`
        /// annotation away, or the pod says "throttled" after the agent is gone. What is
        /// left after it is counted as dropped.
        public var shutdownFlush: Duration

        public init(
            output: KubernetesOutputSettings, queueSize: Int = 1000, seriesWindow: Duration = .seconds(1800), maxAttempts: Int = 3,
            backoff: Backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5)), shutdownFlush: Duration = .seconds(5)
        ) {
            self.shutdownFlush = shutdownFlush
            self.output = output
            self.queueSize = max(1, queueSize)
            self.seriesWindow = seriesWindow
            self.maxAttempts = max(1, maxAttempts)
            self.backoff = backoff
        }
    }

    public struct Statistics: Sendable, Hashable {
        public var queued: Int
        public var submitted: UInt64
        /// Dropped from a full queue (the oldest).
        public var dropped: UInt64
        /// Events not (fully) delivered: a request given up after its attempts, or refused
        /// with a 4xx.
        public var failed: UInt64
        /// Not for this sink: no pod in the target, or nothing enabled for the event's type.
        public var skipped: UInt64
        public var eventsCreated: UInt64
        /// Repeats that updated an existing Event's series.
        public var eventsUpdated: UInt64
        public var annotationPatches: UInt64

        /// What `agent.events_lost` reports for "sink.kubernetes".
        public var lost: UInt64 { dropped + failed }
    }

    public let name = "kubernetes"
    public let settings: Settings
    private let client: KubernetesClient
    private let logger: Logger
    private let reportingInstance: String

    private struct State {
        var queue: [AgentEvent] = []
        var head = 0
        var lastWarning: ContinuousClock.Instant?
        var suppressedWarnings = 0
        var statistics = Statistics(
            queued: 0, submitted: 0, dropped: 0, failed: 0, skipped: 0, eventsCreated: 0, eventsUpdated: 0, annotationPatches: 0)

        var count: Int { queue.count - head }

        mutating func popFirst() -> AgentEvent? {
            guard head < queue.count else { return nil }
            let event = queue[head]
            head += 1
            // Compact once the consumed prefix dominates: amortised O(1) per event.
            if head > 64 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return event
        }
    }

    private let state = Mutex(State())
    private let wakeup: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    static let reportingController = "memwarden.io/agent"
    static let annotatedTypes: Set<AgentEvent.EventType> = [
        .leakSuspected, .leakCleared, .budgetWarning, .budgetHigh, .budgetCritical, .budgetEmergency, .budgetRecovered,
        .responseThrottle, .responseRestore,
    ]

    public init(client: KubernetesClient, settings: Settings, logger: Logger) {
        self.client = client
        self.settings = settings
        self.logger = logger
        reportingInstance = KubernetesEventFormat.truncate("memwarden-\(client.configuration.nodeName)", to: KubernetesEventFormat.reasonLimit)
        let stream = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wakeup = stream.stream
        wake = stream.continuation
    }

    public var statistics: Statistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.queued = state.count
            return statistics
        }
    }

    // MARK: - EventSink

    public func submit(_ event: AgentEvent) {
        let wanted =
            event.target?.identity.pod != nil
            && (settings.output.events || (settings.output.annotations && Self.annotatedTypes.contains(event.type)))
        state.withLock { state in
            state.statistics.submitted += 1
            guard wanted else {
                state.statistics.skipped += 1
                return
            }
            state.queue.append(event)
            if state.count > settings.queueSize {
                _ = state.popFirst()
                state.statistics.dropped += 1
            }
        }
        if wanted { wake.yield() }
    }

    // MARK: - Service

    public func run() async throws {
        // Graceful shutdown does not cancel a delivery: the loop stops waiting for more and
        // delivers what is queued (the responder's last restores on SIGTERM among it), and
        // only past `shutdownFlush` is it cancelled. Cancelling at once would drop the
        // restore that takes a `memwarden.io/throttled` annotation away.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var series = SeriesMemory()
                for await _ in self.wakeup {
                    while !Task.isCancelled, let event = self.state.withLock({ $0.popFirst() }) {
                        await self.deliver(event, series: &series)
                    }
                }
            }
            group.addTask { [wake, flush = settings.shutdownFlush] in
                // also when the task is cancelled: then the sleep returns at once
                try? await gracefulShutdown()
                wake.finish()
                try? await Task.sleep(for: flush)
            }
            await group.next()
            group.cancelAll()
        }
        let left = state.withLock { state -> Int in
            let left = state.count
            while state.popFirst() != nil {}
            state.statistics.dropped += UInt64(left)
            return left
        }
        if left > 0 {
            logger.warning(
                "kubernetes sink: events not delivered before shutdown",
                metadata: ["dropped": "\(left)", "flush_seconds": "\(settings.shutdownFlush)"])
        }
    }

    // MARK: - Delivery

    /// Event names by (pod UID, reason), to update a series instead of creating a new Event.
    struct SeriesMemory {
        struct Entry {
            var namespace: String
            var name: String
            var count: Int
            var lastObserved: UInt64
        }
        var entries: [String: Entry] = [:]
        /// Pod UID → the leak-since annotation written for the current suspicion.
        var leakSince: [String: String] = [:]
        static let capacity = 4096

        mutating func rememberLeakSince(_ uid: String, _ value: String) {
            // Bounded: a pod whose leak.cleared never came (deleted) must not stay forever.
            if leakSince.count >= Self.capacity { leakSince.removeAll(keepingCapacity: true) }
            leakSince[uid] = value
        }

        mutating func remember(_ key: String, _ entry: Entry) {
            if entries[key] == nil, entries.count >= Self.capacity,
                let oldest = entries.min(by: { $0.value.lastObserved < $1.value.lastObserved })?.key
            {
                entries[oldest] = nil
            }
            entries[key] = entry
        }
    }

    private func deliver(_ event: AgentEvent, series: inout SeriesMemory) async {
        guard let pod = event.target?.identity.pod else { return }
        let format = KubernetesEventFormat(event)
        var delivered = true
        if settings.output.events {
            let done = await attempt("event \(format.reason) on \(pod.namespace)/\(pod.name)") {
                try await self.record(format, event: event, pod: pod, series: &series)
            }
            delivered = delivered && done
        }
        if settings.output.annotations, !format.annotations.isEmpty {
            // leak-since is the start of the suspicion: a repeated leak.suspected keeps it.
            var annotations = format.annotations
            let since = KubernetesEventFormat.leakSinceAnnotation
            switch event.type {
            case .leakSuspected:
                if let first = series.leakSince[pod.uid] {
                    annotations[since] = first
                } else if let value = annotations[since] ?? nil {
                    series.rememberLeakSince(pod.uid, value)
                }
            case .leakCleared:
                series.leakSince[pod.uid] = nil
            default:
                break
            }
            let done = await attempt("annotations on \(pod.namespace)/\(pod.name)") {
                try await self.annotate(pod, annotations)
            }
            delivered = delivered && done
        }
        if !delivered { state.withLock { $0.statistics.failed += 1 } }
    }

    /// Runs `operation` up to `maxAttempts` times while its failure may pass; false when it
    /// did not succeed.
    private func attempt(_ what: String, _ operation: () async throws -> Void) async -> Bool {
        var backoff = settings.backoff
        for attempt in 1...settings.maxAttempts {
            do {
                try await operation()
                return true
            } catch {
                if Task.isCancelled { return false }
                let retryable = (error as? KubernetesError).map { $0.status == nil || $0.status == 429 || ($0.status ?? 0) >= 500 } ?? false
                guard retryable, attempt < settings.maxAttempts else {
                    // A dead API server fails every event: one warning per 10 s, with a count.
                    let now = ContinuousClock.now
                    let suppressed = state.withLock { state -> Int? in
                        if let last = state.lastWarning, now - last < .seconds(10) {
                            state.suppressedWarnings += 1
                            return nil
                        }
                        defer { state.suppressedWarnings = 0 }
                        state.lastWarning = now
                        return state.suppressedWarnings
                    }
                    if let suppressed {
                        logger.warning(
                            "kubernetes sink: giving up",
                            metadata: ["what": "\(what)", "error": "\(error)", "attempts": "\(attempt)", "similar_since_last": "\(suppressed)"])
                    }
                    return false
                }
                try? await Task.sleep(for: backoff.next())
            }
        }
        return false
    }

    private func record(_ format: KubernetesEventFormat, event: AgentEvent, pod: PodMetadata, series: inout SeriesMemory) async throws {
        let key = "\(pod.uid)/\(format.reason)"
        let now = event.epochNanoseconds
        let window = UInt64(max(0, settings.seriesWindow.secondsDouble) * 1e9)
        if var entry = series.entries[key], now >= entry.lastObserved, now - entry.lastObserved <= window {
            entry.count += 1
            entry.lastObserved = now
            // Only the series: an events.k8s.io Event's note, reason and action are immutable.
            let patch: [String: Any] = ["series": ["count": entry.count, "lastObservedTime": Self.microTime(now)]]
            do {
                _ = try await client.send(
                    .PATCH, "/apis/events.k8s.io/v1/namespaces/\(entry.namespace)/events/\(entry.name)",
                    body: JSONSerialization.data(withJSONObject: patch), contentType: "application/merge-patch+json")
                series.remember(key, entry)
                state.withLock { $0.statistics.eventsUpdated += 1 }
                return
            } catch let error as KubernetesError where error.status == 404 {
                // The Event expired (the API server keeps them an hour): start a new one.
                series.entries[key] = nil
            }
        }
        var regarding: [String: Any] = ["apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid]
        if let container = pod.container { regarding["fieldPath"] = "spec.containers{\(container)}" }
        let body: [String: Any] = [
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            // A trailing dash is the only separator generateName may end with.
            "metadata": ["generateName": "\(pod.name.prefix(200))-memwarden-", "namespace": pod.namespace],
            "eventTime": Self.microTime(now),
            "reportingController": Self.reportingController, "reportingInstance": reportingInstance,
            "action": format.action, "reason": format.reason, "note": format.note, "type": format.type,
            "regarding": regarding,
        ]
        let response = try await client.send(
            .POST, "/apis/events.k8s.io/v1/namespaces/\(pod.namespace)/events", body: JSONSerialization.data(withJSONObject: body))
        let created = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any]
        if let name = (created?["metadata"] as? [String: Any])?["name"] as? String {
            series.remember(key, .init(namespace: pod.namespace, name: name, count: 1, lastObserved: now))
        }
        state.withLock { $0.statistics.eventsCreated += 1 }
    }

    private func annotate(_ pod: PodMetadata, _ annotations: [String: String?]) async throws {
        var values: [String: Any] = [:]
        for (key, value) in annotations { values[key] = value.map { $0 as Any } ?? NSNull() }
        let patch: [String: Any] = ["metadata": ["annotations": values]]
        _ = try await client.send(
            .PATCH, "/api/v1/namespaces/\(pod.namespace)/pods/\(pod.name)",
            body: JSONSerialization.data(withJSONObject: patch), contentType: "application/merge-patch+json")
        state.withLock { $0.statistics.annotationPatches += 1 }
    }

    /// metav1.MicroTime: RFC 3339 with microseconds, UTC.
    static func microTime(_ epochNanoseconds: UInt64) -> String {
        let micros = String((epochNanoseconds / 1000) % 1_000_000)
        return WallClock.secondPrefix(epochSeconds: epochNanoseconds / 1_000_000_000)
            + String(repeating: "0", count: 6 - micros.count) + micros + "Z"
    }
}
