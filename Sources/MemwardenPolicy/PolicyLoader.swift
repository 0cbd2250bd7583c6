import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Reads a policy file (YAML, `apiVersion: memwarden.io/v1`) into a `Policy`,
/// or fails with every problem in it: YAML syntax, unknown keys, wrong types,
/// bad quantities and durations, tiers out of order, duplicate or conflicting
/// rules. docs/policy.md describes the format.
public enum PolicyLoader {
    /// Policy files are small; anything larger is a mistake (a wrong path).
    public static let maximumFileBytes = 1 << 20

    /// Reads and validates `path`.
    public static func load(file path: String) throws(PolicyError) -> Policy {
        try parse(readFile(path), file: path)
    }

    /// The file's bytes, or a problem that names why it cannot be read.
    static func readFile(_ path: String) throws(PolicyError) -> String {
        do {
            let text = try readText(path, limit: maximumFileBytes + 1)
            guard text.utf8.count <= maximumFileBytes else {
                throw PolicyError(file: path, problems: [
                    PolicyProblem(
                        file: path, line: nil, column: nil, path: "",
                        message: "larger than \(maximumFileBytes) bytes; is this the policy file?")
                ])
            }
            return text
        } catch let error as FileError {
            throw PolicyError(file: path, problems: [
                PolicyProblem(
                    file: path, line: nil, column: nil, path: "",
                    message: "cannot \(error.operation): \(String(cString: strerror(error.errno)))")
            ])
        } catch let error as PolicyError {
            throw error
        } catch {
            throw PolicyError(file: path, problems: [PolicyProblem(file: path, line: nil, column: nil, path: "", message: "\(error)")])
        }
    }

    /// Validates policy text; `file` names it in problems.
    public static func parse(_ text: String, file: String) throws(PolicyError) -> Policy {
        var reader = YAMLReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PolicyError(file: file, problems: [syntaxProblem(error, text: text, file: file)])
        }
        guard let root else {
            throw PolicyError(file: file, problems: [
                PolicyProblem(
                    file: file, line: 1, column: 1, path: "",
                    message: "the file is empty (expected apiVersion: \(Policy.apiVersion), defaults, rules, outputs)")
            ])
        }
        if let problem = aliasProblem(root, file: file) {
            throw PolicyError(file: file, problems: [problem])
        }
        var decoder = PolicyDecoder(reader: reader)
        let policy = decoder.document(root)
        reader = decoder.reader
        guard reader.problems.isEmpty, let policy else {
            let problems = reader.problems.sorted { ($0.line ?? 0, $0.column ?? 0) < ($1.line ?? 0, $1.column ?? 0) }
            throw PolicyError(file: file, problems: problems)
        }
        return policy
    }

    /// The most nodes a policy may expand to through YAML aliases: 200 rules
    /// of a dozen keys each hold fewer than 10,000.
    static let maximumNodes = 20_000

    /// Aliases (`&name` … `*name`) are welcome for sharing settings, but
    /// nested ones expand into exponentially many nodes ("billion laughs")
    /// that the checks would walk one by one. The composer hands an alias back
    /// as a copy of the node it names, with that node's position, so the walk
    /// counts the expanded tree and stops at the cap, naming the first node
    /// used again (a position seen twice; a collection starts where its first
    /// child does, so the kind tells them apart).
    static func aliasProblem(_ root: Node, file: String) -> PolicyProblem? {
        var seen = Set<Int64>()
        var firstAlias: Mark?
        var count = 0
        var stack = [root]
        while let node = stack.popLast() {
            count += 1
            let mark: Mark?
            let kind: Int64
            switch node {
            case .scalar(let scalar): (mark, kind) = (scalar.mark, 0)
            case .mapping(let mapping):
                (mark, kind) = (mapping.mark, 1)
                for (key, value) in mapping { stack.append(key); stack.append(value) }
            case .sequence(let sequence):
                (mark, kind) = (sequence.mark, 2)
                stack.append(contentsOf: sequence)
            }
            if let mark, firstAlias == nil, !seen.insert(Int64(mark.line) << 34 | Int64(mark.column) << 2 | kind).inserted {
                firstAlias = mark
            }
            if count > maximumNodes {
                let at = firstAlias ?? root.mark
                return PolicyProblem(
                    file: file, line: at?.line, column: at?.column, path: "",
                    message: "the policy expands to more than \(maximumNodes) YAML nodes"
                        + (firstAlias == nil ? "" : " through aliases (*name) of the node here")
                        + ": write fewer aliases, or split the policy")
            }
        }
        return nil
    }

    static func syntaxProblem(_ error: any Error, text: String, file: String) -> PolicyProblem {
        func problem(_ mark: (line: Int, column: Int)?, _ message: String) -> PolicyProblem {
            PolicyProblem(file: file, line: mark?.line, column: mark?.column, path: "", message: "YAML syntax error: \(message)")
        }
        guard let error = error as? YamlError else { return problem(nil, "\(error)") }
        switch error {
        case .scanner(let context, let message, let mark, _), .parser(let context, let message, let mark, _),
            .composer(let context, let message, let mark, _):
            var text = message
            if let context { text += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))" }
            return problem((mark.line, mark.column), text)
        case .reader(let message, let offset, _, _):
            // offset counts characters from the start of the text
            var mark: (line: Int, column: Int)?
            if let offset {
                var line = 1
                var column = 1
                for character in text.prefix(offset) {
                    if character == "\n" { line += 1; column = 1 } else { column += 1 }
                }
                mark = (line, column)
            }
            return problem(mark, message)
        default:
            return problem(nil, "\(error)")
        }
    }
}

