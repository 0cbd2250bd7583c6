import Glibc

let words = CommandLine.arguments.dropFirst()
let helpWords: Set = ["-h", "--help", "help"]

guard let mode = words.first else {
    Output.usageError("a mode or scenario is needed (see leaksim --help)")
}
let rest = words.dropFirst()
let wantsHelp = rest.contains { helpWords.contains($0) }

switch mode {
case _ where helpWords.contains(mode):
    Output.line(Help.overview())
case "serve":
    if wantsHelp { Output.line(Help.serve()) } else { Serve.run(rest) }
case "storm":
    if wantsHelp { Output.line(Help.storm()) } else { Storm.run(rest) }
default:
    guard let scenario = Scenario.named(mode) else {
        Output.usageError("unknown mode or scenario '\(mode)' (see leaksim --help)")
    }
    if wantsHelp { Output.line(Help.scenario(scenario)) } else { scenario.run(rest) }
}
