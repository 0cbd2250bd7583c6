import MemwardenDetection
import MemwardenModel
import Synchronization

/// The latest right-sizing figures, for /api/v1/recommendations. The
/// pipeline owns the confirmation stage's histories (confined to its task),
/// so it computes the figures now and then and posts them here; a request
/// reads the last post and never waits for the pipeline.
public final class RecommendationBoard: Sendable {
    private let rows = Mutex<[RecommendedTarget]>([])

    public init() {}

    public func post(_ targets: [RecommendedTarget]) {
        rows.withLock { $0 = targets }
    }

    public var targets: [RecommendedTarget] { rows.withLock { $0 } }
}