/// The document's structure, field by field. Each field's checks are next to
/// where it is read; everything found wrong goes to the reader.
struct PolicyDecoder {
    var reader: YAMLReader

    static let rootKeys = ["apiVersion", "kind", "defaults", "rules", "outputs"]
    static let settingsKeys = ["budget", "tiers", "detectors", "response", "cooldowns"]
    static let ruleKeys = ["name", "priority", "match"] + settingsKeys
    static let tierKeys = ["warning", "high", "critical", "emergency", "hysteresis"]
    static let throttleKeys = [
        "fromTier", "minimum", "pressureTarget", "interval", "maxProbe", "maxBackoff", "coeffProbe", "coeffBackoff",
        "minConfidence", "minSuspected", "maxGrowthRate",
    ]
    static let matchKeys = ["namespace", "podSelector", "container", "systemdUnit", "cgroup"]

    mutating func document(_ root: Node) -> Policy? {
        guard var fields = reader.fields(root, "", allowed: Self.rootKeys, required: ["apiVersion"]) else { return nil }
        // an empty section (`rules:` with nothing under it) is an absent one, as in Kubernetes manifests
        for key in ["defaults", "rules", "outputs"] {
            if case .scalar(let scalar) = fields[key], scalar.style == .plain, YAMLReader.isNull(scalar.string) {
                fields.entries[key] = nil
            }
        }
        if let node = fields["apiVersion"], let version = reader.string(node, "apiVersion"), version != Policy.apiVersion {
            reader.report(node, "apiVersion", "unsupported version '\(version)' (this agent reads \(Policy.apiVersion))")
        }
        if let node = fields["kind"], let kind = reader.string(node, "kind"), kind != Policy.kind {
            reader.report(node, "kind", "'\(kind)': expected \(Policy.kind)")
        }
        var defaults = TargetPolicy.builtIn
        if let node = fields["defaults"], let settings = reader.fields(node, "defaults", allowed: Self.settingsKeys) {
            defaults = self.settings(settings, onto: .builtIn, inherited: "the built-in defaults")
        }
        var rules: [PolicyRule] = []
        var ruleNodes: [(rule: PolicyRule, node: Node, matchNode: Node?, path: String)] = []
        if let node = fields["rules"], let items = reader.sequence(node, "rules") {
            var names: [String: Node] = [:]
            for (index, item) in items.enumerated() {
                let path = "rules[\(index)]"
                guard let ruleFields = reader.fields(item, path, allowed: Self.ruleKeys, required: ["name", "match"]) else {
                    continue
                }
                if let nameNode = ruleFields["name"], let name = ruleName(nameNode, ruleFields.path("name")) {
                    if let first = names[name] {
                        reader.report(
                            nameNode, ruleFields.path("name"),
                            "duplicate rule name '\(name)' (first at line \(first.mark?.line ?? 0))")
                    } else {
                        names[name] = nameNode
                    }
                }
                guard let rule = self.rule(ruleFields, defaults: defaults) else { continue }
                rules.append(rule)
                ruleNodes.append((rule, item, ruleFields["match"], path))
            }
        }
        checkConflicts(ruleNodes)
        var outputs = OutputSettings()
        if let node = fields["outputs"] { outputs = self.outputs(node) ?? outputs }
        return Policy(defaults: defaults, rules: rules, outputs: outputs)
    }

