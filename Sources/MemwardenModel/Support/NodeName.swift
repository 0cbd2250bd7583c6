#if canImport(Glibc)
import Glibc
#endif

/// The node an agent reports as: a flag, else NODE_NAME (the downward API in
/// a DaemonSet), else the host name.
public enum NodeName {
    public static func resolve(_ flag: String?, environment: [String: String]? = nil) -> String? {
        if let flag, !flag.isEmpty { return flag }
        let node = environment.map { $0["NODE_NAME"] } ?? getenv("NODE_NAME").map { String(cString: $0) }
        if let node, !node.isEmpty { return node }
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.isEmpty ? nil : host
    }
}
