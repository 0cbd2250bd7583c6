import Testing

@testable import MemwardenPolicy

/// A bad policy file and the problems it must produce: line, column, field
/// path, and a part of the message that says what was expected.
struct BadPolicy: CustomTestStringConvertible, Sendable {
    struct Expected: Sendable {
        var line: Int?
        var column: Int?
        var path: String
        var message: String
    }

    var name: String
    var yaml: String
    var problems: [Expected]

    init(_ name: String, _ yaml: String, _ problems: [(Int?, Int?, String, String)]) {
        self.name = name
        self.yaml = yaml
        self.problems = problems.map { Expected(line: $0.0, column: $0.1, path: $0.2, message: $0.3) }
    }

    var testDescription: String { name }
}

struct PolicyValidationTests {
    static let header = "apiVersion: memwarden.io/v1\n"

    static let badFiles: [BadPolicy] = [
        BadPolicy("empty file", "", [(1, 1, "", "the file is empty")]),
        BadPolicy("not a mapping", "- a\n- b\n", [(1, 1, "", "expected a mapping, found a list")]),
        BadPolicy("missing apiVersion", "defaults: {}\n", [(1, 1, "", "missing required key 'apiVersion'")]),
        BadPolicy(
            "wrong apiVersion", "apiVersion: memwarden.io/v2\n",
            [(1, 13, "apiVersion", "unsupported version 'memwarden.io/v2' (this agent reads memwarden.io/v1)")]),
        BadPolicy("wrong kind", header + "kind: Policy\n", [(2, 7, "kind", "'Policy': expected MemwardenPolicy")]),
        BadPolicy(
            "unknown key at the top", header + "rulez: []\n",
            [(2, 1, "rulez", "unknown key 'rulez'; did you mean 'rules'?")]),
        BadPolicy(
            "unknown key in a rule", header + "rules:\n  - name: a\n    match: {namespace: x}\n    budgt: 1Gi\n",
            [(5, 5, "rules[0].budgt", "unknown key 'budgt'; did you mean 'budget'?")]),
        BadPolicy(
            "YAML merge key through an alias",
            header + "x: &base {budget: 1Gi}\nrules:\n  - name: a\n    match: {namespace: a}\n    <<: *base\n",
            [
                (2, 1, "x", "unknown key 'x'"),
                (6, 5, "rules[0].<<", "YAML merge keys (<<) are not supported"),
            ]),
        BadPolicy(
            "YAML merge key",
            header + "rules:\n  - name: a\n    match: {namespace: a}\n    <<: {budget: 1Gi}\n",
            [(5, 5, "rules[0].<<", "YAML merge keys (<<) are not supported")]),
        BadPolicy(
            "YAML syntax error", header + "defaults:\n  budget: [1Gi\n",
            [(4, 1, "", "YAML syntax error: did not find expected ',' or ']'")]),
        BadPolicy(
            "tab indentation", header + "defaults:\n\tbudget: 1Gi\n",
            [(3, 1, "", "YAML syntax error: found character that cannot start any token")]),
        BadPolicy(
            "duplicate key", header + "defaults:\n  budget: 1Gi\n  budget: 2Gi\n",
            [(4, 3, "defaults.budget", "duplicate key 'budget' (first at line 3)")]),
        BadPolicy(
            "wrong type: list for a mapping", header + "defaults:\n  tiers: [70%, 80%]\n",
            [(3, 10, "defaults.tiers", "expected a mapping, found a list")]),
        BadPolicy(
            "wrong type: mapping for a string", header + "rules:\n  - name: {a: b}\n    match: {namespace: x}\n",
            [(3, 11, "rules[0].name", "expected a string, found a mapping")]),
        BadPolicy(
            "wrong type: rules is a mapping", header + "rules:\n  a: 1\n",
            [(3, 3, "rules", "expected a list, found a mapping")]),
        BadPolicy(
            "bool spelled yes", header + "outputs:\n  stdout: yes\n",
            [(3, 11, "outputs.stdout", "expected true or false, found 'yes'")]),
        BadPolicy(
            "integer expected", header + "outputs:\n  webhook:\n    url: http://h\n    retries: many\n",
            [(5, 14, "outputs.webhook.retries", "expected an integer, found 'many'")]),
        BadPolicy(
            "quantity with a bad unit", header + "defaults:\n  budget: 512MB\n",
            [(3, 11, "defaults.budget", "'512MB': unknown unit 'MB'")]),
        BadPolicy(
            "quantity in milli", header + "defaults:\n  budget: 100m\n",
            [(3, 11, "defaults.budget", "'m' is milli (a thousandth of a byte); did you mean Mi")]),
        BadPolicy(
            "quantity that is not a number", header + "defaults:\n  budget: lots\n",
            [(3, 11, "defaults.budget", "'lots': expected bytes: an integer or a Kubernetes quantity")]),
        BadPolicy(
            "zero budget", header + "defaults:\n  budget: 0\n",
            [(3, 11, "defaults.budget", "must be more than 0 (use none for no budget)")]),
        BadPolicy(
            "quantity too large", header + "defaults:\n  budget: 100Ei\n",
            [(3, 11, "defaults.budget", "too large")]),
        BadPolicy(
            "tiers out of order", header + "defaults:\n  tiers:\n    warning: 70%\n    high: 60%\n",
            [(5, 11, "defaults.tiers.high", "tiers out of order: high (60%) must be above warning (70%)")]),
        BadPolicy(
            "tier against an inherited one",
            header + "rules:\n  - name: a\n    match: {namespace: x}\n    tiers:\n      warning: 85%\n",
            [(6, 16, "rules[0].tiers.warning", "high (80%) must be above warning (85%) (high from the defaults)")]),
        BadPolicy(
            "tier above 100%", header + "defaults:\n  tiers:\n    emergency: 120%\n",
            [(4, 16, "defaults.tiers.emergency", "120% is out of range (expected more than 0% and at most 100%)")]),
        BadPolicy(
            "confidence above 100 %", header + "defaults:\n  response:\n    throttle: {minConfidence: 120%}\n",
            [(4, 31, "defaults.response.throttle.minConfidence", "120% is out of range")]),
        BadPolicy(
            "a negative growth rate", header + "defaults:\n  response:\n    throttle: {maxGrowthRate: -128Ki}\n",
            [(4, 31, "defaults.response.throttle.maxGrowthRate", "'-128Ki': expected bytes per second of at least 1")]),
        BadPolicy(
            "a growth rate that is no quantity", header + "defaults:\n  response:\n    throttle:\n      maxGrowthRate: fast\n",
            [(5, 22, "defaults.response.throttle.maxGrowthRate", "'fast': expected bytes per second of at least 1: a quantity such as 128Ki")]),
        BadPolicy(
            "a growth rate of zero", header + "rules:\n  - name: a\n    match: {namespace: x}\n    response: {throttle: {maxGrowthRate: 0}}\n",
            [(5, 42, "rules[0].response.throttle.maxGrowthRate", "'0': must be more than 0 bytes per second")]),
        BadPolicy(
            "a growth rate in milli-bytes", header + "defaults:\n  response:\n    throttle: {maxGrowthRate: 128m/s}\n",
            [(4, 31, "defaults.response.throttle.maxGrowthRate", "'128m/s': 'm' is milli (a thousandth of a byte); did you mean Mi")]),
        BadPolicy(
            "a growth rate per minute", header + "defaults:\n  response:\n    throttle: {maxGrowthRate: 1Mi/m}\n",
            [(4, 31, "defaults.response.throttle.maxGrowthRate", "'1Mi/m': unknown unit 'Mi/m'")]),
        BadPolicy(
            "a detector patience that is no duration", header + "defaults:\n  detectors: {patience: 3}\n",
            [(3, 25, "defaults.detectors.patience", "'3': missing unit after '3' (ns, us, ms, s, m or h)")]),
        BadPolicy(
            "tier as a fraction out of range", header + "defaults:\n  tiers:\n    warning: 0\n",
            [(4, 14, "defaults.tiers.warning", "0 is out of range (expected more than 0%")]),
        BadPolicy(
            "duration without unit", header + "defaults:\n  cooldowns:\n    event: 5\n",
            [(4, 12, "defaults.cooldowns.event", "'5': missing unit after '5'")]),
        BadPolicy(
            "duration with a bad unit", header + "defaults:\n  cooldowns:\n    response: 5d\n",
            [(4, 15, "defaults.cooldowns.response", "'5d': unknown unit 'd'")]),
        BadPolicy(
            "unknown mode", header + "defaults:\n  response:\n    mode: throtle\n",
            [(4, 11, "defaults.response.mode", "'throtle': expected one of: observe, annotate, throttle; did you mean 'throttle'?")]),
        BadPolicy(
            "throttle without a budget", header + "defaults:\n  budget: none\n  response:\n    mode: throttle\n",
            [(5, 11, "defaults.response.mode", "mode throttle needs a budget")]),
        BadPolicy(
            "throttle without a budget in defaults is reported once, not again for each rule",
            header + "defaults:\n  budget: none\n  response: {mode: throttle}\nrules:\n  - name: a\n    match: {namespace: x}\n"
                + "  - name: b\n    match: {namespace: y}\n    response: {mode: throttle}\n",
            [
                (4, 20, "defaults.response.mode", "mode throttle needs a budget"),
                (10, 22, "rules[1].response.mode", "mode throttle needs a budget"),
            ]),
        BadPolicy(
            "unknown detector profile", header + "defaults:\n  detectors:\n    profile: fast\n",
            [(4, 14, "defaults.detectors.profile", "'fast': expected one of: standard, accelerated")]),
        BadPolicy(
            "rule without name and match", header + "rules:\n  - budget: 1Gi\n",
            [(3, 5, "rules[0]", "missing required key 'name'"), (3, 5, "rules[0]", "missing required key 'match'")]),
        BadPolicy(
            "empty match", header + "rules:\n  - name: a\n    match: {}\n",
            [(4, 12, "rules[0].match", "needs at least one of: namespace, podSelector, container, systemdUnit, cgroup")]),
        BadPolicy(
            "reserved rule name", header + "rules:\n  - name: default\n    match: {namespace: x}\n",
            [(3, 11, "rules[0].name", "'default' is reserved")]),
        BadPolicy(
            "duplicate rule names",
            header + "rules:\n  - name: a\n    match: {namespace: x}\n  - name: a\n    match: {namespace: y}\n",
            [(5, 11, "rules[1].name", "duplicate rule name 'a' (first at line 3)")]),
        BadPolicy(
            "duplicate rules",
            header + "rules:\n  - name: a\n    match: {namespace: x}\n  - name: b\n    match: {namespace: x}\n",
            [(6, 12, "rules[1].match", "the same selectors as rule 'a', line 3: a duplicate rule")]),
        BadPolicy(
            "conflicting rules",
            header + "rules:\n  - name: a\n    match:\n      podSelector: {matchLabels: {app: api}}\n"
                + "  - name: b\n    match:\n      podSelector: {matchLabels: {tier: web}}\n",
            [(8, 7, "rules[1].match", "conflicts with rule 'a', line 3: equally specific (1 label requirement)")]),
        BadPolicy(
            "bad namespace", header + "rules:\n  - name: a\n    match: {namespace: Payments}\n",
            [(4, 24, "rules[0].match.namespace", "'Payments': expected a Kubernetes name")]),
        BadPolicy(
            "namespace listed twice", header + "rules:\n  - name: a\n    match: {namespace: [a, a]}\n",
            [(4, 28, "rules[0].match.namespace[1]", "'a' is listed twice")]),
        BadPolicy(
            "bad systemd unit", header + "rules:\n  - name: a\n    match: {systemdUnit: nginx}\n",
            [(4, 26, "rules[0].match.systemdUnit", "'nginx': expected a systemd unit name")]),
        BadPolicy(
            "relative cgroup", header + "rules:\n  - name: a\n    match: {cgroup: system.slice/x.service}\n",
            [(4, 21, "rules[0].match.cgroup", "expected a cgroup path or glob starting with '/'")]),
        BadPolicy(
            "In without values",
            header + "rules:\n  - name: a\n    match:\n      podSelector:\n        matchExpressions:\n          - {key: app, operator: In}\n",
            [(7, 13, "rules[0].match.podSelector.matchExpressions[0].values", "operator In needs a non-empty list of values")]),
        BadPolicy(
            "Exists with values",
            header + "rules:\n  - name: a\n    match:\n      podSelector:\n        matchExpressions:\n          - {key: app, operator: Exists, values: [x]}\n",
            [(7, 50, "rules[0].match.podSelector.matchExpressions[0].values", "operator Exists takes no values")]),
        BadPolicy(
            "unknown operator",
            header + "rules:\n  - name: a\n    match:\n      podSelector:\n        matchExpressions:\n          - {key: app, operator: in, values: [x]}\n",
            [(7, 34, "rules[0].match.podSelector.matchExpressions[0].operator", "'in': expected one of: In, NotIn, Exists, DoesNotExist; did you mean 'In'?")]),
        BadPolicy(
            "bad label key", header + "rules:\n  - name: a\n    match:\n      podSelector: {matchLabels: {'-app': x}}\n",
            [(5, 35, "rules[0].match.podSelector.matchLabels.-app", "'-app': expected a label key")]),
        BadPolicy(
            "empty selector", header + "rules:\n  - name: a\n    match:\n      podSelector: {matchLabels: {}}\n",
            [(5, 20, "rules[0].match.podSelector", "an empty selector matches every pod")]),
        BadPolicy(
            "bearer token over plain http", header + "outputs:\n  webhook:\n    url: http://hooks.example.com/x\n    bearerTokenFile: /run/token\n",
            [(5, 22, "outputs.webhook.bearerTokenFile", "a bearer token is never sent over plain http:// (url is http:// to hooks.example.com)")]),
        BadPolicy(
            "webhook URL", header + "outputs:\n  webhook:\n    url: ftp://hooks\n",
            [(4, 10, "outputs.webhook.url", "'ftp://hooks': expected an http:// or https:// URL with a host")]),
        BadPolicy(
            "webhook URL without host", header + "outputs:\n  webhook:\n    url: https:///x\n",
            [(4, 10, "outputs.webhook.url", "(the host is missing)")]),
        BadPolicy(
            "alertmanager bad port", header + "outputs:\n  alertmanager:\n    url: http://am:99999\n",
            [(4, 10, "outputs.alertmanager.url", "(bad port '99999')")]),
        BadPolicy(
            "missing URL", header + "outputs:\n  alertmanager:\n    timeout: 5s\n",
            [(4, 5, "outputs.alertmanager", "missing required key 'url'")]),
        BadPolicy(
            "relative secret file", header + "outputs:\n  webhook:\n    url: https://h/x\n    hmacSecretFile: secret\n",
            [(5, 21, "outputs.webhook.hmacSecretFile", "'secret': expected an absolute file path")]),
        BadPolicy(
            "backoff initial above max",
            header + "outputs:\n  webhook:\n    url: https://h/x\n    backoff: {initial: 10s, max: 1s}\n",
            [(5, 34, "outputs.webhook.backoff.max", "max (1.0 seconds) must be at least initial (10.0 seconds)")]),
        BadPolicy(
            "unknown severity", header + "outputs:\n  webhook:\n    url: https://h/x\n    minSeverity: error\n",
            [(5, 18, "outputs.webhook.minSeverity", "'error': expected one of: info, warning, critical")]),
        BadPolicy(
            "null where a string is expected", header + "rules:\n  - name:\n    match: {namespace: x}\n",
            [(3, 10, "rules[0].name", "expected a string, found null")]),
        BadPolicy(
            "several problems, all reported in file order",
            header + "defaults:\n  budget: 1XB\n  tiers: {warning: 2}\nrules:\n  - name: a b\n    match: {container: API}\noutputs:\n  stdout: 1\n",
            [
                (3, 11, "defaults.budget", "unknown unit 'XB'"),
                (4, 20, "defaults.tiers.warning", "2 is out of range"),
                (6, 11, "rules[0].name", "'a b': expected a name"),
                (7, 24, "rules[0].match.container", "'API': expected a Kubernetes name"),
                (9, 11, "outputs.stdout", "expected true or false, found '1'"),
            ]),
    ]