    private mutating func ruleName(_ node: Node, _ path: String) -> String? {
        guard let name = reader.string(node, path) else { return nil }
        let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        guard !name.isEmpty, name.count <= 128, allowed else {
            reader.report(node, path, "'\(name)': expected a name of at most 128 letters, digits, '.', '_' or '-'")
            return nil
        }
        guard name != "default" else {
            reader.report(node, path, "'default' is reserved for the defaults")
            return nil
        }
        return name
    }

    private mutating func rule(_ fields: YAMLReader.Fields, defaults: TargetPolicy) -> PolicyRule? {
        let name = fields["name"].flatMap { node -> String? in
            guard case .scalar(let scalar) = node else { return nil }
            return scalar.string
        }
        var priority = 0
        if let node = fields["priority"] {
            priority = reader.integer(node, fields.path("priority"), in: -1000...1000) ?? 0
        }
        var match: RuleMatch?
        if let node = fields["match"] { match = self.match(node, fields.path("match")) }
        let policy = settings(fields, onto: defaults, inherited: "the defaults")
        guard let name, let match else { return nil }
        return PolicyRule(name: name, priority: priority, match: match, policy: policy)
    }

    /// Two rules with the same selectors, or equally specific ones that can
    /// match one target, make the outcome depend on their order: refused.
    private mutating func checkConflicts(_ rules: [(rule: PolicyRule, node: Node, matchNode: Node?, path: String)]) {
        for (index, later) in rules.enumerated() {
            for earlier in rules[..<index] {
                let location = later.matchNode ?? later.node
                let line = earlier.node.mark.map { ", line \($0.line)" } ?? ""
                if later.rule.match == earlier.rule.match, later.rule.priority == earlier.rule.priority {
                    reader.report(
                        location, later.path + ".match",
                        "the same selectors as rule '\(earlier.rule.name)'\(line): a duplicate rule")
                } else if later.rule.specificity == earlier.rule.specificity, later.rule.match.mayOverlap(earlier.rule.match) {
                    reader.report(
                        location, later.path + ".match",
                        "conflicts with rule '\(earlier.rule.name)'\(line): equally specific (\(later.rule.specificity)) "
                            + "and both can match one target; narrow one of them or give one a higher priority"
                    )
                }
            }
        }
    }

    // MARK: settings (defaults and rules)

