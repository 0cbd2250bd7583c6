import Foundation

/// What the pod watcher does with the API server's bytes, without a server: the fuzzers
/// (scripts/fuzz) feed them here, so they run the same decoding and mapping as a live watch.
@_spi(Fuzz) public enum KubernetesInput {
    /// One page of `GET /api/v1/pods` into `index`, as `PodWatcher.list` decodes and maps it
    /// (a pod that does not map is skipped there too).
    public static func applyPodList(_ body: Data, to index: PodIndex) throws {
        let page = try JSONDecoder().decode(KubePodList.self, from: body)
        index.replaceAll(with: page.items.compactMap { try? PodRecord($0) })
    }

    /// One line of a watch stream into `index`, as `PodWatcher.handle` applies it.
    public static func applyWatchLine(_ line: Data, to index: PodIndex) throws {
        try index.apply(PodWatchEvent(line: line))
    }
}