    @Test(arguments: badFiles)
    func badFileReportsEveryProblemWithItsLocation(_ bad: BadPolicy) {
        let file = "/etc/memwarden/\(bad.name.replacingOccurrences(of: " ", with: "-")).yaml"
        do {
            let policy = try PolicyLoader.parse(bad.yaml, file: file)
            Issue.record("accepted, resolving to \(policy)")
        } catch {
            #expect(error.file == file)
            let found = error.problems.map { "\($0.line.map(String.init) ?? "-"):\($0.column.map(String.init) ?? "-") \($0.path): \($0.message)" }
            #expect(error.problems.count == bad.problems.count, "found: \(found)")
            for (problem, expected) in zip(error.problems, bad.problems) {
                #expect(problem.file == file)
                #expect(problem.line == expected.line, "\(problem)")
                #expect(problem.column == expected.column, "\(problem)")
                #expect(problem.path == expected.path, "\(problem)")
                #expect(problem.message.contains(expected.message), "\(problem)")
            }
        }
    }

    /// Nested aliases expand to 10^9 nodes ("billion laughs"): refused once the expansion passes
    /// the cap, naming the first alias, after walking no more than the cap. One alias is fine.
    @Test func aliasesThatExpandPastTheCapAreRefused() throws {
        let laughs = Self.header + "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + (1...8).map { "l\($0): &l\($0) [" + Array(repeating: $0 == 1 ? "*a" : "*l\($0 - 1)", count: 10).joined(separator: ", ") + "]" }
                .joined(separator: "\n") + "\n"
        do {
            let policy = try PolicyLoader.parse(laughs, file: "policy.yaml")
            Issue.record("accepted, resolving to \(policy)")
        } catch {
            #expect(error.problems.count == 1, "\(error.problems)")
            let problem = try #require(error.problems.first)
            #expect(problem.message.contains("expands to more than 20000 YAML nodes through aliases"), "\(problem)")
            #expect(problem.line == 2 && problem.column == 4, "the anchor of the first node used again: \(problem)")
        }
        let shared = Self.header + "defaults:\n  tiers: &strict {warning: 60%}\nrules:\n  - name: a\n    match: {namespace: x}\n    tiers: *strict\n"
        let policy = try PolicyLoader.parse(shared, file: "policy.yaml")
        #expect(policy.rules.count == 1)
    }

    @Test func problemsAreFormattedFileLineColumnPathMessage() {
        let problem = PolicyProblem(file: "p.yaml", line: 3, column: 11, path: "defaults.budget", message: "bad")
        #expect(problem.description == "p.yaml:3:11: defaults.budget: bad")
        let whole = PolicyProblem(file: "p.yaml", line: nil, column: nil, path: "", message: "cannot open: No such file or directory")
        #expect(whole.description == "p.yaml: cannot open: No such file or directory")
    }

    @Test func unreadableFileIsOneProblemNamingTheFile() {
        #expect {
            try PolicyLoader.load(file: "/nonexistent/memwarden/policy.yaml")
        } throws: { error in
            guard let error = error as? PolicyError, let problem = error.problems.first else { return false }
            return error.problems.count == 1 && problem.line == nil
                && problem.description == "/nonexistent/memwarden/policy.yaml: cannot open: No such file or directory"
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