    /// Applies the settings present in `fields` onto `base`; absent ones keep
    /// the base's (the defaults', for a rule).
    private mutating func settings(_ fields: YAMLReader.Fields, onto base: TargetPolicy, inherited: String) -> TargetPolicy {
        var policy = base
        if let node = fields["budget"] { policy.budget = budget(node, fields.path("budget")) ?? base.budget }
        if let node = fields["tiers"] { policy.tiers = tiers(node, fields.path("tiers"), base: base.tiers, inherited: inherited) }
        if let node = fields["detectors"],
            let detectors = reader.fields(node, fields.path("detectors"), allowed: ["profile", "grace", "patience", "horizon"])
        {
            if let node = detectors["profile"],
                let text = reader.choice(node, detectors.path("profile"), DetectorConfiguration.Profile.allCases.map(\.rawValue))
            {
                policy.detectorProfile = DetectorConfiguration.Profile(rawValue: text)
            }
            if let node = detectors["grace"] {
                policy.detectorOverrides.grace = reader.duration(node, detectors.path("grace"), allowZero: true)
            }
            if let node = detectors["patience"] {
                policy.detectorOverrides.patience = reader.duration(node, detectors.path("patience"), allowZero: true)
            }
            if let node = detectors["horizon"] {
                policy.detectorOverrides.horizon = reader.duration(node, detectors.path("horizon"))
            }
        }
        var modeNode: Node?
        if let node = fields["response"], let response = reader.fields(node, fields.path("response"), allowed: ["mode", "throttle"]) {
            if let node = response["mode"] {
                modeNode = node
                if let text = reader.choice(node, response.path("mode"), ResponseMode.allCases.map(\.rawValue)) {
                    policy.mode = ResponseMode(rawValue: text) ?? policy.mode
                }
            }
            if let node = response["throttle"] { policy.throttle = throttle(node, response.path("throttle"), base: base.throttle) }
        }
        if let node = fields["cooldowns"], let cooldowns = reader.fields(node, fields.path("cooldowns"), allowed: ["event", "response"]) {
            if let node = cooldowns["event"] {
                policy.cooldowns.event = reader.duration(node, cooldowns.path("event"), allowZero: true) ?? base.cooldowns.event
            }
            if let node = cooldowns["response"] {
                policy.cooldowns.response = reader.duration(node, cooldowns.path("response"), allowZero: true) ?? base.cooldowns.response
            }
        }
        // only where this entry sets mode or budget: a rule that inherits both is the defaults' problem
        if policy.mode == .throttle, policy.budget == nil, modeNode != nil || fields["budget"] != nil {
            // reported where this entry said it: its mode, else its budget, else the entry
            let at = modeNode ?? fields["budget"] ?? fields.node
            let path = modeNode != nil ? fields.path("response") + ".mode" : fields["budget"] != nil ? fields.path("budget") : fields.path
            reader.report(at, path, "mode throttle needs a budget (budget is none)")
        }
        return policy
    }

    private mutating func budget(_ node: Node, _ path: String) -> Budget?? {
        if case .scalar(let scalar) = node {
            switch scalar.string {
            case "limit": return .some(.limit)
            case "none": return .some(nil)
            default: break
            }
        }
        guard let bytes = reader.bytes(node, path) else { return nil }
        guard bytes > 0 else {
            reader.report(node, path, "must be more than 0 (use none for no budget)")
            return nil
        }
        return .some(.bytes(bytes))
    }

