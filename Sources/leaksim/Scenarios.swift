import Glibc

/// One simulated memory shape for the detectors: a leak they must flag, or a control they must not.
struct Scenario {
    enum Kind: String {
        case leak
        case control
    }

    let name: String
    let kind: Kind
    let summary: String
    /// The memory shape in words, as `--help` and docs/leaksim.md give it.
    let shape: String
    let flags: [Flag]
    let build: @Sendable (Arguments, Timeline) throws -> any Workload

    static func named(_ name: String) -> Scenario? {
        all.first { $0.name == name }
    }

    /// Runs the scenario in this process; never returns.
    func run(_ words: ArraySlice<String>) -> Never {
        let arguments = Arguments(words, flags: flags, command: name)
        StopSignals.block()
        do {
            if let cgroup = arguments.path("cgroup") {
                try Linux.joinCgroup(cgroup)
            }
            let timeline = Timeline(start: Clock.now(), duration: arguments.number("duration"))
            let workload = try build(arguments, timeline)
            Output.line("ready pid=\(getpid()) scenario=\(name)")
            let outcome = try timeline.run(workload)
            try workload.finish(requested: outcome != .finished)
            if outcome == .finished { Output.line("done") }
            exit(0)
        } catch {
            fail(with: error)
        }
    }
}

// MARK: - The catalogue

extension Scenario {
    static let all: [Scenario] = leaks + controls

