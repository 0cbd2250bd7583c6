import ArgumentParser
import Foundation
import Logging
import MemwardenAgent
import MemwardenModel
import MemwardenPolicy
import MemwardenResponse

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent: events as JSON lines on stdout (leaks, budgets, responses, the agent's own), stats; logs on stderr.",
        discussion: "Exits 0 on SIGTERM/SIGINT or after --duration; 2 when the kernel side cannot run (privileges, BTF, tracepoint)."
    )

    @OptionGroup var kernel: KernelOptions
    @OptionGroup var host: HostOptions
    @OptionGroup var policy: PolicyOptions

    @Option(help: ArgumentHelp(
        "Where the responder records the memory.high values it changed, to restore them after a crash.",
        valueName: "file"))
    var stateFile: String = ResponseStateFile.defaultPath

    @Option(help: ArgumentHelp(
        "Throttle only cgroups under this one (a path as /proc/PID/cgroup shows it, such as /kubepods.slice); repeatable. Default: any cgroup a throttle rule matches.",
        valueName: "cgroup"))
    var writableCgroup: [String] = []

    @Option(help: ArgumentHelp("The HTTP API (/metrics, /healthz, /readyz, /api/v1/…); \"\" for none.", valueName: "addr:port"))
    var listen = "127.0.0.1:9808"

    @Option(help: ArgumentHelp(
        "A second HTTP server with /metrics, /healthz and /readyz only (no /api/v1: it names every tenant's pods), for scrapers and probes; \"\" for none.",
        valueName: "addr:port"))
    var metricsListen = ""

    @Option(help: ArgumentHelp("Send events to this webhook (overrides the policy's outputs.webhook.url).", valueName: "url"))
    var webhookURL: String?

    @Option(help: ArgumentHelp("Send alerts to this Alertmanager (overrides outputs.alertmanager.url).", valueName: "url"))
    var alertmanagerURL: String?

    @OptionGroup var kubernetes: KubernetesOptions

    @Flag(help: "Say what the responder would do (response.* events with dry_run true), but write nothing.")
    var dryRun = false

    @Option(help: "Stop after this many seconds (exit 0).")
    var duration: Double?

    @Option(help: "Seconds between stats lines.")
    var statsInterval: Double = 5

    @Flag(help: "Also print every detector verdict change (type \"verdict\"), as `replay --verdicts` does.")
    var verdicts = false

    @Flag(help: "Also print the sample stream the detectors see (sample, cgroup_sample, process.exec, process.exit).")
    var samples = false

    @Option(help: "The node name events carry (default: $NODE_NAME, else the host name).")
    var nodeName: String?

    func validate() throws {
        if !listen.isEmpty {
            do { _ = try HTTPServer.parse(listen: listen) } catch { throw ValidationError("\(error)") }
        }
        for path in writableCgroup {
            if let problem = ResponderConfiguration.subtreeProblem(path) {
                throw ValidationError("--writable-cgroup \(path): must be \(problem)")
            }
        }
        if !metricsListen.isEmpty {
            do { _ = try HTTPServer.parse(listen: metricsListen) } catch {
                throw ValidationError("--metrics-listen: \(error)")
            }
        }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be more than 0 seconds") }
        guard statsInterval > 0 else { throw ValidationError("--stats-interval must be more than 0 seconds") }
    }

    func run() async throws {
        let logger = kernel.makeLogger()
        let node = NodeName.resolve(nodeName)
        let hostPaths = try host.validated()
        try await exitOnKernelError {
            // privileges, BTF and the tracepoint first: without them nothing else matters
            try requireKernel()
            // then the policy: an invalid one stops here, exit 1, every problem on stderr
            let policyEvents = EventRelay()
            let store = try policy.makeStore(node: node, logger: logger) { policyEvents.submit($0) }
            warnAboutDetectorProfiles(store.policy, logger: logger)
            var outputs = store.policy.outputs
            if let webhookURL {
                outputs.webhook = outputs.webhook.map { var w = $0; w.url = webhookURL; return w } ?? WebhookSettings(url: webhookURL)
            }
            if let alertmanagerURL {
                outputs.alertmanager =
                    outputs.alertmanager.map { var a = $0; a.url = alertmanagerURL; return a }
                    ?? AlertmanagerSettings(url: alertmanagerURL)
            }
            let setup = Agent.RunSetup(
                policy: store, policyEvents: policyEvents, outputs: outputs, listen: listen.isEmpty ? nil : listen,
                stateFile: stateFile, dryRun: dryRun, kubernetes: try kubernetes.configuration(node: node),
                writableCgroups: writableCgroup, metricsListen: metricsListen.isEmpty ? nil : metricsListen)
            try await Agent.run(
                kernel: kernel.kernel,
                output: .events(
                    PipelineSettings(
                        node: node, samples: samples, verdicts: verdicts, detectorProfile: kernel.detectorProfile),
                    setup),
                hostPaths: hostPaths, duration: duration.map { .milliseconds(Int($0 * 1000)) },
                statsInterval: .milliseconds(Int(statsInterval * 1000)), logger: logger)
        }
    }
}

extension RunCommand {
    /// The kernel's fast path runs one set of thresholds for the node (the
    /// profiles differ only in the confirmation stage, which follows each
    /// rule): a policy that asks for another profile than the kernel's gets it
    /// there, and the log says so.
    func warnAboutDetectorProfiles(_ policy: Policy, logger: Logger) {
        let agent = kernel.detectorProfile
        let settings = [policy.defaults] + policy.rules.map(\.policy)
        for setting in settings {
            guard let profile = setting.detectorProfile, profile != agent else { continue }
            logger.info(
                "a policy rule asks for another detector profile than --detector-profile: its targets get it in the confirmation stage; the kernel's fast path is the same in both",
                metadata: ["rule": "\(setting.rule)", "policy_profile": "\(profile.rawValue)", "agent_profile": "\(agent.rawValue)"])
        }
    }
}