    private mutating func tiers(_ node: Node, _ path: String, base: BudgetTiers, inherited source: String) -> BudgetTiers {
        guard let fields = reader.fields(node, path, allowed: Self.tierKeys) else { return base }
        var tiers = base
        var given: [String: Node] = [:]
        let levels: [(String, WritableKeyPath<BudgetTiers, Double>)] = [
            ("warning", \.warning), ("high", \.high), ("critical", \.critical), ("emergency", \.emergency),
        ]
        for (key, keyPath) in levels {
            guard let node = fields[key] else { continue }
            if let value = reader.share(node, fields.path(key), in: 0...1, openBelow: true) {
                tiers[keyPath: keyPath] = value
                given[key] = node
            }
        }
        if let node = fields["hysteresis"], let value = reader.share(node, fields.path("hysteresis"), in: 0...0.5, openBelow: false) {
            tiers.hysteresis = value
            given["hysteresis"] = node
        }
        // each tier above the one below, checked on the merged values: a rule
        // that raises only `warning` can collide with the defaults' `high`
        for pair in zip(levels, levels.dropFirst()) {
            let (lowKey, lowPath) = pair.0
            let (highKey, highPath) = pair.1
            let low = tiers[keyPath: lowPath]
            let high = tiers[keyPath: highPath]
            guard high <= low else { continue }
            guard given[lowKey] != nil || given[highKey] != nil else { continue }
            let at = given[highKey] ?? given[lowKey]!
            let inherited =
                given[lowKey] == nil
                ? " (\(lowKey) from \(source))" : given[highKey] == nil ? " (\(highKey) from \(source))" : ""
            reader.report(
                at, fields.path(given[highKey] != nil ? highKey : lowKey),
                "tiers out of order: \(highKey) (\(YAMLReader.percent(high))) must be above "
                    + "\(lowKey) (\(YAMLReader.percent(low)))\(inherited)")
        }
        if tiers.hysteresis >= tiers.warning, let at = given["hysteresis"] ?? given["warning"] {
            reader.report(
                at, fields.path(given["hysteresis"] != nil ? "hysteresis" : "warning"),
                "hysteresis (\(YAMLReader.percent(tiers.hysteresis))) must be below warning (\(YAMLReader.percent(tiers.warning)))")
        }
        return tiers
    }

    private mutating func throttle(_ node: Node, _ path: String, base: ThrottleSettings) -> ThrottleSettings {
        guard let fields = reader.fields(node, path, allowed: Self.throttleKeys) else { return base }
        var settings = base
        if let node = fields["fromTier"], let text = reader.choice(node, fields.path("fromTier"), BudgetTier.allCases.map(\.rawValue)) {
            settings.fromTier = BudgetTier(rawValue: text) ?? base.fromTier
        }
        if let node = fields["minimum"] { settings.minimumBytes = reader.bytes(node, fields.path("minimum")) ?? base.minimumBytes }
        if let node = fields["pressureTarget"] {
            settings.pressureTarget = reader.duration(node, fields.path("pressureTarget")) ?? base.pressureTarget
        }
        if let node = fields["interval"] { settings.interval = reader.duration(node, fields.path("interval")) ?? base.interval }
        if let node = fields["maxProbe"] {
            settings.maxProbe = reader.share(node, fields.path("maxProbe"), in: 0...0.5, openBelow: true) ?? base.maxProbe
        }
        if let node = fields["maxBackoff"] {
            settings.maxBackoff = reader.share(node, fields.path("maxBackoff"), in: 0...10, openBelow: true) ?? base.maxBackoff
        }
        if let node = fields["coeffProbe"] {
            settings.coeffProbe =
                reader.number(node, fields.path("coeffProbe"), where: { $0 > 0 }, expected: "more than 0") ?? base.coeffProbe
        }
        if let node = fields["minConfidence"] {
            settings.minConfidence = reader.share(node, fields.path("minConfidence"), in: 0...1, openBelow: false) ?? base.minConfidence
        }
        if let node = fields["minSuspected"] {
            settings.minSuspected = reader.duration(node, fields.path("minSuspected"), allowZero: true) ?? base.minSuspected
        }
        if let node = fields["coeffBackoff"] {
            settings.coeffBackoff =
                reader.number(node, fields.path("coeffBackoff"), where: { $0 > 0 }, expected: "more than 0") ?? base.coeffBackoff
        }
        if let node = fields["maxGrowthRate"] {
            settings.maxGrowthRate = reader.rate(node, fields.path("maxGrowthRate")) ?? base.maxGrowthRate
        }
        return settings
    }

    // MARK: match