    static let leaks: [Scenario] = [
        Scenario(
            name: "steady", kind: .leak, summary: "slow steady growth",
            shape: "base, then a straight line up at --rate (up to --max)",
            flags: [.rate("2", "growth")] + common(duration: "45", base: "32", leak: true),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .linear(base: arguments.number("base"), rate: arguments.number("rate"), cap: cap(arguments)))
            }),
        Scenario(
            name: "fast", kind: .leak, summary: "fast growth up to a cap",
            shape: "base, then a steep line at --rate until --max, flat at --max after",
            flags: [.rate("50", "growth")] + common(duration: "8", base: "32", leak: true, max: "600"),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .linear(base: arguments.number("base"), rate: arguments.number("rate"), cap: cap(arguments)))
            }),
        Scenario(
            name: "staircase", kind: .leak, summary: "growth in steps with plateaus between",
            shape: "base, then up by --step every --period seconds (first step at t = --period), flat in between",
            flags: [
                Flag(
                    name: "step", kind: .mebibytes(positive: true), defaultValue: "32", help: "MiB added at each step"),
                Flag(name: "period", kind: .seconds, defaultValue: "5", help: "seconds between steps"),
            ] + common(duration: "45", base: "32", leak: true),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .staircase(
                        base: arguments.number("base"), step: arguments.number("step"),
                        period: arguments.number("period"), cap: cap(arguments)))
            }),
        Scenario(
            name: "sawtooth-leak", kind: .leak, summary: "a leak under a GC-like sawtooth",
            shape:
                "teeth of --amplitude over each --period, dropping back to a floor that rises by --rate × --period every cycle",
            flags: [
                .rate("1", "rise of the floor, averaged over a cycle"),
                Flag(
                    name: "amplitude", kind: .mebibytes(positive: true), defaultValue: "48",
                    help: "height of each tooth, MiB"),
                Flag(name: "period", kind: .seconds, defaultValue: "5", help: "seconds per tooth"),
            ] + common(duration: "60", base: "64", leak: true),
            build: { arguments, _ in
                let period = arguments.number("period")
                return try heap(
                    arguments,
                    .sawtooth(
                        base: arguments.number("base"), amplitude: arguments.number("amplitude"), period: period,
                        floorRise: arguments.number("rate") * period, cap: cap(arguments)))
            }),
        Scenario(
            name: "fragmentation", kind: .leak, summary: "address space growing much faster than RSS",
            shape: "a dense base, plus anonymous regions mapped at --rate with one page in --stride touched: "
                + "VmSize grows at --rate, RssAnon at about --rate / --stride",
            flags: [
                .rate("64", "address space mapped (VmSize growth)"),
                Flag(name: "stride", kind: .count(1...65536), defaultValue: "64", help: "touch one page in this many"),
            ] + common(duration: "40", base: "32", leak: true),
            build: { arguments, _ in
                let sparse = LevelWorkload(
                    try Pool(.anonymous, touchingOnePageIn: arguments.count("stride")),
                    .linear(base: 0, rate: arguments.number("rate"), cap: cap(arguments)),
                    jitter: .none)
                return CompositeWorkload([
                    try heap(arguments, .linear(base: arguments.number("base"), rate: 0)), sparse,
                ])
            }),
        Scenario(
            name: "shmem", kind: .leak, summary: "shared memory (/dev/shm) growth",
            shape: "a flat anonymous base, plus MAP_SHARED /dev/shm memory growing at --rate (RssShmem)",
            flags: [.rate("4", "shared memory growth")] + common(duration: "40", base: "32", leak: true),
            build: { arguments, _ in
                let shared = LevelWorkload(
                    try Pool(.sharedMemory), .linear(base: 0, rate: arguments.number("rate"), cap: cap(arguments)),
                    jitter: .none)
                return CompositeWorkload([
                    try heap(arguments, .linear(base: arguments.number("base"), rate: 0)), shared,
                ])
            }),
        Scenario(
            name: "children", kind: .leak, summary: "N forked children in one cgroup, each leaking a little",
            shape: "--children processes, each a steady leak of --rate / N from --base / N (--max / N); "
                + "the cgroup total is a steady leak of --rate from --base",
            flags: [
                .rate("4", "growth of all children together"),
                Flag(name: "children", kind: .count(1...256), defaultValue: "4", help: "processes to fork"),
            // longer than the single-process leaks: only the cgroup's aggregate shows
            // this leak, and it starts as the children join, one step each
            ] + common(duration: "50", base: "32", leak: true),
            build: { arguments, timeline in
                let count = arguments.count("children")
                let share = Double(count)
                return ChildrenWorkload(count: count, timeline: timeline) { index in
                    LevelWorkload(
                        try Pool(.anonymous),
                        .linear(
                            base: arguments.number("base") / share, rate: arguments.number("rate") / share,
                            cap: cap(arguments) / share),
                        jitter: Jitter(
                            amplitude: arguments.number("noise"), seed: arguments.seed("seed") &+ UInt64(index)))
                }
            }),
    ]

    static let controls: [Scenario] = [
        Scenario(
            name: "stable", kind: .control, summary: "flat memory with noise",
            shape: "--base, moved by up to ±--noise MiB every 0.5 s",
            flags: common(duration: "45", base: "64", noise: "2"),
            build: { arguments, _ in try heap(arguments, .linear(base: arguments.number("base"), rate: 0)) }),
        Scenario(
            name: "sawtooth", kind: .control, summary: "GC-like sawtooth with a flat floor",
            shape: "rises by --amplitude over each --period, then drops back to --base at once",
            flags: [
                Flag(
                    name: "amplitude", kind: .mebibytes(positive: true), defaultValue: "64",
                    help: "height of each tooth, MiB"),
                Flag(name: "period", kind: .seconds, defaultValue: "5", help: "seconds per tooth"),
            ] + common(duration: "45", base: "64"),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .sawtooth(
                        base: arguments.number("base"), amplitude: arguments.number("amplitude"),
                        period: arguments.number("period"), floorRise: 0))
            }),
        Scenario(
            name: "warmup", kind: .control, summary: "fast warm-up, then a plateau",
            shape: "base, up at --rate for --warmup seconds, flat after",
            flags: [
                .rate("40", "growth during the warm-up"),
                Flag(name: "warmup", kind: .seconds, defaultValue: "4", help: "seconds of growth"),
            ] + common(duration: "40", base: "16"),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .warmup(
                        base: arguments.number("base"), rate: arguments.number("rate"),
                        seconds: arguments.number("warmup")))
            }),
        Scenario(
            name: "step", kind: .control, summary: "one step up, then flat",
            shape: "base, up by --step at --at seconds, flat after",
            flags: [
                Flag(name: "step", kind: .mebibytes(positive: true), defaultValue: "64", help: "MiB added once"),
                Flag(name: "at", kind: .seconds, defaultValue: "10", help: "seconds before the step"),
            ] + common(duration: "40", base: "32"),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .step(base: arguments.number("base"), step: arguments.number("step"), at: arguments.number("at")))
            }),
        Scenario(
            name: "filecache", kind: .control, summary: "file-backed (page cache) growth",
            shape: "a flat anonymous base; a --size MiB file written under --dir, then mapped and read at --rate: "
                + "RssFile grows to --size and stays, RssAnon stays flat",
            flags: [
                .rate("8", "file pages read (RssFile growth)"),
                Flag(name: "size", kind: .mebibytes(positive: true), defaultValue: "256", help: "file size, MiB"),
                Flag(
                    name: "dir", kind: .path, defaultValue: "/var/tmp",
                    help: "directory on a disk file system (not tmpfs)"),
            ] + common(duration: "40", base: "32"),
            build: { arguments, _ in
                let file = try FileCacheWorkload(
                    directory: arguments.path("dir")!, bytes: Memory.pagesUp(mebibytes: arguments.number("size")),
                    shape: .linear(base: 0, rate: arguments.number("rate")))
                return CompositeWorkload([try heap(arguments, .linear(base: arguments.number("base"), rate: 0)), file])
            }),
        Scenario(
            name: "spike", kind: .control, summary: "startup spike, then flat",
            shape: "base + --spike for the first --hold seconds, then back to base and flat",
            flags: [
                Flag(name: "spike", kind: .mebibytes(positive: true), defaultValue: "256", help: "MiB of the spike"),
                Flag(name: "hold", kind: .seconds, defaultValue: "2", help: "seconds the spike is held"),
            ] + common(duration: "40", base: "32"),
            build: { arguments, _ in
                try heap(
                    arguments,
                    .spike(
                        base: arguments.number("base"), spike: arguments.number("spike"), hold: arguments.number("hold")
                    ))
            }),
        Scenario(
            name: "periodic", kind: .control, summary: "flat with short periodic spikes",
            shape: "base, with base + --spike for --width seconds every --period seconds (first spike at t = --period)",
            flags: [
                Flag(name: "spike", kind: .mebibytes(positive: true), defaultValue: "64", help: "MiB of each spike"),
                Flag(name: "period", kind: .seconds, defaultValue: "8", help: "seconds between spikes"),
                Flag(name: "width", kind: .seconds, defaultValue: "1", help: "seconds each spike lasts (< --period)"),
            ] + common(duration: "45", base: "64"),
            build: { arguments, _ in
                let period = arguments.number("period")
                let width = arguments.number("width")
                guard width < period else { throw Problem.usage("--width must be shorter than --period") }
                return try heap(
                    arguments,
                    .periodic(
                        base: arguments.number("base"), spike: arguments.number("spike"), period: period, width: width))
            }),
        Scenario(
            name: "malloc-churn", kind: .control, summary: "allocate/free churn with random sizes (like stress-ng --malloc)",
            shape: "base plus up to --blocks live blocks of up to --block MiB each, one allocated or freed every 1/--ops s",
            flags: [
                Flag(name: "block", kind: .mebibytes(positive: true), defaultValue: "64", help: "largest block, MiB"),
                Flag(name: "blocks", kind: .count(1...1024), defaultValue: "8", help: "most blocks live at once"),
                Flag(name: "ops", kind: .rate, defaultValue: "4", help: "allocations and frees per second"),
            ] + common(duration: "45", base: "32"),
            build: { arguments, _ in
                MallocChurnWorkload(
                    try Pool(.anonymous), base: arguments.number("base"), block: arguments.number("block"),
                    blocks: arguments.count("blocks"), opsPerSecond: arguments.number("ops"), seed: arguments.seed("seed"))
            }),
    ]

    /// The flags every scenario takes; leaks add --max.
    private static func common(
        duration: String, base: String, noise: String = "0", leak: Bool = false, max: String? = nil
    ) -> [Flag] {
        var flags = [
            Flag(
                name: "duration", kind: .duration, defaultValue: duration,
                help: "seconds to run (0: until SIGTERM/SIGINT)"),
            Flag(
                name: "base", kind: .mebibytes(positive: false), defaultValue: base,
                help: "anonymous MiB held from the start"),
            Flag(
                name: "noise", kind: .mebibytes(positive: false), defaultValue: noise,
                help: "± MiB of random noise on the level, redrawn every 0.5 s"),
            Flag(
                name: "seed", kind: .seed, defaultValue: "1",
                help: "seed of the noise (xorshift64*), for repeatable runs"),
            Flag(
                name: "cgroup", kind: .path, defaultValue: nil,
                help: "cgroup directory to join (its cgroup.procs) before anything else"),
        ]
        if leak {
            let help = "cap on the leaking memory, MiB" + (max == nil ? " (default: no cap)" : "")
            flags.append(Flag(name: "max", kind: .mebibytes(positive: true), defaultValue: max, help: help))
        }
        return flags
    }

    /// The main anonymous heap of a scenario, with its --noise and --seed.
    private static func heap(_ arguments: Arguments, _ shape: Shape) throws -> LevelWorkload {
        LevelWorkload(
            try Pool(.anonymous), shape,
            jitter: Jitter(amplitude: arguments.number("noise"), seed: arguments.seed("seed")))
    }

    private static func cap(_ arguments: Arguments) -> Double {
        arguments.optionalNumber("max") ?? .infinity
    }
}

extension Flag {
    static func rate(_ value: String, _ what: String) -> Flag {
        Flag(name: "rate", kind: .rate, defaultValue: value, help: "MiB/s: \(what)")
    }
}
