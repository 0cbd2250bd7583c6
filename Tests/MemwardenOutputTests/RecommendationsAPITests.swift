import AsyncHTTPClient
import Foundation
import Logging
import MemwardenAgent
import MemwardenDetection
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport
import Testing

/// /api/v1/recommendations serves what the pipeline posted on the board, with
/// its filters, and says how much history the figures rest on.
@Suite struct RecommendationsAPITests {
    static let mib = 1_048_576.0

    /// Two days in 10-minute buckets: flat at `level`, or growing `rate` bytes a second from it.
    static func recommendation(level: Double, rate: Double, limit: Double?) throws -> Recommendation {
        let buckets = (0..<288).map { i in
            let start = Double(i) * 600
            return UsageBucket(
                start: start, seconds: 600, floor: level + rate * start, peak: level + rate * (start + 600),
                mean: level + rate * (start + 300))
        }
        let leak = rate > 0 ? LeakTrend(bytesPerSecond: rate) : nil
        return try #require(
            Recommender.recommend([RecommendationMember(history: UsageHistory(buckets: buckets), leak: leak)], limit: limit))
    }

    @Test func servesThePostedFiguresWithFilters() async throws {
        let board = RecommendationBoard()
        let bound = AsyncStream<Int>.makeStream()
        let server = try HTTPServer(
            listen: "127.0.0.1:0", status: AgentStatus(inCluster: false), targets: TargetTable(),
            events: RecentEvents(capacity: 10), metrics: AgentMetrics(maxTargets: 10), logger: Logger(label: "http-test"),
            recommendations: board, onListening: { bound.continuation.yield($0) })
        let services = RunningServices([server])
        var port = 0
        for await p in bound.stream {
            port = p
            break
        }
        try #require(port > 0, "the HTTP server did not start")
        let base = "http://127.0.0.1:\(port)/api/v1/recommendations"

        try await withHTTPClient { client in
            // before the pipeline's first post: an empty document, not an error
            let empty = try #require(try await client.json(base) as? [String: Any])
            #expect(empty["count"] as? Int == 0 && (empty["recommendations"] as? [Any])?.isEmpty == true)

            let leaking = try Self.recommendation(level: 300 * Self.mib, rate: 10 * Self.mib / 3600, limit: 1024 * Self.mib)
            let flat = try Self.recommendation(level: 200 * Self.mib, rate: 0, limit: nil)
            board.post([
                RecommendedTarget(identity: SampleEvents.unitIdentity, recommendation: flat),
                RecommendedTarget(identity: SampleEvents.containerIdentity, workload: "prod/shop/api", recommendation: leaking),
            ])
            let all = try #require(try await client.json(base) as? [String: Any])
            #expect(all["count"] as? Int == 2)
            // two days of history where VPA wants eight: the document says so
            #expect((all["history_seconds"] as? NSNumber)?.doubleValue == Double(2 * 86_400))
            #expect((all["vpa_history_seconds"] as? NSNumber)?.doubleValue == Double(8 * 86_400))
            let rows = try #require(all["recommendations"] as? [[String: Any]])
            // leaking first
            #expect(rows.first?["workload"] as? String == "prod/shop/api")
            #expect(rows.first?["namespace"] as? String == "prod")
            #expect(rows.first?["leaking"] as? Bool == true)
            #expect((rows.first?["memwarden_bytes"] as? NSNumber)?.doubleValue == leaking.memwarden.rounded(.up))
            #expect((rows.first?["note"] as? String)?.contains("1 GiB (current) is reached in") == true)
            #expect(rows.last?["systemd_unit"] as? String == "app.service")
            #expect(rows.last?["trend"] is NSNull)

            let onlyLeaking = try #require(try await client.json(base + "?leaking=true") as? [String: Any])
            #expect(onlyLeaking["count"] as? Int == 1)
            let prod = try #require(try await client.json(base + "?namespace=prod") as? [String: Any])
            #expect(prod["count"] as? Int == 1)
            let bad = try await client.get(base + "?leaking=maybe")
            #expect(bad.status == 400 && bad.body.contains("leaking='maybe'"))
        }
        try await services.stop()
    }
}
