import Foundation
import Logging
import MemwardenKubernetes
import MemwardenTestSupport
import Testing

/// KubernetesClient against a real kube-apiserver: the server's certificate is verified, the
/// token file is read again when it changes, and errors name the request and the status.
@Suite(.serialized, .enabled(if: KubeClusterAccess.enabled, KubeClusterAccess.comment))
struct KubernetesClientClusterTests {
    @Test("TLS is verified against the CA, a rotated token file is picked up, errors name request and status")
    func tlsTokenRotationAndErrors() async throws {
        if let reason = KubeClusterAccess.unavailableReason, KernelAccess.isCI {
            Issue.record("CI=true but the cluster cannot run: \(reason)")
        }
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let logger = Logger(label: "test.kubernetes")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-token-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tokenFile = directory + "/token"
        // Like the kubelet: write a new file, then rename it over the old one.
        func writeToken(_ text: String) throws {
            try text.write(toFile: tokenFile + ".new", atomically: false, encoding: .utf8)
            guard rename(tokenFile + ".new", tokenFile) == 0 else { throw TestFailure("rename failed") }
        }
        try writeToken(try String(contentsOfFile: try #require(cluster.environment["KUBE_TOKEN_FILE"]), encoding: .utf8))

        let configuration = try KubernetesConfiguration(
            apiURL: cluster.apiURL, tokenFile: tokenFile, caFile: cluster.environment["KUBE_CA_FILE"], nodeName: cluster.nodeName)
        let client = try KubernetesClient(configuration: configuration, logger: logger)
        var untrusting: KubernetesClient?
        do {
            #expect(try await client.send(.GET, "/api/v1/namespaces/default").status == 200)

            // The test CA is in no system bundle: without it the handshake must fail.
            let noCA = try KubernetesConfiguration(apiURL: cluster.apiURL, tokenFile: tokenFile, nodeName: cluster.nodeName)
            untrusting = try KubernetesClient(configuration: noCA, logger: logger)
            do {
                _ = try await untrusting?.send(.GET, "/api/v1/namespaces/default")
                Issue.record("a server certificate from an unknown CA was accepted")
            } catch let error as KubernetesError {
                #expect(error.code == .transport)
            }

            // A token the server does not know: 401, named.
            try writeToken("not-a-token")
            do {
                _ = try await client.send(.GET, "/api/v1/namespaces/default")
                Issue.record("an unknown token was accepted")
            } catch let error as KubernetesError {
                #expect(error.status == 401)
                #expect(error.description.contains("GET /api/v1/namespaces/default"))
            }

            // The rotated token: picked up without a new client.
            try writeToken(try String(contentsOfFile: try #require(cluster.environment["KUBE_SECOND_TOKEN_FILE"]), encoding: .utf8))
            #expect(try await client.send(.GET, "/api/v1/namespaces/default").status == 200)

            // A missing object: 404 with the server's reason.
            do {
                _ = try await client.send(.GET, "/api/v1/namespaces/default/pods/no-such-pod")
                Issue.record("a missing pod was found")
            } catch let error as KubernetesError {
                #expect(error.status == 404)
                #expect(error.reason == "NotFound")
                #expect(error.description.contains("/api/v1/namespaces/default/pods/no-such-pod"))
            }
        } catch {
            Issue.record("kube-apiserver log tail:\n\(cluster.apiServerLogTail)")
            try? await untrusting?.shutdown()
            try? await client.shutdown()
            throw error
        }
        try await untrusting?.shutdown()
        try await client.shutdown()
    }
}
