import Foundation
@_spi(Fuzz) import MemwardenAgent
import MemwardenDetection
@_spi(Fuzz) import MemwardenIdentity
@_spi(Fuzz) import MemwardenKubernetes
@_spi(Fuzz) import MemwardenModel
import MemwardenPolicy
@_spi(Fuzz) import MemwardenResponse

/// The parsers that read what memwarden does not control, by the names scripts/fuzz and the
/// seed corpora (Tests/Fixtures/fuzz/<name>/) use. Each feeds the bytes to the real parser
/// and then touches what it returned; a thrown error is an answer, only a crash is a finding.
enum FuzzTarget: String, CaseIterable, Sendable {
    /// The policy file (YAML, through Yams and libyaml).
    case policy
    /// Trace lines (`memwarden record`'s output, `replay`'s input), strict and lenient.
    case trace
    /// cgroup paths of every runtime and driver (from /proc, the kernel, the state file).
    case cgroupPath = "cgroup-path"
    /// /proc/PID/cgroup, v1 and v2.
    case procCgroup = "proc-cgroup"
    /// /proc/PID/stat (the first line) and /proc/PID/status (the rest).
    case procStatus = "proc-status"
    /// memory.stat and memory.events(.local): one `name value` reader.
    case memoryStat = "memory-stat"
    /// memory.pressure and /proc/pressure/memory (PSI).
    case pressure
    /// memory.max, memory.high, memory.current and v1's limit_in_bytes.
    case memoryKnob = "memory-knob"
    /// Kubernetes resource quantities ("512Mi", "1.5e3").
    case quantity
    /// A page of the API server's pod list.
    case podList = "pod-list"
    /// Lines of the API server's pod watch.
    case podWatch = "pod-watch"
    /// The HTTP API's `since=` parameter.
    case timeParameter = "time-parameter"
    /// The responder's state file.
    case stateFile = "state-file"

    func run(_ bytes: UnsafeBufferPointer<UInt8>) {
        let text = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .policy:
            if let policy = try? PolicyLoader.parse(text, file: "fuzz.yaml") {
                _ = policy.resolve(for: CgroupPathIdentity.parse("/kubepods.slice/kubepods-pod0.slice"))
            }
        case .trace:
            for skipInvalid in [false, true] {
                let reader = TraceReader(bytes: Array(bytes), name: "fuzz.jsonl")
                reader.skipInvalid = skipInvalid
                while let sample = try? reader.next() { _ = sample.timeNanoseconds }
            }
        case .cgroupPath:
            _ = CgroupPathIdentity.parse(text)
        case .procCgroup:
            for version in [CgroupHierarchy.Version.v1, .v2] {
                if let path = ProcCgroup.parse(text, version: version) { _ = CgroupPathIdentity.parse(path) }
            }
        case .procStatus:
            let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            _ = ProcessUsage.parse(stat: String(lines[0]), status: lines.count > 1 ? String(lines[1]) : "")
        case .memoryStat:
            if let stat = MemoryStat.parse(text) {
                _ = stat.reclaimableBytes
                _ = stat.anonBytes
            }
        case .pressure:
            _ = MemoryPressure.parse(text)
        case .memoryKnob:
            _ = MemoryKnob(parsing: text)?.description
        case .quantity:
            if let quantity = try? KubernetesQuantity(parsing: text) { _ = quantity.bytes }
        case .podList:
            let index = PodIndex()
            try? KubernetesInput.applyPodList(Data(bytes), to: index)
            Self.lookUp(in: index)
        case .podWatch:
            let index = PodIndex()
            for line in bytes.split(separator: UInt8(ascii: "\n")) {
                try? KubernetesInput.applyWatchLine(Data(line), to: index)
            }
            Self.lookUp(in: index)
        case .timeParameter:
            _ = try? TimeParameter.parse(text)
        case .stateFile:
            if let records = try? ResponseStateFile.decode(Data(bytes)) {
                // what a restore does with a record before it touches the cgroup
                for record in records {
                    _ = CgroupPathIdentity.parse(record.cgroup)
                    if let original = MemoryKnob(parsing: record.original) { _ = record.isOurs(original) }
                }
            }
        }
    }

    /// The index's readers, with the uid and container id shapes the seeds use.
    private static func lookUp(in index: PodIndex) {
        _ = index.metadata(podUID: "0c1f5c4e-8d1e-4a57-9f0e-2a6b9c3d4e5f", containerID: nil)
        _ = index.metadata(podUID: "0c1f5c4e-8d1e-4a57-9f0e-2a6b9c3d4e5f", containerID: "containerd://0123456789abcdef")
    }
}
