#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import MemwardenModel

/// Where the API server is and how to talk to it: the in-cluster configuration of a pod
/// (KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA, NODE_NAME from the
/// downward API), each part overridable (`--kube-api`, `--kube-token-file`, `--kube-ca-file`,
/// `--node-name`).
public struct KubernetesConfiguration: Sendable, Hashable {
    /// "https://10.96.0.1:443", no trailing slash.
    public var apiURL: String
    /// Bearer token, re-read when the file changes (projected tokens rotate hourly).
    public var tokenFile: String?
    /// PEM CA bundle the server's certificate is verified against; nil: the system's roots.
    public var caFile: String?
    /// The node whose pods are watched (`spec.nodeName`).
    public var nodeName: String

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
        public var setting: String
        public var problem: String
        public var description: String { "Kubernetes configuration: \(setting): \(problem)" }
    }

    public init(apiURL: String, tokenFile: String? = nil, caFile: String? = nil, nodeName: String) throws(ConfigurationError) {
        var url = apiURL
        while url.hasSuffix("/") { url.removeLast() }
        guard url.hasPrefix("https://") || url.hasPrefix("http://"), url.count > "https://".count else {
            throw ConfigurationError(setting: "API URL", problem: "'\(apiURL)' is not an http(s) URL")
        }
        if tokenFile != nil, let host = PlainHTTP.remoteHost(url) {
            throw ConfigurationError(
                setting: "API URL",
                problem: "'\(apiURL)' is plain http:// to \(host): the bearer token would travel in clear text; use https:// (plain http:// is for loopback only)")
        }
        guard !nodeName.isEmpty else {
            throw ConfigurationError(setting: "node name", problem: "empty (set NODE_NAME from the downward API or --node-name)")
        }
        for (setting, path) in [("token file", tokenFile), ("CA file", caFile)] {
            if let path, access(path, R_OK) != 0 {
                throw ConfigurationError(setting: setting, problem: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
        }
        self.apiURL = url
        self.tokenFile = tokenFile
        self.caFile = caFile
        self.nodeName = nodeName
    }

    /// The in-cluster configuration with overrides; each override replaces one part, so
    /// `--kube-api` alone points a pod's agent elsewhere with its own service account.
    ///
    /// - environment: KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT, NODE_NAME.
    /// - hostName: the fallback node name when neither an override nor NODE_NAME is set.
    public static func inCluster(
        environment: [String: String], apiURL: String? = nil, tokenFile: String? = nil, caFile: String? = nil,
        nodeName: String? = nil, hostName: String? = nil,
        serviceAccountDirectory: String = serviceAccountDirectory
    ) throws(ConfigurationError) -> KubernetesConfiguration {
        let url: String
        if let apiURL {
            url = apiURL
        } else if let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty {
            let port = environment["KUBERNETES_SERVICE_PORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "443"
            // An IPv6 service address needs brackets in a URL.
            url = host.contains(":") ? "https://[\(host)]:\(port)" : "https://\(host):\(port)"
        } else {
            throw ConfigurationError(
                setting: "API URL", problem: "not in a cluster (KUBERNETES_SERVICE_HOST is not set) and no --kube-api given")
        }
        let node = nodeName ?? environment["NODE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? hostName ?? ""
        let account = serviceAccountDirectory
        return try KubernetesConfiguration(
            apiURL: url, tokenFile: tokenFile ?? "\(account)/token", caFile: caFile ?? (url.hasPrefix("https://") ? "\(account)/ca.crt" : nil),
            nodeName: node)
    }

    /// `--kubernetes auto`: in a cluster when KUBERNETES_SERVICE_HOST is set.
    public static func runningInCluster(environment: [String: String]) -> Bool {
        !(environment["KUBERNETES_SERVICE_HOST"] ?? "").isEmpty
    }
}
