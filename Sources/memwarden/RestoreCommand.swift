import ArgumentParser
import Logging
import MemwardenModel

#if canImport(Glibc)
import Glibc
#endif
import MemwardenResponse

/// `memwarden restore`: puts back every memory.high the agent recorded in its
/// state file, without running the agent. What `run` does at startup after a
/// crash; for an uninstall (a DaemonSet removed while it had throttled
/// containers) or an operator who wants the node back as it was now.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore every memory.high recorded in the responder's state file, and print what was done.",
        discussion: """
            Prints one response.restore or response.skipped event per record (docs/responses.md). A value \
            someone else wrote since is left alone (reason external_write); a cgroup that is gone or was \
            recreated is skipped. Exit 0 when nothing is left to restore, 1 when a record could not be \
            restored (it stays in the file for the next try).
            """)

    @Option(help: "The responder's state file.")
    var stateFile: String = ResponseStateFile.defaultPath

    @Option(help: ArgumentHelp(
        "The cgroupfs the recorded directories must lie under (as the agent's --host-cgroup); a record outside it is not restored.",
        valueName: "path"))
    var hostCgroup: String = "/sys/fs/cgroup"

    @Flag(help: "Only say what would be restored; write nothing.")
    var dryRun = false

    @Option(help: "Log level on stderr (trace, debug, info, notice, warning, error, critical).")
    var logLevel: Logger.Level = .info

    func run() throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "memwarden")
        let file = ResponseStateFile(path: stateFile)
        let node = getenv("NODE_NAME").map { String(cString: $0) }
        var responder = Responder(
            configuration: ResponderConfiguration(
                cgroupRoot: hostCgroup, version: nil, stateFile: file, dryRun: dryRun, node: node),
            clock: { ClockReading.system() }, logger: logger)
        for event in responder.recover() { print(event.jsonLine()) }
        let left = file.load().records.count
        if left > 0 && !dryRun {
            logger.error("\(left) record\(left == 1 ? "" : "s") could not be restored; kept in \(stateFile)")
            throw ExitCode(1)
        }
    }
}
