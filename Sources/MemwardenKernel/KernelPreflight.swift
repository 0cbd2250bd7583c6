#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Checks what the kernel program needs before trying to load it, so that a
/// missing piece is named in one line instead of surfacing as a libbpf errno.
public enum KernelPreflight {
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// Throws the first missing requirement.
    public static func check(procRoot: String = "/proc") throws(KernelError) {
        let capabilities = effectiveCapabilities(procRoot: procRoot)
        let hasNew = capabilities.map { $0.contains(capBPF) && $0.contains(capPerfmon) } ?? false
        let hasAdmin = capabilities.map { $0.contains(capSysAdmin) } ?? (geteuid() == 0)
        guard hasNew || hasAdmin else {
            throw KernelError(
                .missingPrivileges,
                "memwarden needs root, or CAP_BPF and CAP_PERFMON, to load its eBPF program (running as uid \(geteuid()))")
        }
        if !hasAdmin, let paranoid = perfEventParanoid(procRoot: procRoot), paranoid > 2 {
            throw KernelError(.missingPrivileges, paranoidMessage(paranoid))
        }
        guard access(BPFObject.kernelBTFPath, R_OK) == 0 else {
            throw KernelError(
                .missingBTF,
                "kernel BTF not found at \(BPFObject.kernelBTFPath): the kernel needs CONFIG_DEBUG_INFO_BTF=y")
        }
        try ensureTracepoint()
    }

    /// libbpf attaches `tp/` programs through tracefs (the tracepoint's id file).
    /// When tracefs is not mounted and we may mount it, mount it: it only exposes
    /// what root can read anyway.
    static func ensureTracepoint() throws(KernelError) {
        let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        let tracepoint = "events/kmem/rss_stat/id"
        if roots.contains(where: { access("\($0)/\(tracepoint)", R_OK) == 0 }) { return }
        if roots.contains(where: { access("\($0)/events", F_OK) == 0 }) {
            throw KernelError(
                .missingTracepoint,
                "the kernel has no tracepoint kmem:rss_stat (needs Linux 5.5 or later; 5.8+ for CAP_BPF)")
        }
        if mount("tracefs", roots[0], "tracefs", 0, nil) == 0, access("\(roots[0])/\(tracepoint)", R_OK) == 0 {
            return
        }
        throw KernelError(
            .missingTracefs,
            "tracefs is not mounted at /sys/kernel/tracing and could not be mounted (mount -t tracefs tracefs /sys/kernel/tracing)"
        )
    }

    /// kernel.perf_event_paranoid, or nil when /proc cannot tell.
    static func perfEventParanoid(procRoot: String) -> Int? {
        guard let text = try? readText("\(procRoot)/sys/kernel/perf_event_paranoid") else { return nil }
        return Int(text.split(separator: "\n").first.map { String($0.trimmingCharacters(in: " \t")) } ?? "")
    }

    /// Level 3 is not upstream: Debian's and Ubuntu's kernels add it (their default) and then
    /// refuse perf_event_open() to anyone without CAP_SYS_ADMIN, CAP_PERFMON or not. libbpf
    /// attaches the `tp/kmem/rss_stat` program through perf_event_open(), so CAP_BPF and
    /// CAP_PERFMON alone load the program and then fail to attach it.
    static func paranoidMessage(_ paranoid: Int) -> String {
        "kernel.perf_event_paranoid is \(paranoid) (a Debian/Ubuntu kernel setting): attaching to the tracepoint "
            + "kmem:rss_stat (perf_event_open) then needs CAP_SYS_ADMIN, which memwarden lacks; grant CAP_SYS_ADMIN, "
            + "or set kernel.perf_event_paranoid=2 to run with CAP_BPF and CAP_PERFMON only"
    }

    /// Bit numbers set in CapEff, or nil when /proc cannot tell.
    static func effectiveCapabilities(procRoot: String) -> Set<Int>? {
        guard let status = try? readText("\(procRoot)/self/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t")
            guard let mask = UInt64(hex, radix: 16) else { return nil }
            return Set((0..<64).filter { mask & (1 << UInt64($0)) != 0 })
        }
        return nil
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return s
    }
}
