import Synchronization

/// What /readyz reports: the agent is ready once the BPF program is
/// attached, a policy is loaded, and (in a cluster) the pod metadata has
/// synced. The pipeline flips these as its parts come up; any thread may.
public final class AgentStatus: Sendable {
    public enum Check: String, Sendable, Hashable, CaseIterable {
        case bpf
        case policy
        case podMetadata = "pod_metadata"
    }

    private struct State {
        var ready: [Check: Bool] = [:]
        var reasons: [Check: String] = [:]
    }

    /// The checks that must pass: pod metadata only in a cluster.
    public let required: [Check]
    /// Wall-clock nanoseconds when the agent started.
    public let startedAt: UInt64
    private let state = Mutex(State())

    public init(inCluster: Bool, startedAt: UInt64 = realtimeNanoseconds()) {
        required = inCluster ? Check.allCases : [.bpf, .policy]
        self.startedAt = startedAt
    }

    public func markReady(_ check: Check) {
        state.withLock {
            $0.ready[check] = true
            $0.reasons[check] = nil
        }
    }

    /// Not (or no longer) ready, and why ("attaching", "policy file invalid: …").
    public func markNotReady(_ check: Check, reason: String) {
        state.withLock {
            $0.ready[check] = false
            $0.reasons[check] = reason
        }
    }

    /// The required checks that do not pass, with their reasons.
    public var notReady: [(check: Check, reason: String)] {
        state.withLock { s in
            required.compactMap { check -> (check: Check, reason: String)? in
                s.ready[check] == true ? nil : (check: check, reason: s.reasons[check] ?? "not started yet")
            }
        }
    }

    public var isReady: Bool { notReady.isEmpty }
}
