import CMemwarden
import MemwardenBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A program's run count and run time from the kernel's bpf_stats.
public struct ProgramRunStats: Sendable, Hashable {
    public var runs: UInt64
    public var nanoseconds: UInt64

    public var nanosecondsPerRun: Double { runs == 0 ? 0 : Double(nanoseconds) / Double(runs) }

    public static func - (lhs: Self, rhs: Self) -> Self {
        Self(runs: lhs.runs &- rhs.runs, nanoseconds: lhs.nanoseconds &- rhs.nanoseconds)
    }

    static func read(fd: Int32) -> ProgramRunStats? {
        var runs: UInt64 = 0
        var nanoseconds: UInt64 = 0
        guard mw_prog_stats(fd, &runs, &nanoseconds) == 0 else { return nil }
        return ProgramRunStats(runs: runs, nanoseconds: nanoseconds)
    }
}

/// Keeps the kernel's BPF run-time statistics on while it lives. The kernel
/// counts enablers, so closing the fd puts back whatever was there before.
public final class BPFStatsSession {
    private let fd: Int32

    public init() throws(KernelError) {
        let fd = mw_enable_bpf_stats()
        guard fd >= 0 else {
            throw KernelError(.loadFailed, "cannot enable bpf_stats: \(String(cString: strerror(-fd)))")
        }
        self.fd = fd
    }

    deinit {
        close(fd)
    }
}

/// An empty program on kmem:rss_stat: the benchmark's baseline for what any
/// program attached there costs.
public final class BaselineProgram {
    private let object: BPFObject

    public init() throws(KernelError) {
        try KernelPreflight.check()
        object = try BPFObject(BenchEmptySkeleton.object)
        try object.load()
        try object.attachAll()
    }

    public func runStats() -> ProgramRunStats? {
        object.programs().first.flatMap { ProgramRunStats.read(fd: $0.fd) }
    }
}

extension KernelMonitor {
    /// bpf_stats of the hot path: the program on kmem:rss_stat.
    public func hotPathRunStats() -> ProgramRunStats? {
        programs().first(where: { $0.name == MemwardenSkeleton.Programs.mwRssStat.name }).flatMap {
            ProgramRunStats.read(fd: $0.fd)
        }
    }
}
