import Foundation
import Testing

@testable import MemwardenAgent
@testable import MemwardenIdentity
@testable import MemwardenKernel
@testable import MemwardenModel
@testable import MemwardenOutput

struct KernelSettingsTests {
    @Test func defaultsAreValid() throws {
        try KernelConfiguration().validate()
    }

    @Test(arguments: [3000 as UInt32, 0, 12288])
    func ringBufferMustBeAPowerOfTwoOfPages(bytes: UInt32) {
        var configuration = KernelConfiguration()
        configuration.ringBufferBytes = bytes
        #expect(throws: KernelError.self) { try configuration.validate() }
    }

    @Test func zeroStepIsRejected() {
        var configuration = KernelConfiguration()
        configuration.stepBytes = 0
        #expect(throws: KernelError.self) { try configuration.validate() }
    }

    @Test func readsEffectiveCapabilities() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-proc-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root + "/self", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        // CAP_PERFMON (38) and CAP_BPF (39) only
        try "Name:\tx\nCapEff:\t000000c000000000\n".write(toFile: root + "/self/status", atomically: false, encoding: .utf8)
        #expect(KernelPreflight.effectiveCapabilities(procRoot: root) == [38, 39])
        try "Name:\tx\nCapEff:\t0000000000000000\n".write(toFile: root + "/self/status", atomically: false, encoding: .utf8)
        #expect(KernelPreflight.effectiveCapabilities(procRoot: root) == [])
    }

    @Test func perfEventParanoidAboveTwoNeedsSysAdmin() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-paranoid-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root + "/sys/kernel", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "3\n".write(toFile: root + "/sys/kernel/perf_event_paranoid", atomically: false, encoding: .utf8)
        #expect(KernelPreflight.perfEventParanoid(procRoot: root) == 3)
        let message = KernelPreflight.paranoidMessage(3)
        #expect(message.contains("CAP_SYS_ADMIN") && message.contains("perf_event_paranoid"))
        try "2\n".write(toFile: root + "/sys/kernel/perf_event_paranoid", atomically: false, encoding: .utf8)
        #expect(KernelPreflight.perfEventParanoid(procRoot: root) == 2)
        #expect(KernelPreflight.perfEventParanoid(procRoot: root + "/missing") == nil)
    }

    @Test("a failed load names its cause from libbpf's log: unusable BTF, the verifier, or else the errno")
    func loadFailureReasons() {
        let btf = BPFObject.loadFailure(
            "memwarden", errno: ESRCH,
            log: "libbpf: failed to get EHDR from /sys/kernel/btf/vmlinux\nlibbpf: failed to find valid kernel BTF\n",
            kernel: "6.1.0-28-amd64")
        #expect(btf.contains("6.1.0-28-amd64") && btf.contains("/sys/kernel/btf/vmlinux") && btf.contains("BTF"))
        #expect(!btf.contains("\n"))
        // what libbpf says when the target BTF is named (BPFObject always names the kernel's own)
        let target = BPFObject.loadFailure(
            "memwarden", errno: EINVAL,
            log: "libbpf: failed to get EHDR from /sys/kernel/btf/vmlinux\nlibbpf: failed to parse target BTF: -22\n",
            kernel: "6.12.95+deb12-amd64")
        #expect(target.contains("6.12.95+deb12-amd64") && target.contains("/sys/kernel/btf/vmlinux"), "\(target)")
        let verifier = BPFObject.loadFailure(
            "memwarden", errno: EINVAL,
            log: """
                libbpf: prog 'mw_rss_stat': BPF program load failed: Invalid argument
                libbpf: prog 'mw_rss_stat': -- BEGIN PROG LOAD LOG --
                BPF_STX uses reserved fields
                libbpf: prog 'mw_rss_stat': -- END PROG LOAD LOG --
                """,
            kernel: "5.4.0-1-amd64")
        #expect(verifier.contains("verifier rejected program mw_rss_stat of memwarden"), "\(verifier)")
        #expect(verifier.contains("5.4.0-1-amd64") && verifier.contains("Invalid argument"))
        let other = BPFObject.loadFailure("memwarden", errno: ENOMEM, log: "", kernel: "6.18.0")
        #expect(other == "the kernel 6.18.0 rejected memwarden: \(String(cString: strerror(ENOMEM)))")
    }

    @Test func memoryLimitFromKernelValues() {
        #expect(MemoryLimit(kernelValue: 0) == .unknown)
        #expect(MemoryLimit(kernelValue: .max) == .unlimited)
        #expect(MemoryLimit(kernelValue: 4096) == .bytes(4096))
    }
}

