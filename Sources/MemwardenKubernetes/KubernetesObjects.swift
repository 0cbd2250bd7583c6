import Foundation

// The parts of the Kubernetes API objects memwarden reads, as JSON decodes them. Everything
// else in the objects is ignored, so newer API servers with more fields decode the same.

struct KubeObjectMeta: Decodable, Sendable {
    var name: String?
    var namespace: String?
    var uid: String?
    var resourceVersion: String?
    var labels: [String: String]?
    var annotations: [String: String]?
}

struct KubeListMeta: Decodable, Sendable {
    var resourceVersion: String?
    var `continue`: String?
}

struct KubeResources: Decodable, Sendable {
    var requests: [String: String]?
    var limits: [String: String]?
}

struct KubeContainer: Decodable, Sendable {
    var name: String
    var resources: KubeResources?
}

struct KubePodSpec: Decodable, Sendable {
    var nodeName: String?
    var containers: [KubeContainer]?
    var initContainers: [KubeContainer]?
    var ephemeralContainers: [KubeContainer]?
}

struct KubeContainerStatus: Decodable, Sendable {
    var name: String
    var containerID: String?
}

struct KubePodStatus: Decodable, Sendable {
    var phase: String?
    var qosClass: String?
    var containerStatuses: [KubeContainerStatus]?
    var initContainerStatuses: [KubeContainerStatus]?
    var ephemeralContainerStatuses: [KubeContainerStatus]?
}

struct KubePod: Decodable, Sendable {
    var metadata: KubeObjectMeta
    var spec: KubePodSpec?
    var status: KubePodStatus?
}

struct KubePodList: Decodable, Sendable {
    var metadata: KubeListMeta?
    var items: [KubePod]
}

/// metav1.Status: what the API server answers on errors, and the object of a watch ERROR.
struct KubeStatus: Decodable, Sendable {
    var status: String?
    var message: String?
    var reason: String?
    var code: Int?
}

/// One line of a watch stream: {"type": "ADDED", "object": {...}}.
enum PodWatchEvent: Sendable {
    case added(KubePod)
    case modified(KubePod)
    case deleted(KubePod)
    /// Only a newer resourceVersion: nothing changed that this watch selects.
    case bookmark(resourceVersion: String?)
    case error(KubeStatus)

    private struct Header: Decodable { var type: String }
    private struct Envelope<Object: Decodable>: Decodable { var object: Object }
    private struct BookmarkObject: Decodable { var metadata: KubeObjectMeta? }

    struct DecodeError: Error, CustomStringConvertible {
        var problem: String
        var line: String
        var description: String { "bad watch event (\(problem)): \(line.prefix(200))" }
    }

    init(line: Data) throws(DecodeError) {
        let decoder = JSONDecoder()
        func fail(_ problem: String) -> DecodeError {
            DecodeError(problem: problem, line: String(decoding: line, as: UTF8.self))
        }
        do {
            let type = try decoder.decode(Header.self, from: line).type
            switch type {
            case "ADDED": self = .added(try decoder.decode(Envelope<KubePod>.self, from: line).object)
            case "MODIFIED": self = .modified(try decoder.decode(Envelope<KubePod>.self, from: line).object)
            case "DELETED": self = .deleted(try decoder.decode(Envelope<KubePod>.self, from: line).object)
            case "BOOKMARK":
                let object = try decoder.decode(Envelope<BookmarkObject>.self, from: line).object
                self = .bookmark(resourceVersion: object.metadata?.resourceVersion)
            case "ERROR": self = .error(try decoder.decode(Envelope<KubeStatus>.self, from: line).object)
            default: throw fail("unknown type '\(type)'")
            }
        } catch let error as DecodeError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }
}
