import CMemwarden
import MemwardenModel

/// Load-time settings of the kernel program.
public struct KernelConfiguration: Sendable {
    /// A process or cgroup produces a record when its RSS moved this far since its last one.
    public var stepBytes: UInt64 = 1 << 20
    /// ...or when this long passed since its last record and it had any event at all.
    public var heartbeatNanoseconds: UInt64 = 10_000_000_000
    /// Tracked processes (LRU: the least recently updated goes first, and is counted).
    public var maxProcesses: UInt32 = 8192
    /// Tracked memory cgroups.
    public var maxCgroups: UInt32 = 2048
    /// Slots of the per-event cache, indexed by the event's mm hash (64 bytes
    /// each; a power of two). Two live processes sharing a slot still work,
    /// each taking it over in turn on a slower path.
    public var hotSlots: UInt32 = 65536
    /// Ring buffer size in bytes: a power of two and a multiple of the page size.
    public var ringBufferBytes: UInt32 = 1 << 20

    /// The detectors' thresholds, as the kernel program gets them. Their
    /// step and heartbeat (the cgroup aggregates' rule) follow the two above.
    public var detectors = mw_det_config()

    public init() {
        mw_det_config_default(&detectors)
    }

    /// What the kernel's `cfg_det` is set to.
    var detectorSettings: mw_det_config {
        var settings = detectors
        settings.step_bytes = stepBytes
        settings.heartbeat_ms = heartbeatNanoseconds / 1_000_000
        return settings
    }

    /// Checks values the kernel would reject with a less helpful error.
    public func validate() throws(KernelError) {
        let page = UInt32(pageSize)
        guard ringBufferBytes >= page, ringBufferBytes.nonzeroBitCount == 1 else {
            throw KernelError(
                .loadFailed, "ring buffer size \(ringBufferBytes) must be a power of two of at least \(page) bytes")
        }
        guard stepBytes > 0 else { throw KernelError(.loadFailed, "coalescing step must be more than 0 bytes") }
        guard maxProcesses > 0, maxCgroups > 0 else {
            throw KernelError(.loadFailed, "map sizes must be more than 0")
        }
        var settings = detectorSettings
        let check = mw_det_config_check(&settings)
        guard check == 0 else {
            throw KernelError(.loadFailed, "detector settings: \(DetectorConfigurationError(code: check))")
        }
        guard hotSlots > 0, hotSlots.nonzeroBitCount == 1 else {
            throw KernelError(.loadFailed, "hot slots \(hotSlots) must be a power of two")
        }
    }
}