struct TraceOutputTests {
    static let record = ProcessRecord(
        kind: .sample, pid: 7, monotonicNanoseconds: 3_500_000_000, cgroupID: 0,
        memory: MemoryCounters(anon: 10, file: 20, shmem: 30, swap: 40), virtualSize: 100, limit: .bytes(4096),
        comm: "a\"b")

    /// Without a cgroup hierarchy: no path, the kernel's own limit.
    static func cgroup(_ record: ProcessRecord) -> ResolvedCgroup {
        var resolver = RecordResolver(hierarchy: nil)
        return resolver.resolve(.process(record)).cgroup
    }

    @Test func traceLineHasTheDocumentedFields() {
        let formatter = SampleFormatter(clock: WallClock(offset: 0), origin: 1_000_000_000)
        let line = formatter.traceLine(Self.record, cgroup: Self.cgroup(Self.record))
        #expect(line == #"{"t":2.5,"pid":7,"comm":"a\"b","cgroup":"","anon":10,"file":20,"shmem":30,"swap":40,"vsz":100,"limit":4096}"#)
    }

    @Test func traceTimeIsWholeMillisecondsOfTheKernelClockPlusTruncatedMicroseconds() {
        // origin 1.0005 s rounds down to 1.000 s; 3.4567899 s is 2.456789 s after it, not 2.45679
        let formatter = SampleFormatter(clock: WallClock(offset: 0), origin: 1_000_500_000)
        #expect(formatter.origin == 1_000_000_000)
        #expect(formatter.traceTime(3_456_789_999) == 2.456789)
        #expect(formatter.traceTime(999_000_000) == 0)
        var record = Self.record
        record.monotonicNanoseconds = 3_456_789_999
        #expect(formatter.traceLine(record, cgroup: Self.cgroup(record)).hasPrefix(#"{"t":2.456789,"#))
    }

    @Test func execAndExitAreMarked() {
        let formatter = SampleFormatter(clock: WallClock(offset: 0), origin: 0)
        var record = Self.record
        record.kind = .exec
        #expect(formatter.traceLine(record, cgroup: Self.cgroup(record)).hasSuffix(#","event":"exec"}"#))
        record.kind = .exit
        record.limit = .unlimited
        let line = formatter.traceLine(record, cgroup: Self.cgroup(record))
        #expect(line.hasSuffix(#","event":"exit"}"#))
        #expect(!line.contains("limit"))
    }

    @Test func eventLineCarriesTypeTimeAndRSS() {
        var formatter = SampleFormatter(clock: WallClock(offset: 0), origin: 0)
        let line = formatter.eventLine(Self.record, cgroup: Self.cgroup(Self.record))
        #expect(line.hasPrefix(#"{"type":"sample","time":"1970-01-01T00:00:03.500Z","t":3.5,"pid":7"#))
        #expect(line.hasSuffix(#""rss":60}"#))
    }

    @Test(arguments: [
        (Int32?(nil), String?("/a"), Int32(1), "/a/b", true),
        (nil, "/a", 1, "/ab", false),
        (nil, "/a/", 1, "/a", true),
        (5, nil, 5, "/x", true),
        (5, nil, 6, "/x", false),
        (nil, "/", 9, "/anything", true),
    ])
    func filtersByPidAndCgroupSubtree(pid: Int32?, cgroup: String?, samplePID: Int32, path: String, kept: Bool) {
        #expect(TraceFilter(pid: pid, cgroup: cgroup).keeps(pid: samplePID, cgroupPath: path) == kept)
    }
}
