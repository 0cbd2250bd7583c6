import Yams

/// Reads a YAML node tree with locations, collecting problems instead of
/// stopping at the first: each accessor reports what is wrong (located at the
/// offending node) and returns nil, so the caller goes on with the next field.
struct YAMLReader {
    let file: String
    private(set) var problems: [PolicyProblem] = []

    init(file: String) { self.file = file }

    /// A mapping's entries by key, with the key node (for locations). Unknown
    /// and duplicate keys are reported here; the first occurrence is kept.
    struct Fields {
        let node: Node
        let path: String
        var entries: [String: (key: Node, value: Node)] = [:]

        subscript(_ key: String) -> Node? { entries[key]?.value }

        func keyNode(_ key: String) -> Node? { entries[key]?.key }

        func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    }

    mutating func report(_ node: Node?, _ path: String, _ message: String) {
        report(line: node?.mark?.line, column: node?.mark?.column, path, message)
    }

    mutating func report(line: Int?, column: Int?, _ path: String, _ message: String) {
        problems.append(PolicyProblem(file: file, line: line, column: column, path: path, message: message))
    }

    mutating func fields(_ node: Node, _ path: String, allowed: [String], required: [String] = []) -> Fields? {
        guard case .mapping(let mapping) = node else {
            report(node, path, "expected a mapping, found \(Self.describe(node))")
            return nil
        }
        var fields = Fields(node: node, path: path)
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                report(keyNode, path, "expected a plain key, found \(Self.describe(keyNode))")
                continue
            }
            let key = scalar.string
            let keyPath = fields.path(key)
            if let first = fields.entries[key] {
                let line = first.key.mark.map { " (first at line \($0.line))" } ?? ""
                report(keyNode, keyPath, "duplicate key '\(key)'\(line)")
                continue
            }
            if key == "<<", !allowed.contains(key) {
                report(keyNode, keyPath, "YAML merge keys (<<) are not supported; use an alias (*name) for a whole value, or defaults")
                continue
            }
            guard allowed.contains(key) else {
                var message = "unknown key '\(key)'"
                if let suggestion = Self.suggestion(for: key, among: allowed) { message += "; did you mean '\(suggestion)'?" }
                message += " (expected one of: \(allowed.joined(separator: ", ")))"
                report(keyNode, keyPath, message)
                continue
            }
            fields.entries[key] = (keyNode, value)
        }
        for key in required where fields.entries[key] == nil {
            report(node, path, "missing required key '\(key)'")
        }
        return fields
    }

    /// A scalar that is not null; any style.
    mutating func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let scalar) = node else {
            report(node, path, "expected a string, found \(Self.describe(node))")
            return nil
        }
        if scalar.style == .plain, Self.isNull(scalar.string) {
            report(node, path, "expected a string, found null")
            return nil
        }
        return scalar.string
    }

    /// A string that is one of `allowed`.
    mutating func choice(_ node: Node, _ path: String, _ allowed: [String]) -> String? {
        guard let text = string(node, path) else { return nil }
        guard allowed.contains(text) else {
            var message = "'\(text)': expected one of: \(allowed.joined(separator: ", "))"
            if let suggestion = Self.suggestion(for: text, among: allowed) { message += "; did you mean '\(suggestion)'?" }
            report(node, path, message)
            return nil
        }
        return text
    }

    mutating func bool(_ node: Node, _ path: String) -> Bool? {
        if case .scalar(let scalar) = node, scalar.style == .plain {
            switch scalar.string {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        report(node, path, "expected true or false, found \(Self.describe(node))")
        return nil
    }

    mutating func integer(_ node: Node, _ path: String, in range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = Int(scalar.string) else {
            report(node, path, "expected an integer, found \(Self.describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(node, path, "\(value) is out of range (expected \(Self.describe(range)))")
            return nil
        }
        return value
    }

    mutating func number(_ node: Node, _ path: String, where check: (Double) -> Bool, expected: String) -> Double? {
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = Double(scalar.string), value.isFinite else {
            report(node, path, "expected a number, found \(Self.describe(node))")
            return nil
        }
        guard check(value) else {
            report(node, path, "\(scalar.string) is out of range (expected \(expected))")
            return nil
        }
        return value
    }

    /// A scalar read by one of PolicyValues' parsers; its reason, with the
    /// text, reported at the node.
    mutating func parsed<Value>(_ node: Node, _ path: String, _ parse: (String) -> Result<Value, PolicyValues.Reason>) -> Value? {
        guard let text = string(node, path) else { return nil }
        return parsed(node, path, text, parse)
    }

    mutating func parsed<Value>(
        _ node: Node, _ path: String, _ text: String, _ parse: (String) -> Result<Value, PolicyValues.Reason>
    ) -> Value? {
        switch parse(text) {
        case .failure(let reason):
            report(node, path, "'\(text)': \(reason.message)")
            return nil
        case .success(let value): return value
        }
    }

    mutating func duration(_ node: Node, _ path: String, allowZero: Bool = false) -> Duration? {
        guard let value = parsed(node, path, PolicyValues.duration) else { return nil }
        guard allowZero || value > .zero else {
            report(node, path, "must be more than 0")
            return nil
        }
        return value
    }

    mutating func bytes(_ node: Node, _ path: String) -> UInt64? {
        parsed(node, path, PolicyValues.bytes)
    }

    /// Bytes per second ("128Ki", "128Ki/s"), more than 0.
    mutating func rate(_ node: Node, _ path: String) -> UInt64? {
        parsed(node, path, PolicyValues.rate)
    }

    /// A share (70% or 0.7) within `range`.
    mutating func share(_ node: Node, _ path: String, in range: ClosedRange<Double>, openBelow: Bool) -> Double? {
        guard let text = string(node, path), let value = parsed(node, path, text, PolicyValues.share) else { return nil }
        guard range.contains(value), !(openBelow && value == range.lowerBound) else {
            let low = Self.percent(range.lowerBound)
            let high = Self.percent(range.upperBound)
            let from = openBelow ? "more than \(low)" : "at least \(low)"
            report(node, path, "\(text) is out of range (expected \(from) and at most \(high))")
            return nil
        }
        return value
    }

    mutating func url(_ node: Node, _ path: String) -> String? {
        parsed(node, path, PolicyValues.url)
    }

    /// A file the agent reads later (token, secret, CA bundle): absolute, so
    /// it does not depend on the agent's working directory.
    mutating func filePath(_ node: Node, _ path: String) -> String? {
        guard let text = string(node, path) else { return nil }
        guard text.hasPrefix("/"), text.count > 1 else {
            report(node, path, "'\(text)': expected an absolute file path")
            return nil
        }
        return text
    }

    /// One string or a non-empty list of them, each passing `check` (which
    /// returns the reason when it fails).
    mutating func stringList(_ node: Node, _ path: String, check: (String) -> String?) -> [String]? {
        var items: [(Node, String)] = []
        switch node {
        case .scalar:
            items = [(node, path)]
        case .sequence(let sequence):
            guard !sequence.isEmpty else {
                report(node, path, "expected a non-empty list")
                return nil
            }
            items = sequence.enumerated().map { ($0.element, "\(path)[\($0.offset)]") }
        case .mapping:
            report(node, path, "expected a string or a list of strings, found a mapping")
            return nil
        }
        var values: [String] = []
        var failed = false
        for (item, itemPath) in items {
            guard let text = string(item, itemPath) else {
                failed = true
                continue
            }
            if let reason = check(text) {
                report(item, itemPath, "'\(text)': \(reason)")
                failed = true
                continue
            }
            if values.contains(text) {
                report(item, itemPath, "'\(text)' is listed twice")
                failed = true
                continue
            }
            values.append(text)
        }
        return failed ? nil : values
    }

    mutating func sequence(_ node: Node, _ path: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            report(node, path, "expected a list, found \(Self.describe(node))")
            return nil
        }
        return Array(sequence)
    }

    static func isNull(_ text: String) -> Bool { ["", "~", "null", "Null", "NULL"].contains(text) }

    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let scalar):
            if scalar.style == .plain, isNull(scalar.string) { return "null" }
            let text = scalar.string.count > 40 ? String(scalar.string.prefix(37)) + "..." : scalar.string
            return "'\(text)'"
        }
    }

    static func percent(_ share: Double) -> String {
        let value = share * 100
        return value == value.rounded() ? "\(Int(value))%" : "\(value)%"
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        if range.upperBound == .max { return "at least \(range.lowerBound)" }
        return "\(range.lowerBound) to \(range.upperBound)"
    }

    /// The allowed word closest to a typo (edit distance ≤ 2, or equal but for case).
    static func suggestion(for word: String, among allowed: [String]) -> String? {
        let lower = word.lowercased()
        if let same = allowed.first(where: { $0.lowercased() == lower }) { return same }
        let scored = allowed.map { ($0, editDistance(lower, $0.lowercased())) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
