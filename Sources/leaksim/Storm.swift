import Glibc

/// `leaksim storm`: the benchmark's page-fault storm. Each pass faults N MiB in one page at a
/// time (about two rss_stat events per page) and gives it back, so the time per pass measures
/// the cost a tracepoint program adds to every fault.
enum Storm {
    static let flags = [
        Flag(
            name: "mib", kind: .count(1...(1 << 20)), defaultValue: "1024",
            help: "MiB mapped, touched and unmapped per pass"),
        Flag(name: "passes", kind: .count(1...1_000_000), defaultValue: "3", help: "passes"),
    ]

    static func run(_ words: ArraySlice<String>) -> Never {
        let arguments = Arguments(words, flags: flags, command: "storm")
        let bytes = arguments.count("mib") * Memory.mebibyte
        let passes = arguments.count("passes")
        let start = Clock.now()
        var total = 0
        for pass in 1...passes {
            let passStart = Clock.now()
            let mapping: Mapping
            do { mapping = try Mapping.anonymous(bytes) } catch { fail(with: error) }
            mapping.touch()
            mapping.unmap()
            let nanoseconds = Clock.now() - passStart
            total += mapping.pages
            Output.line(
                "{\"pass\":\(pass),\"seconds\":\(decimalSeconds(nanoseconds: nanoseconds)),\"pages\":\(mapping.pages)}")
        }
        let nanoseconds = Clock.now() - start
        Output.line(
            "{\"total_seconds\":\(decimalSeconds(nanoseconds: nanoseconds)),\"passes\":\(passes),\"pages\":\(total)}")
        exit(0)
    }
}
