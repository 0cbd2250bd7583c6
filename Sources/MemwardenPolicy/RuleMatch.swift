import MemwardenModel

/// What a rule applies to. Every selector that is set must match (AND); a list
/// within one selector matches any of its entries (OR). A rule matches
/// nothing about Kubernetes (namespace, labels, container) when the target
/// has no pod metadata: a selector never matches by default.
public struct RuleMatch: Sendable, Hashable {
    public var namespaces: [String]?
    public var podSelector: LabelSelector?
    public var containers: [String]?
    public var systemdUnits: [String]?
    public var cgroups: [CgroupGlob]?

    public init(
        namespaces: [String]? = nil, podSelector: LabelSelector? = nil, containers: [String]? = nil,
        systemdUnits: [String]? = nil, cgroups: [CgroupGlob]? = nil
    ) {
        self.namespaces = namespaces
        self.podSelector = podSelector
        self.containers = containers
        self.systemdUnits = systemdUnits
        self.cgroups = cgroups
    }

    public var isEmpty: Bool {
        namespaces == nil && podSelector == nil && containers == nil && systemdUnits == nil && cgroups == nil
    }

    public func matches(_ identity: TargetIdentity) -> Bool {
        if let namespaces {
            guard let namespace = identity.pod?.namespace, namespaces.contains(namespace) else { return false }
        }
        if let podSelector {
            guard let labels = identity.pod?.labels, podSelector.matches(labels) else { return false }
        }
        if let containers {
            guard let container = identity.pod?.container, containers.contains(container) else { return false }
        }
        if let systemdUnits {
            guard let unit = identity.systemdUnit, systemdUnits.contains(unit) else { return false }
        }
        if let cgroups {
            guard !identity.cgroup.isEmpty, cgroups.contains(where: { $0.matches(identity.cgroup) }) else { return false }
        }
        return true
    }

    /// Whether some target could match both. Errs towards yes: validation
    /// calls two equally specific rules a conflict unless they provably cannot
    /// meet (disjoint namespaces, containers or units, contradictory labels,
    /// cgroup globs that cannot match one path).
    func mayOverlap(_ other: RuleMatch) -> Bool {
        func disjoint(_ a: [String]?, _ b: [String]?) -> Bool {
            guard let a, let b else { return false }
            return Set(a).isDisjoint(with: b)
        }
        if disjoint(namespaces, other.namespaces) || disjoint(containers, other.containers)
            || disjoint(systemdUnits, other.systemdUnits)
        {
            return false
        }
        if let a = podSelector, let b = other.podSelector, a.contradicts(b) { return false }
        if let a = cgroups, let b = other.cgroups {
            let meet = a.contains { x in b.contains { y in x.mayOverlap(y) } }
            if !meet { return false }
        }
        return true
    }

    /// The specificity of these selectors (see `RuleSpecificity`).
    func specificity(priority: Int) -> RuleSpecificity {
        RuleSpecificity(
            priority: priority,
            exactCgroup: cgroups?.allSatisfy { $0.isLiteral } ?? false,
            systemdUnit: systemdUnits != nil,
            container: containers != nil,
            labelRequirements: podSelector.map { $0.matchLabels.count + $0.matchExpressions.count } ?? 0,
            namespace: namespaces != nil,
            cgroupLiteralCharacters: cgroups.map { globs in globs.map(\.literalCharacters).min() ?? 0 } ?? 0
        )
    }
}

