import ArgumentParser
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif
import MemwardenKubernetes

/// Where pod metadata comes from (`run`, `identify`): the API server, in a
/// cluster or named by flags.
struct KubernetesOptions: ParsableArguments {
    @Option(help: "Pod metadata from the API server: auto (when KUBERNETES_SERVICE_HOST is set), on, or off.")
    var kubernetes: KubernetesMode = .auto

    @Option(help: ArgumentHelp("The API server's URL (default: the in-cluster service).", valueName: "url"))
    var kubeAPI: String?

    @Option(help: ArgumentHelp("The bearer token file (default: the pod's service account token).", valueName: "file"))
    var kubeTokenFile: String?

    @Option(help: ArgumentHelp("The API server's CA bundle (default: the service account's ca.crt).", valueName: "file"))
    var kubeCAFile: String?

    /// The API server to watch, or nil (off, or auto outside a cluster).
    /// A configuration that cannot work exits 1 naming the setting.
    func configuration(node: String?) throws -> KubernetesConfiguration? {
        let environment = ProcessInfo.processInfo.environment
        switch kubernetes {
        case .off: return nil
        case .auto where kubeAPI == nil && !KubernetesConfiguration.runningInCluster(environment: environment): return nil
        default: break
        }
        do {
            return try KubernetesConfiguration.inCluster(
                environment: environment, apiURL: kubeAPI, tokenFile: kubeTokenFile, caFile: kubeCAFile, nodeName: node)
        } catch {
            let text = "memwarden: cannot watch pods: \(error)\n"
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
            throw ExitCode(1)
        }
    }

    /// This node's pods, listed once (for a one-shot command): the watch runs
    /// until its first list is in, or the deadline.
    func listPods(node: String?, within timeout: Duration, logger: Logger) async throws -> PodIndex? {
        guard let configuration = try configuration(node: node) else { return nil }
        let client = try KubernetesClient(configuration: configuration, logger: logger)
        let index = PodIndex()
        let watcher = PodWatcher(client: client, index: index, logger: logger)
        try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await watcher.run() }
            let end = ContinuousClock.now.advanced(by: timeout)
            while !index.synced && ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(50)) }
            group.cancelAll()
        }
        try? await client.shutdown()
        if !index.synced {
            let text = "memwarden: the pod list from \(configuration.apiURL) did not arrive within \(timeout); identity without pod metadata\n"
            _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        }
        return index
    }
}

enum KubernetesMode: String, ExpressibleByArgument, CaseIterable {
    case auto, on, off
}
