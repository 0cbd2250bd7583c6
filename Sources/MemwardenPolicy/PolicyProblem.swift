/// One thing wrong with a policy file, located the way editors and CI logs
/// expect: `file:line:column: path: message`. `path` names the field in the
/// document ("rules[2].budget", "outputs.webhook.url"); line and column are
/// 1-based, nil when the problem is with the file as a whole (unreadable,
/// empty).
public struct PolicyProblem: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var path: String
    public var message: String

    public init(file: String, line: Int?, column: Int?, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    public var description: String {
        var text = file
        if let line {
            text += ":\(line)"
            if let column { text += ":\(column)" }
        }
        text += ": "
        if !path.isEmpty { text += path + ": " }
        return text + message
    }
}

/// A policy file that cannot be used, with every problem found in it (not
/// only the first), in the order of the file.
public struct PolicyError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var problems: [PolicyProblem]

    public init(file: String, problems: [PolicyProblem]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return "\(file): invalid policy (\(count)):\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