/// How specific a rule is, compared field by field in this order (the first
/// difference decides, higher wins):
/// 1. `priority` (explicit, default 0: the escape hatch for real overlaps);
/// 2. an exact cgroup path (no wildcards);
/// 3. a systemd unit;
/// 4. a container name;
/// 5. the number of pod label requirements (matchLabels + matchExpressions);
/// 6. a namespace;
/// 7. the number of literal (non-wildcard) characters of the cgroup glob.
/// Two rules with equal specificity that may match one target are a conflict,
/// reported when the file is validated.
public struct RuleSpecificity: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var priority: Int
    public var exactCgroup: Bool
    public var systemdUnit: Bool
    public var container: Bool
    public var labelRequirements: Int
    public var namespace: Bool
    public var cgroupLiteralCharacters: Int

    public static func < (a: Self, b: Self) -> Bool {
        // field by field, in the documented order (no array: resolve() runs this per matching rule)
        if a.priority != b.priority { return a.priority < b.priority }
        if a.exactCgroup != b.exactCgroup { return !a.exactCgroup }
        if a.systemdUnit != b.systemdUnit { return !a.systemdUnit }
        if a.container != b.container { return !a.container }
        if a.labelRequirements != b.labelRequirements { return a.labelRequirements < b.labelRequirements }
        if a.namespace != b.namespace { return !a.namespace }
        return a.cgroupLiteralCharacters < b.cgroupLiteralCharacters
    }

    public var description: String {
        var parts: [String] = []
        if priority != 0 { parts.append("priority \(priority)") }
        if exactCgroup { parts.append("exact cgroup") }
        if systemdUnit { parts.append("systemd unit") }
        if container { parts.append("container") }
        if labelRequirements > 0 { parts.append("\(labelRequirements) label requirement\(labelRequirements == 1 ? "" : "s")") }
        if namespace { parts.append("namespace") }
        if !exactCgroup && cgroupLiteralCharacters > 0 { parts.append("cgroup glob of \(cgroupLiteralCharacters) literal characters") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// A Kubernetes label selector (matchLabels and matchExpressions, ANDed).
public struct LabelSelector: Sendable, Hashable {
    public struct Requirement: Sendable, Hashable {
        public enum Operator: String, Sendable, Hashable, CaseIterable {
            case `in` = "In"
            case notIn = "NotIn"
            case exists = "Exists"
            case doesNotExist = "DoesNotExist"
        }

        public var key: String
        public var op: Operator
        public var values: [String]

        public init(key: String, op: Operator, values: [String] = []) {
            self.key = key
            self.op = op
            self.values = values
        }

        func matches(_ labels: [String: String]) -> Bool {
            let value = labels[key]
            switch op {
            case .in: return value.map { values.contains($0) } ?? false
            case .notIn: return value.map { !values.contains($0) } ?? true
            case .exists: return value != nil
            case .doesNotExist: return value == nil
            }
        }
    }

    public var matchLabels: [String: String]
    public var matchExpressions: [Requirement]

    public init(matchLabels: [String: String] = [:], matchExpressions: [Requirement] = []) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// matchLabels as `In` requirements, then the expressions.
    public var requirements: [Requirement] {
        matchLabels.sorted { $0.key < $1.key }.map { Requirement(key: $0.key, op: .in, values: [$0.value]) }
            + matchExpressions
    }

    public func matches(_ labels: [String: String]) -> Bool {
        matchLabels.allSatisfy { labels[$0.key] == $0.value } && matchExpressions.allSatisfy { $0.matches(labels) }
    }

    /// True when no label set can satisfy both selectors (a key required with
    /// disjoint values, or required by one and forbidden by the other).
    func contradicts(_ other: LabelSelector) -> Bool {
        for a in requirements {
            for b in other.requirements where a.key == b.key {
                switch (a.op, b.op) {
                case (.in, .in) where Set(a.values).isDisjoint(with: b.values): return true
                case (.in, .doesNotExist), (.doesNotExist, .in), (.exists, .doesNotExist), (.doesNotExist, .exists):
                    return true
                case (.in, .notIn) where Set(a.values).isSubset(of: b.values): return true
                case (.notIn, .in) where Set(b.values).isSubset(of: a.values): return true
                default: continue
                }
            }
        }
        return false
    }
}

/// A cgroup path pattern: `*` matches within one path segment, `**` across
/// segments (any depth, also none), `?` one character other than `/`.
/// Everything else is literal. "/system.slice/*.service",
/// "/kubepods.slice/**/cri-containerd-*.scope".
public struct CgroupGlob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let bytes: [UInt8]

    public init(_ pattern: String) {
        self.pattern = pattern
        bytes = Array(pattern.utf8)
    }

    public static func == (a: Self, b: Self) -> Bool { a.pattern == b.pattern }
    public func hash(into hasher: inout Hasher) { hasher.combine(pattern) }

    public var description: String { pattern }

    public var isLiteral: Bool { !pattern.contains(where: { $0 == "*" || $0 == "?" }) }

    var literalCharacters: Int { pattern.filter { $0 != "*" && $0 != "?" }.count }

    public func matches(_ path: String) -> Bool {
        Self.match(bytes[...], Array(path.utf8)[...])
    }

    /// Conservative: true unless both are literal and differ, or one is
    /// literal and the other does not match it, or their literal prefixes
    /// already differ.
    func mayOverlap(_ other: CgroupGlob) -> Bool {
        if isLiteral { return other.matches(pattern) }
        if other.isLiteral { return matches(other.pattern) }
        let a = pattern.prefix { $0 != "*" && $0 != "?" }
        let b = other.pattern.prefix { $0 != "*" && $0 != "?" }
        return a.hasPrefix(b) || b.hasPrefix(a)
    }

    private static let slash = UInt8(ascii: "/")
    private static let star = UInt8(ascii: "*")
    private static let question = UInt8(ascii: "?")

    // Backtracking over bytes; patterns and paths are short (a few hundred bytes).
    private static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        if first == star {
            let rest = p.dropFirst()
            if rest.first == star {
                // `**`: any run of characters, slashes included; "/**/" also matches a single "/"
                let after = rest.dropFirst()
                if after.first == slash, match(after.dropFirst(), s) { return true }
                var tail = s
                while true {
                    if match(after, tail) { return true }
                    guard !tail.isEmpty else { return false }
                    tail = tail.dropFirst()
                }
            }
            var tail = s
            while true {
                if match(rest, tail) { return true }
                guard let c = tail.first, c != slash else { return false }
                tail = tail.dropFirst()
            }
        }
        guard let c = s.first else { return false }
        if first == question { return c != slash && match(p.dropFirst(), s.dropFirst()) }
        return c == first && match(p.dropFirst(), s.dropFirst())
    }
}
