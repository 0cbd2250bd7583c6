#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import AsyncHTTPClient
import Crypto
import Logging
import MemwardenModel
import ServiceLifecycle

/// POSTs each event, as the same JSON object stdout prints, to a URL.
/// `submit` only queues (bounded; when full the oldest goes and is counted);
/// this sink's own Service delivers in order, retrying failures with
/// exponential backoff and jitter, so a slow or dead receiver holds up
/// nothing but this sink. On graceful shutdown it keeps delivering what is
/// queued for at most `flushTimeout`, then counts the rest as dropped.
///
/// Headers: `Content-Type: application/json`, `X-Memwarden-Event: <type>`,
/// `Authorization: Bearer <token>` (token file), and with an HMAC key file
/// `X-Memwarden-Timestamp: <Unix seconds>` and `X-Memwarden-Signature:
/// sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
public struct WebhookSink: CountingSink, Service {
    public let name: String
    public let settings: WebhookSettings
    private let queue: SinkQueue<AgentEvent>
    private let counters = SinkCounters()
    private let delivery: HTTPDelivery
    private let signingKey: [UInt8]?
    private let backoff: Backoff
    private let flushTimeout: Duration
    private let logger: Logger

    public init(
        settings: WebhookSettings, name: String = "webhook", flushTimeout: Duration = .seconds(5), logger: Logger
    ) throws(OutputConfigurationError) {
        guard settings.queueSize > 0 else {
            throw OutputConfigurationError(
                sink: name, field: "queue_size", value: "\(settings.queueSize)", problem: "must be at least 1")
        }
        guard settings.maxRetries >= 0 else {
            throw OutputConfigurationError(
                sink: name, field: "max_retries", value: "\(settings.maxRetries)", problem: "must not be negative")
        }
        guard settings.timeout > .zero else {
            throw OutputConfigurationError(sink: name, field: "timeout", value: "\(settings.timeout)", problem: "must be positive")
        }
        if let file = settings.hmacSecretFile {
            guard let secret = try? readText(file).trimmingWhitespace(), !secret.isEmpty else {
                throw OutputConfigurationError(
                    sink: name, field: "hmac_secret_file", value: file, problem: "cannot read a non-empty key from this file")
            }
            signingKey = Array(secret.utf8)
        } else {
            signingKey = nil
        }
        delivery = try HTTPDelivery(
            sink: name, url: settings.url, caFile: settings.caFile, bearerTokenFile: settings.bearerTokenFile)
        self.name = name
        self.settings = settings
        queue = SinkQueue(capacity: settings.queueSize)
        backoff = Backoff(initial: settings.initialBackoff, maximum: settings.maxBackoff)
        self.flushTimeout = flushTimeout
        self.logger = logger
    }

    public func submit(_ event: AgentEvent) {
        guard event.severity >= settings.minSeverity else { return }
        let dropped = queue.push(event)
        if dropped > 0 {
            counters.update {
                if queue.isClosed { $0.droppedAtShutdown += 1 } else { $0.droppedQueueFull += UInt64(dropped) }
            }
        }
    }

    public var statistics: SinkStatistics { counters.snapshot(queueDepth: queue.count) }

    /// The signature header's value: `sha256=` and the hex HMAC of
    /// `<timestamp>.<body>`. The timestamp (`X-Memwarden-Timestamp`, Unix
    /// seconds of the attempt) is signed with the body, so a receiver that
    /// refuses old timestamps cannot be fed a captured request again.
    public static func signature(body: [UInt8], timestamp: Int64, key: [UInt8]) -> String {
        let message = Array("\(timestamp).".utf8) + body
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))
        return "sha256=" + hex(Array(code))
    }

    public func run() async throws {
        await delivery.withClient { client in await run(client: client) }
    }

    private func run(client: HTTPClient) async {
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                guard let event = queue.popFirst() else {
                    await queue.wait()
                    continue
                }
                await deliver(event, client: client, until: nil)
            }
        } onGracefulShutdown: {
            queue.wake()
        }
        queue.close()
        let deadline = ContinuousClock.now.advanced(by: flushTimeout)
        while ContinuousClock.now < deadline, let event = queue.popFirst() {
            await deliver(event, client: client, until: deadline)
        }
        let rest = queue.popAll().count
        if rest > 0 {
            counters.update { $0.droppedAtShutdown += UInt64(rest) }
            logger.warning("webhook: events not delivered at shutdown", metadata: ["sink": "\(name)", "dropped": "\(rest)"])
        }
    }

    /// One event, with retries. Before shutdown (`deadline` nil) a retry
    /// interrupted by the shutdown goes back to the queue for the flush.
    private func deliver(_ event: AgentEvent, client: HTTPClient, until deadline: ContinuousClock.Instant?) async {
        let body = Array(event.jsonLine().utf8)
        var attempt = 0
        while true {
            var headers = [("X-Memwarden-Event", event.type.rawValue)]
            if let signingKey {
                // signed per attempt: a retry is a new request with its own time
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let timestamp = Int64(now.tv_sec)
                headers.append(("X-Memwarden-Timestamp", String(timestamp)))
                headers.append(("X-Memwarden-Signature", Self.signature(body: body, timestamp: timestamp, key: signingKey)))
            }
            var timeout = settings.timeout
            if let deadline {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { return counters.update { $0.droppedAtShutdown += 1 } }
                timeout = min(timeout, left)
            }
            let outcome = await delivery.post(client: client, url: settings.url, body: body, headers: headers, timeout: timeout, logger: logger)
            switch outcome {
            case .delivered:
                return counters.update { $0.delivered += 1 }
            case .rejected(let reason):
                logger.warning("webhook: receiver rejected an event", metadata: ["sink": "\(name)", "reason": "\(reason)"])
                return counters.update {
                    $0.failedAttempts += 1
                    $0.droppedRejected += 1
                }
            case .retryable(let reason):
                counters.update { $0.failedAttempts += 1 }
                guard attempt < settings.maxRetries else {
                    logger.warning(
                        "webhook: giving up on an event", metadata: ["sink": "\(name)", "attempts": "\(attempt + 1)", "reason": "\(reason)"])
                    return counters.update { $0.droppedRetriesExhausted += 1 }
                }
                let delay = backoff.delay(retry: attempt)
                attempt += 1
                logger.debug("webhook: delivery failed, retrying", metadata: ["reason": "\(reason)", "delay": "\(delay)"])
                if let deadline {
                    guard ContinuousClock.now.advanced(by: delay) < deadline else {
                        return counters.update { $0.droppedAtShutdown += 1 }
                    }
                    try? await Task.sleep(for: delay)
                } else {
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                    if Task.isShuttingDownGracefully {
                        if !queue.pushFront(event) { counters.update { $0.droppedQueueFull += 1 } }
                        return
                    }
                }
            }
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
