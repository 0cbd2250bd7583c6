/// The text of `--help` for each mode, built from the same tables the modes run on.
enum Help {
    static func overview() -> String {
        var lines = [
            "leaksim: memory shapes with known causes, for memwarden's kernel tests, live tests and benchmarks",
            "",
            "usage:",
            "  leaksim serve                         an interactive child: commands on stdin, one answer line each",
            "  leaksim storm [--mib N] [--passes P]  the benchmark's page-fault storm (JSON lines)",
            "  leaksim SCENARIO [FLAGS]              a memory shape for the detectors",
            "  leaksim MODE --help                   the commands or flags of one mode or scenario",
            "",
            "leaks (must be flagged):",
        ]
        lines += Scenario.leaks.map { "  " + pad($0.name, 16) + $0.summary }
        lines += ["", "controls (must not be flagged):"]
        lines += Scenario.controls.map { "  " + pad($0.name, 16) + $0.summary }
        lines += [
            "",
            "Every scenario prints 'ready pid=<pid> scenario=<name>' first and 'done' when its duration is up;",
            "SIGTERM, SIGINT or SIGHUP stop it cleanly. Exit status: 0 done or stopped, 1 a system call or a",
            "child failed, 2 a bad command line. Details and memory shapes: docs/leaksim.md.",
        ]
        return lines.joined(separator: "\n")
    }

    static func scenario(_ scenario: Scenario) -> String {
        var lines = [
            "leaksim \(scenario.name) [FLAGS]: \(scenario.summary) (\(scenario.kind.rawValue))",
            "",
            "shape: \(scenario.shape)",
            "",
            "flags:",
        ]
        lines += flagLines(scenario.flags)
        return lines.joined(separator: "\n")
    }

    static func storm() -> String {
        var lines = [
            "leaksim storm [FLAGS]: map, touch (one write per page) and unmap N MiB of anonymous memory, P times",
            "",
            "output: one line per pass {\"pass\":i,\"seconds\":x,\"pages\":n}, then {\"total_seconds\":x,\"passes\":P,\"pages\":n}",
            "",
            "flags:",
        ]
        lines += flagLines(Storm.flags)
        return lines.joined(separator: "\n")
    }

    static func serve() -> String {
        var lines = [
            "leaksim serve: prints 'ready pid=<pid>', then reads commands on stdin, one a line, and answers",
            "each with one line, 'ok ...' or 'error <message>'. Exits 0 at the end of stdin.",
            "",
            "commands:",
        ]
        lines += Serve.commands.flatMap { command, what, answer in
            ["  " + pad(command, 22) + what, "  " + pad("", 22) + "→ " + answer]
        }
        lines += ["", "Sizes are MiB (fractions allowed), rounded up to whole pages."]
        return lines.joined(separator: "\n")
    }

    private static func flagLines(_ flags: [Flag]) -> [String] {
        flags.map { flag in
            let usage = "--\(flag.name) \(flag.placeholder)"
            let fallback = flag.defaultValue.map { " (default \($0))" } ?? ""
            return "  " + pad(usage, 22) + flag.help + fallback
        }
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
