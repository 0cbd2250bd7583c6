import ArgumentParser
import MemwardenModel

/// `--node-memory` of `replay` and `bench detection`: the limit of targets
/// whose samples carry none, as the live agent uses the node's memory.
enum NodeMemoryOption {
    static let help = ArgumentHelp(
        "The memory of the node the trace was recorded on (a Kubernetes quantity such as 24Gi), the limit of targets whose samples carry none.",
        valueName: "quantity")

    /// Bytes, or nil when the option was not given; a bad size names the option and why.
    static func bytes(_ text: String?) throws -> UInt64? {
        guard let text else { return nil }
        let quantity: KubernetesQuantity
        do { quantity = try KubernetesQuantity(parsing: text) } catch {
            throw ValidationError("--node-memory: \(error)")
        }
        guard let bytes = quantity.bytes, bytes > 0 else {
            throw ValidationError("--node-memory: '\(text)' is not a size in bytes above 0")
        }
        return bytes
    }
}
