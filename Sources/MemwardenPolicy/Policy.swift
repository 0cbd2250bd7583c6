import MemwardenModel

/// A validated policy file: the defaults, the rules in file order, and where
/// events go. Immutable; `PolicyStore` swaps whole values on reload.
public struct Policy: Sendable, Hashable {
    /// The one version this agent reads.
    public static let apiVersion = "memwarden.io/v1"
    public static let kind = "MemwardenPolicy"
    /// Where `run` looks when `--policy` is not given.
    public static let defaultPath = "/etc/memwarden/policy.yaml"

    /// What a target gets when no rule matches (`rule` is "default").
    public var defaults: TargetPolicy
    /// Each rule's `policy` already has the defaults filled in.
    public var rules: [PolicyRule]
    public var outputs: OutputSettings

    public init(defaults: TargetPolicy = .builtIn, rules: [PolicyRule] = [], outputs: OutputSettings = OutputSettings()) {
        self.defaults = defaults
        self.rules = rules
        self.outputs = outputs
    }

    /// No file: observe only, events for leaks and for the tiers of each
    /// cgroup's own limit, stdout only.
    public static let builtIn = Policy()

    /// The policy of the most specific rule that matches (see
    /// `RuleSpecificity`), else the defaults. Validation rejects files where
    /// two equally specific rules can both match; should a tie still occur,
    /// the earlier rule in the file wins, so the answer never depends on
    /// anything but the file.
    public func resolve(for identity: TargetIdentity) -> TargetPolicy {
        matchingRule(for: identity)?.policy ?? defaults
    }

    public func matchingRule(for identity: TargetIdentity) -> PolicyRule? {
        var best: PolicyRule?
        for rule in rules where rule.match.matches(identity) {
            if let current = best, rule.specificity <= current.specificity { continue }
            best = rule
        }
        return best
    }
}

/// One entry of `rules`: a name, what it matches, and the policy it gives.
public struct PolicyRule: Sendable, Hashable {
    public let name: String
    /// Explicit precedence over specificity (higher wins), default 0.
    public let priority: Int
    public let match: RuleMatch
    /// The rule's settings over the file's defaults; `policy.rule == name`.
    public let policy: TargetPolicy
    /// Computed once: resolve() compares it for every matching rule.
    public let specificity: RuleSpecificity

    public init(name: String, priority: Int = 0, match: RuleMatch, policy: TargetPolicy) {
        self.name = name
        self.priority = priority
        self.match = match
        var policy = policy
        policy.rule = name
        self.policy = policy
        specificity = match.specificity(priority: priority)
    }
}
