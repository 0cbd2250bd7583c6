/// One command-line flag a mode accepts, with its default and how its value is checked.
struct Flag {
    enum Kind {
        /// MiB, fractions allowed; ≥ 0, or > 0 when `positive`.
        case mebibytes(positive: Bool)
        /// MiB per second, ≥ 0.
        case rate
        /// Seconds, > 0.
        case seconds
        /// Seconds, ≥ 0, where 0 means "until SIGTERM or SIGINT".
        case duration
        case count(ClosedRange<Int>)
        case seed
        case path
    }

    let name: String
    let kind: Kind
    /// Text of the default (checked like a user's value); nil when the flag is optional.
    let defaultValue: String?
    let help: String

    var placeholder: String {
        switch kind {
        case .mebibytes: "MIB"
        case .rate: "MIB/S"
        case .seconds, .duration: "SECONDS"
        case .count: "N"
        case .seed: "N"
        case .path: "DIR"
        }
    }

    /// The largest size or rate accepted: 1 TiB, far above any machine this runs on, and small
    /// enough that byte counts never overflow.
    static let largestMebibytes = Double(1 << 20)
    static let longestSeconds = 1e7
}

enum ArgumentValue {
    case number(Double)
    case count(Int)
    case seed(UInt64)
    case path(String)
}

/// The flags after a mode or scenario name: `--name value` or `--name=value`, each at most once,
/// only the declared ones, every value checked before anything runs.
struct Arguments {
    private var values: [String: ArgumentValue] = [:]

    /// Parses and validates; a mistake ends the program with status 2 and a message naming it.
    init(_ words: ArraySlice<String>, flags: [Flag], command: String) {
        var given: [String: String] = [:]
        var remaining = words[...]
        while let word = remaining.popFirst() {
            guard word.hasPrefix("--"), word.count > 2 else {
                Output.usageError("\(command): unexpected argument '\(word)' (see leaksim \(command) --help)")
            }
            var name = String(word.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard flags.contains(where: { $0.name == name }) else {
                Output.usageError("\(command) does not take --\(name) (see leaksim \(command) --help)")
            }
            guard given[name] == nil else { Output.usageError("--\(name) given twice") }
            if value == nil { value = remaining.popFirst() }
            guard let value else { Output.usageError("--\(name) needs a value") }
            given[name] = value
        }
        for flag in flags {
            guard let text = given[flag.name] ?? flag.defaultValue else { continue }
            switch Self.parse(text, as: flag.kind) {
            case .success(let value): values[flag.name] = value
            case .failure(let expectation):
                Output.usageError("--\(flag.name): expected \(expectation.text), got '\(text)'")
            }
        }
    }

    func number(_ name: String) -> Double {
        guard case .number(let value)? = values[name] else { undeclared(name) }
        return value
    }

    func optionalNumber(_ name: String) -> Double? {
        guard case .number(let value)? = values[name] else { return nil }
        return value
    }

    func count(_ name: String) -> Int {
        guard case .count(let value)? = values[name] else { undeclared(name) }
        return value
    }

    func seed(_ name: String) -> UInt64 {
        guard case .seed(let value)? = values[name] else { undeclared(name) }
        return value
    }

    func path(_ name: String) -> String? {
        guard case .path(let value)? = values[name] else { return nil }
        return value
    }

    private func undeclared(_ name: String) -> Never {
        fatalError("leaksim reads --\(name), which its mode does not declare with a default")
    }

    private struct Expectation: Error {
        let text: String
    }

    private static func parse(_ text: String, as kind: Flag.Kind) -> Result<ArgumentValue, Expectation> {
        func number(
            _ range: ClosedRange<Double>, excludingLowerBound: Bool, _ what: String
        ) -> Result<ArgumentValue, Expectation> {
            guard let value = Double(text), value.isFinite, range.contains(value),
                !(excludingLowerBound && value == range.lowerBound)
            else { return .failure(Expectation(text: what)) }
            return .success(.number(value))
        }
        switch kind {
        case .mebibytes(let positive):
            return number(
                0...Flag.largestMebibytes, excludingLowerBound: positive,
                "a size in MiB \(positive ? ">" : "≥") 0 and ≤ \(Int(Flag.largestMebibytes))")
        case .rate:
            return number(0...Flag.largestMebibytes, excludingLowerBound: false, "a rate in MiB/s ≥ 0")
        case .seconds:
            return number(0...Flag.longestSeconds, excludingLowerBound: true, "a number of seconds > 0")
        case .duration:
            return number(
                0...Flag.longestSeconds, excludingLowerBound: false, "a number of seconds ≥ 0 (0: until stopped)")
        case .count(let range):
            guard let value = Int(text), range.contains(value) else {
                return .failure(Expectation(text: "a whole number from \(range.lowerBound) to \(range.upperBound)"))
            }
            return .success(.count(value))
        case .seed:
            guard let value = UInt64(text) else { return .failure(Expectation(text: "a whole number ≥ 0")) }
            return .success(.seed(value))
        case .path:
            guard !text.isEmpty else { return .failure(Expectation(text: "a path")) }
            return .success(.path(text))
        }
    }
}