    private mutating func match(_ node: Node, _ path: String) -> RuleMatch? {
        guard let fields = reader.fields(node, path, allowed: Self.matchKeys) else { return nil }
        var match = RuleMatch()
        var failed = false
        func list(_ key: String, _ check: (String) -> String?) -> [String]? {
            guard let node = fields[key] else { return nil }
            let values = reader.stringList(node, fields.path(key), check: check)
            if values == nil { failed = true }
            return values
        }
        match.namespaces = list("namespace", Self.dnsLabelProblem)
        match.containers = list("container", Self.dnsLabelProblem)
        match.systemdUnits = list("systemdUnit", Self.unitProblem)
        match.cgroups = list("cgroup", Self.cgroupProblem)?.map(CgroupGlob.init)
        if let node = fields["podSelector"] {
            match.podSelector = podSelector(node, fields.path("podSelector"))
            if match.podSelector == nil { failed = true }
        }
        if fields.entries.isEmpty {
            reader.report(
                node, path,
                "needs at least one of: \(Self.matchKeys.joined(separator: ", ")) (settings for everything go in defaults)")
            return nil
        }
        return failed ? nil : match
    }

    private mutating func podSelector(_ node: Node, _ path: String) -> LabelSelector? {
        guard let fields = reader.fields(node, path, allowed: ["matchLabels", "matchExpressions"]) else { return nil }
        var selector = LabelSelector()
        var failed = false
        if let node = fields["matchLabels"] {
            let labelsPath = fields.path("matchLabels")
            if case .mapping(let mapping) = node {
                var seen: Set<String> = []
                for (keyNode, valueNode) in mapping {
                    guard let key = reader.string(keyNode, labelsPath) else { failed = true; continue }
                    let keyPath = "\(labelsPath).\(key)"
                    if let reason = Self.labelKeyProblem(key) {
                        reader.report(keyNode, keyPath, "'\(key)': \(reason)")
                        failed = true
                    }
                    guard seen.insert(key).inserted else {
                        reader.report(keyNode, keyPath, "duplicate key '\(key)'")
                        failed = true
                        continue
                    }
                    guard let value = reader.string(valueNode, keyPath) else { failed = true; continue }
                    if let reason = Self.labelValueProblem(value) {
                        reader.report(valueNode, keyPath, "'\(value)': \(reason)")
                        failed = true
                    }
                    selector.matchLabels[key] = value
                }
            } else {
                reader.report(node, labelsPath, "expected a mapping of label keys to values, found \(YAMLReader.describe(node))")
                failed = true
            }
        }
        if let node = fields["matchExpressions"], let items = reader.sequence(node, fields.path("matchExpressions")) {
            for (index, item) in items.enumerated() {
                let itemPath = "\(fields.path("matchExpressions"))[\(index)]"
                guard let expression = reader.fields(item, itemPath, allowed: ["key", "operator", "values"], required: ["key", "operator"]),
                    let keyNode = expression["key"], let key = reader.string(keyNode, expression.path("key")),
                    let opNode = expression["operator"],
                    let text = reader.choice(
                        opNode, expression.path("operator"), LabelSelector.Requirement.Operator.allCases.map(\.rawValue)),
                    let op = LabelSelector.Requirement.Operator(rawValue: text)
                else {
                    failed = true
                    continue
                }
                if let reason = Self.labelKeyProblem(key) {
                    reader.report(keyNode, expression.path("key"), "'\(key)': \(reason)")
                    failed = true
                }
                var values: [String] = []
                if let node = expression["values"] {
                    if let list = reader.stringList(node, expression.path("values"), check: Self.labelValueProblem) {
                        values = list
                    } else {
                        failed = true
                    }
                }
                let needsValues = op == .in || op == .notIn
                if needsValues, values.isEmpty, expression["values"] == nil {
                    reader.report(item, expression.path("values"), "operator \(text) needs a non-empty list of values")
                    failed = true
                } else if !needsValues, let node = expression["values"] {
                    reader.report(node, expression.path("values"), "operator \(text) takes no values")
                    failed = true
                }
                selector.matchExpressions.append(LabelSelector.Requirement(key: key, op: op, values: values))
            }
        } else if fields["matchExpressions"] != nil {
            failed = true
        }
        if !failed, selector.requirements.isEmpty {
            reader.report(node, path, "an empty selector matches every pod; give matchLabels or matchExpressions")
            failed = true
        }
        return failed ? nil : selector
    }

