/// A process's or cgroup's memory by kind, in bytes, as the kernel's rss_stat counts it.
public struct MemoryCounters: Sendable, Hashable {
    public var anon: UInt64
    public var file: UInt64
    public var shmem: UInt64
    public var swap: UInt64

    public init(anon: UInt64 = 0, file: UInt64 = 0, shmem: UInt64 = 0, swap: UInt64 = 0) {
        self.anon = anon
        self.file = file
        self.shmem = shmem
        self.swap = swap
    }

    /// Resident set: anonymous + file-backed + shared memory. Swap is not resident.
    public var rss: UInt64 { anon + file + shmem }
}

/// A cgroup's memory limit as the kernel reports it.
public enum MemoryLimit: Sendable, Hashable {
    case bytes(UInt64)
    case unlimited
    case unknown

    package init(kernelValue: UInt64) {
        switch kernelValue {
        case 0: self = .unknown
        case .max: self = .unlimited
        default: self = .bytes(kernelValue)
        }
    }

    /// The limit in bytes, when there is one.
    public var bytes: UInt64? {
        if case .bytes(let value) = self { return value }
        return nil
    }
}
