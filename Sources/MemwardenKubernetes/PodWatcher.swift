import Foundation
import Logging
import MemwardenModel
import ServiceLifecycle
import Synchronization

/// Keeps a PodIndex in step with the API server: list the node's pods, then watch from the
/// list's resourceVersion, and again from the last one seen whenever a watch ends. A 410 Gone
/// (the version was compacted away, as an HTTP status or a watch ERROR event) means events were
/// missed: list again. Failures wait with exponential backoff and jitter. Ends on graceful
/// shutdown.
public struct PodWatcher: Service {
    public struct Settings: Sendable {
        /// The server ends each watch after about this long (timeoutSeconds, jittered up to
        /// +50% so a fleet of agents does not re-watch in step).
        public var watchTimeout: Duration
        /// Items per page of the list (limit/continue).
        public var pageSize: Int
        public var backoff: Backoff
        /// BOOKMARK events keep the resourceVersion fresh on a quiet node, so fewer relists.
        public var allowBookmarks: Bool

        public init(watchTimeout: Duration = .seconds(300), pageSize: Int = 500, backoff: Backoff = Backoff(), allowBookmarks: Bool = true) {
            self.watchTimeout = watchTimeout
            self.pageSize = max(1, pageSize)
            self.backoff = backoff
            self.allowBookmarks = allowBookmarks
        }
    }

    public let client: KubernetesClient
    public let index: PodIndex
    public let settings: Settings
    private let logger: Logger

    public init(client: KubernetesClient, index: PodIndex, settings: Settings = Settings(), logger: Logger) {
        self.client = client
        self.index = index
        self.settings = settings
        self.logger = logger
    }

    private var selector: String { "spec.nodeName=\(client.configuration.nodeName)" }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await self.loop() }
        } catch is CancellationError {
            // graceful shutdown (or the caller's cancellation): not a failure
        }
        logger.debug("pod watch stopped", metadata: ["node": "\(client.configuration.nodeName)"])
    }

    private func loop() async throws {
        var backoff = settings.backoff
        var resourceVersion: String?
        while true {
            try Task.checkCancellation()
            do {
                let version: String
                if let resourceVersion {
                    version = resourceVersion
                } else {
                    version = try await list()
                    resourceVersion = version
                    backoff.reset()
                }
                let started = ContinuousClock.now
                let outcome = try await watch(from: version)
                resourceVersion = outcome.resourceVersion
                index.countWatchRestart()
                if outcome.events > 0 || ContinuousClock.now - started > .seconds(5) {
                    backoff.reset()
                } else {
                    // A server that closes watches at once would otherwise be hammered.
                    try await Task.sleep(for: backoff.next())
                }
            } catch let error as KubernetesError where error.isGone {
                index.countExpired()
                logger.info("pod watch: resourceVersion expired, listing again", metadata: ["error": "\(error)"])
                resourceVersion = nil
            } catch {
                try Task.checkCancellation()
                if error is CancellationError { throw error }
                index.countError()
                let delay = backoff.next()
                logger.warning(
                    "pod watch failed, retrying", metadata: ["error": "\(error)", "retry_in": "\(delay)", "attempt": "\(backoff.attempts)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Lists the node's pods page by page into the index; returns the list's resourceVersion.
    private func list() async throws -> String {
        var records: [PodRecord] = []
        var continueToken: String?
        var version: String?
        var pageSize: Int? = settings.pageSize
        repeat {
            var query = [("fieldSelector", selector)]
            if let pageSize { query.append(("limit", String(pageSize))) }
            if let continueToken { query.append(("continue", continueToken)) }
            let page: KubePodList
            do {
                page = try await client.get("/api/v1/pods", query: query, as: KubePodList.self)
            } catch let error as KubernetesError where error.isGone && continueToken != nil {
                // The continue token outlived the compaction window: one unpaged list instead.
                logger.info("pod list: continue token expired, listing without pages")
                records = []
                continueToken = nil
                pageSize = nil
                continue
            }
            for pod in page.items {
                do {
                    records.append(try PodRecord(pod))
                } catch {
                    index.countError()
                    logger.warning("pod list: skipping a pod", metadata: ["error": "\(error)"])
                }
            }
            continueToken = page.metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
            version = page.metadata?.resourceVersion
        } while continueToken != nil
        guard let version, !version.isEmpty else {
            throw KubernetesError(code: .decoding, request: "GET /api/v1/pods", status: 200, reason: nil, message: "the pod list has no resourceVersion")
        }
        index.replaceAll(with: records)
        logger.info("pod list applied", metadata: ["pods": "\(records.count)", "resource_version": "\(version)"])
        return version
    }

    /// What one watch has seen so far; shared with its streaming task.
    private final class Progress: Sendable {
        struct State {
            var resourceVersion: String
            var events = 0
        }
        let state: Mutex<State>
        init(_ version: String) { state = Mutex(State(resourceVersion: version)) }
    }

    /// One watch from `version` until the server ends it; returns the last version seen.
    private func watch(from version: String) async throws -> (resourceVersion: String, events: Int) {
        let timeoutSeconds = Int(settings.watchTimeout.secondsDouble * Double.random(in: 1...1.5))
        var query = [
            ("watch", "1"), ("fieldSelector", selector), ("resourceVersion", version),
            ("timeoutSeconds", String(max(1, timeoutSeconds))),
        ]
        if settings.allowBookmarks { query.append(("allowWatchBookmarks", "true")) }
        let request = query
        let progress = Progress(version)
        let label = KubernetesClient.label(.GET, "/api/v1/pods", query)
        // The server ends the watch after timeoutSeconds; a connection that died without a
        // FIN would never end, so a watchdog a little later ends it from this side.
        let watchdog = Duration.seconds(timeoutSeconds + 30)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await client.streamLines("/api/v1/pods", query: request) { line in
                    try self.handle(line: line, progress: progress, request: label)
                }
            }
            group.addTask {
                try await Task.sleep(for: watchdog)
                throw KubernetesError(code: .transport, request: label, status: nil, reason: nil, message: "no end of the watch within \(watchdog)")
            }
            defer { group.cancelAll() }
            _ = try await group.next()
        }
        return progress.state.withLock { ($0.resourceVersion, $0.events) }
    }

    /// A watch ERROR event as an error: code 410 (Expired/Gone) makes the loop list again,
    /// exactly as an HTTP 410 does.
    static func watchError(_ status: KubeStatus, request: String) -> KubernetesError {
        KubernetesError(
            code: .watchError, request: request, status: status.code, reason: status.reason,
            message: status.message ?? "watch ERROR event")
    }

    private func handle(line: Data, progress: Progress, request: String) throws {
        let event: PodWatchEvent
        do {
            event = try PodWatchEvent(line: line)
        } catch {
            throw KubernetesError(code: .decoding, request: request, status: 200, reason: nil, message: "\(error)")
        }
        switch event {
        case .error(let status):
            throw Self.watchError(status, request: request)
        case .bookmark(let version):
            if let version, !version.isEmpty { progress.state.withLock { $0.resourceVersion = version } }
        case .added(let pod), .modified(let pod), .deleted(let pod):
            do {
                try index.apply(event)
            } catch {
                index.countError()
                logger.warning("pod watch: skipping an event", metadata: ["error": "\(error)"])
            }
            progress.state.withLock { state in
                if let version = pod.metadata.resourceVersion, !version.isEmpty { state.resourceVersion = version }
                state.events += 1
            }
        }
    }
}