    /// Namespaces and container names: RFC 1123 labels.
    static func dnsLabelProblem(_ text: String) -> String? {
        let valid = text.count <= 63 && !text.isEmpty
            && text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
            && !text.hasPrefix("-") && !text.hasSuffix("-")
        return valid ? nil : "expected a Kubernetes name (lower-case letters, digits and '-', at most 63)"
    }

    static func unitProblem(_ text: String) -> String? {
        let suffixes = [".service", ".scope", ".slice", ".socket", ".mount", ".timer", ".swap", ".target", ".path"]
        let valid = !text.contains("/") && suffixes.contains { text.hasSuffix($0) && text.count > $0.count }
        return valid ? nil : "expected a systemd unit name such as nginx.service or session-3.scope"
    }

    static func cgroupProblem(_ text: String) -> String? {
        guard text.hasPrefix("/") else { return "expected a cgroup path or glob starting with '/'" }
        if text.contains("***") { return "'***' is not a glob; use * (one segment) or ** (any depth)" }
        return nil
    }

    /// `[prefix/]name`: name up to 63 of alphanumerics, '-', '_', '.', starting
    /// and ending alphanumeric; prefix a DNS subdomain.
    static func labelKeyProblem(_ key: String) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, labelValueProblem(String(name)) == nil, !name.isEmpty else {
            return "expected a label key such as app or app.kubernetes.io/name"
        }
        if parts.count == 2 {
            let prefix = parts[0]
            let valid = !prefix.isEmpty && prefix.count <= 253
                && prefix.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." }
            if !valid { return "expected a label key prefix that is a DNS subdomain (lower-case)" }
        }
        return nil
    }

    static func labelValueProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return nil }
        func alphanumeric(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber) }
        let valid = value.count <= 63 && value.allSatisfy { alphanumeric($0) || "-_.".contains($0) }
            && alphanumeric(value.first!) && alphanumeric(value.last!)
        return valid
            ? nil : "expected a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    }

    // MARK: outputs

    private mutating func outputs(_ node: Node) -> OutputSettings? {
        guard let fields = reader.fields(node, "outputs", allowed: ["stdout", "webhook", "alertmanager", "kubernetes"]) else {
            return nil
        }
        var outputs = OutputSettings()
        if let node = fields["stdout"] { outputs.stdout = reader.bool(node, fields.path("stdout")) ?? outputs.stdout }
        if let node = fields["webhook"] { outputs.webhook = webhook(node, fields.path("webhook")) }
        if let node = fields["alertmanager"] { outputs.alertmanager = alertmanager(node, fields.path("alertmanager")) }
        if let node = fields["kubernetes"],
            let kubernetes = reader.fields(node, fields.path("kubernetes"), allowed: ["events", "annotations"])
        {
            if let node = kubernetes["events"] { outputs.kubernetes.events = reader.bool(node, kubernetes.path("events")) ?? false }
            if let node = kubernetes["annotations"] {
                outputs.kubernetes.annotations = reader.bool(node, kubernetes.path("annotations")) ?? false
            }
        }
        return outputs
    }

    private mutating func webhook(_ node: Node, _ path: String) -> WebhookSettings? {
        let keys = ["url", "timeout", "retries", "backoff", "queueSize", "bearerTokenFile", "hmacSecretFile", "caFile", "minSeverity"]
        guard let fields = reader.fields(node, path, allowed: keys, required: ["url"]) else { return nil }
        // the other fields are checked even when the URL is bad: every problem in one run
        let url = fields["url"].flatMap { reader.url($0, fields.path("url")) }
        var settings = WebhookSettings(url: url ?? "")
        if let node = fields["timeout"] { settings.timeout = reader.duration(node, fields.path("timeout")) ?? settings.timeout }
        if let node = fields["retries"] {
            settings.maxRetries = reader.integer(node, fields.path("retries"), in: 0...100) ?? settings.maxRetries
        }
        if let node = fields["backoff"], let backoff = reader.fields(node, fields.path("backoff"), allowed: ["initial", "max"]) {
            if let node = backoff["initial"] {
                settings.initialBackoff = reader.duration(node, backoff.path("initial")) ?? settings.initialBackoff
            }
            if let node = backoff["max"] { settings.maxBackoff = reader.duration(node, backoff.path("max")) ?? settings.maxBackoff }
            if settings.initialBackoff > settings.maxBackoff {
                reader.report(backoff["max"] ?? backoff["initial"] ?? node, backoff.path(backoff["max"] != nil ? "max" : "initial"),
                    "max (\(settings.maxBackoff)) must be at least initial (\(settings.initialBackoff))")
            }
        }
        if let node = fields["queueSize"] {
            settings.queueSize = reader.integer(node, fields.path("queueSize"), in: 1...1_000_000) ?? settings.queueSize
        }
        if let node = fields["bearerTokenFile"] {
            settings.bearerTokenFile = reader.filePath(node, fields.path("bearerTokenFile"))
            if let url, let host = PlainHTTP.remoteHost(url) {
                reader.report(
                    node, fields.path("bearerTokenFile"),
                    "a bearer token is never sent over plain http:// (url is http:// to \(host)): use an https:// url")
            }
        }
        if let node = fields["hmacSecretFile"] { settings.hmacSecretFile = reader.filePath(node, fields.path("hmacSecretFile")) }
        if let node = fields["caFile"] { settings.caFile = reader.filePath(node, fields.path("caFile")) }
        if let node = fields["minSeverity"],
            let text = reader.choice(node, fields.path("minSeverity"), AgentEvent.Severity.allCases.map(\.rawValue))
        {
            settings.minSeverity = AgentEvent.Severity(rawValue: text) ?? settings.minSeverity
        }
        return url == nil ? nil : settings
    }

    private mutating func alertmanager(_ node: Node, _ path: String) -> AlertmanagerSettings? {
        let keys = ["url", "timeout", "resendInterval", "queueSize", "bearerTokenFile", "caFile"]
        guard let fields = reader.fields(node, path, allowed: keys, required: ["url"]) else { return nil }
        // the other fields are checked even when the URL is bad: every problem in one run
        let url = fields["url"].flatMap { reader.url($0, fields.path("url")) }
        var settings = AlertmanagerSettings(url: url ?? "")
        if let node = fields["timeout"] { settings.timeout = reader.duration(node, fields.path("timeout")) ?? settings.timeout }
        if let node = fields["resendInterval"] {
            settings.resendInterval = reader.duration(node, fields.path("resendInterval")) ?? settings.resendInterval
        }
        if let node = fields["queueSize"] {
            settings.queueSize = reader.integer(node, fields.path("queueSize"), in: 1...1_000_000) ?? settings.queueSize
        }
        if let node = fields["bearerTokenFile"] {
            settings.bearerTokenFile = reader.filePath(node, fields.path("bearerTokenFile"))
            if let url, let host = PlainHTTP.remoteHost(url) {
                reader.report(
                    node, fields.path("bearerTokenFile"),
                    "a bearer token is never sent over plain http:// (url is http:// to \(host)): use an https:// url")
            }
        }
        if let node = fields["caFile"] { settings.caFile = reader.filePath(node, fields.path("caFile")) }
        return url == nil ? nil : settings
    }
}
