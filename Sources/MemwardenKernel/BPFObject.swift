import CMemwarden

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenBPF
import MemwardenModel

/// One BPF object opened from memory, loaded and attached. Holds libbpf
/// handles, so it is not Sendable: it lives on the one thread that made it,
/// the way swift-nio keeps event-loop-bound state.
final class BPFObject {
    let name: String
    private(set) var object: OpaquePointer
    private var links: [OpaquePointer] = []
    /// bpf_object__open_mem keeps pointing at the ELF bytes until close.
    private let elf: UnsafeMutableRawBufferPointer

    /// Opens an object embedded as base64 (a skeleton's `object`).
    init(_ embedded: BPFEmbeddedObject) throws(KernelError) {
        let name = embedded.name
        self.name = name
        let text = embedded.base64.withUTF8Buffer { String(decoding: $0, as: UTF8.self) }
        guard let bytes = Base64.decode(text) else {
            throw KernelError(.openFailed, "embedded BPF object \(name) is not valid base64")
        }
        let elf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        elf.copyBytes(from: bytes)
        self.elf = elf
        mw_capture_libbpf_log()
        var options = bpf_object_open_opts()
        options.sz = MemoryLayout<bpf_object_open_opts>.size
        // The kernel's own BTF named as the target: a CO-RE type the kernel lacks (struct
        // mm_rss_stat after 6.2, guarded in the program) then makes libbpf before 1.2 look through
        // every module's BTF, and listing those (BPF_BTF_GET_NEXT_ID) needs CAP_SYS_ADMIN, which the
        // chart does not grant: the load failed with EPERM on 6.12 under CAP_BPF + CAP_PERFMON.
        // With the path, libbpf searches vmlinux only; no program here reads a module's types.
        // Only where listing is refused, though: the path makes libbpf 1.1 parse the kernel's BTF
        // a second time (the tp_btf programs need it loaded as well) and hold both copies while
        // it loads, 7 MiB more at the agent's peak here (BENCHMARKS.md, Footprint).
        let vmlinux = Self.kernelBTFPath
        let hasVmlinux = access(vmlinux, R_OK) == 0 && !Self.mayListKernelBTF()
        let opened: OpaquePointer? = name.withCString { cName in
            vmlinux.withCString { cPath in
                options.object_name = cName
                if hasVmlinux { options.btf_custom_path = cPath }
                return bpf_object__open_mem(elf.baseAddress, elf.count, &options)
            }
        }
        guard let opened, libbpf_get_error(UnsafeRawPointer(opened)) == 0 else {
            elf.deallocate()
            throw KernelError(.openFailed, "libbpf could not open \(name): \(Self.lastLog())")
        }
        object = opened
    }

    /// Whether this process may list the kernel's BTF objects (module BTF included):
    /// BPF_BTF_GET_NEXT_ID needs CAP_SYS_ADMIN, which the systemd unit and the chart on
    /// Debian-like kernels grant for perf_event_open() anyway.
    static func mayListKernelBTF() -> Bool {
        var next: UInt32 = 0
        let result = bpf_btf_get_next_id(0, &next)
        return result == 0 || result == -ENOENT
    }

    deinit {
        for link in links.reversed() { bpf_link__destroy(link) }
        bpf_object__close(object)
        elf.deallocate()
    }

    /// Sets a `const volatile` global before load: an integer setting, or a
    /// struct such as the detector thresholds. The skeleton typed it from the
    /// object's BTF; the sizes must match exactly (libbpf checks them again).
    func setGlobal<T>(_ setting: BPFSetting<T>, _ value: T) throws(KernelError) {
        guard setting.matchesValueSize else {
            throw KernelError(
                .loadFailed, "cannot set \(setting.name) in \(name): \(setting.size) bytes there, \(MemoryLayout<T>.size) given")
        }
        var copy = value
        let result = withUnsafeBytes(of: &copy) { mw_set_rodata(object, setting.name, $0.baseAddress, $0.count) }
        guard result == 0 else {
            throw KernelError(.loadFailed, "cannot set \(setting.name) in \(name): \(String(cString: strerror(-result)))")
        }
    }

    func setMaxEntries(_ map: BPFMapName, _ entries: UInt32) throws(KernelError) {
        guard let handle = bpf_object__find_map_by_name(object, map.name),
            bpf_map__set_max_entries(handle, entries) == 0
        else {
            throw KernelError(.loadFailed, "cannot size map \(map) of \(name) to \(entries)")
        }
    }

    /// Loads every program through the verifier; a rejection carries the log's tail.
    func load() throws(KernelError) {
        mw_clear_libbpf_log()
        let result = bpf_object__load(object)
        guard result == 0 else {
            let log = String(cString: mw_libbpf_log())
            throw KernelError(
                .loadFailed, Self.loadFailure(name, errno: -result, log: log, kernel: Self.kernelRelease()),
                detail: Self.lastLog())
        }
    }

    /// The one-line reason for a failed load, from libbpf's log: the errno
    /// alone says "No such process" when the kernel's BTF is unusable.
    static func loadFailure(_ name: String, errno: Int32, log: String, kernel: String) -> String {
        let error = String(cString: strerror(errno))
        if log.contains("failed to find valid kernel BTF") || log.contains("Error loading vmlinux BTF")
            || log.contains("failed to parse target BTF")
        {
            return "cannot load \(name) on kernel \(kernel): its BTF (\(kernelBTFPath)) is missing or cannot be "
                + "parsed, and the program is built once for every kernel through it (CONFIG_DEBUG_INFO_BTF=y) (\(error))"
        }
        if log.contains("BEGIN PROG LOAD LOG") || log.contains("BPF program load failed") {
            // libbpf names the program as "prog 'NAME': ..."
            let program = log.split(separator: "\n").lazy.compactMap { line -> Substring? in
                guard let open = line.firstRange(of: "prog '"), let close = line[open.upperBound...].firstIndex(of: "'")
                else { return nil }
                return line[open.upperBound..<close]
            }.first
            return "kernel \(kernel)'s verifier rejected \(program.map { "program \($0) of " } ?? "")\(name) (\(error)): "
                + "this kernel is older than or differs from the tested ones (README, requirements)"
        }
        return "the kernel \(kernel) rejected \(name): \(error)"
    }

    /// Where the kernel exposes its BTF (CONFIG_DEBUG_INFO_BTF).
    static let kernelBTFPath = "/sys/kernel/btf/vmlinux"

    static func kernelRelease() -> String {
        var names = utsname()
        guard uname(&names) == 0 else { return "(unknown)" }
        return withUnsafeBytes(of: &names.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }

    /// Attaches every program to the hook its SEC() names.
    func attachAll() throws(KernelError) {
        var program = bpf_object__next_program(object, nil)
        while let current = program {
            let programName = String(cString: bpf_program__name(current))
            guard let link = bpf_program__attach(current), libbpf_get_error(UnsafeRawPointer(link)) == 0 else {
                let error = errno
                if error == EACCES || error == EPERM {
                    // the load got through, so this is the attach's own privilege (perf_event_open
                    // for tp/ programs) or a seccomp filter: say which hook and what to grant
                    let paranoid = KernelPreflight.perfEventParanoid(procRoot: "/proc")
                    let hint =
                        paranoid.map { $0 > 2 ? KernelPreflight.paranoidMessage($0) : "" } ?? ""
                    throw KernelError(
                        .missingPrivileges,
                        "cannot attach \(programName) of \(name) (\(String(cString: strerror(error)))): needs CAP_BPF and "
                            + "CAP_PERFMON (or CAP_SYS_ADMIN), and perf_event_open and bpf allowed by any seccomp filter"
                            + (hint.isEmpty ? "" : "; \(hint)"),
                        detail: Self.lastLog())
                }
                throw KernelError(
                    .attachFailed, "cannot attach \(programName) of \(name): \(String(cString: strerror(error)))",
                    detail: Self.lastLog())
            }
            links.append(link)
            program = bpf_object__next_program(object, current)
        }
    }

    func mapFD(_ map: BPFMapName) throws(KernelError) -> Int32 {
        guard let handle = bpf_object__find_map_by_name(object, map.name) else {
            throw KernelError(.mapFailed, "\(name) has no map \(map)")
        }
        return bpf_map__fd(handle)
    }

    /// The maps libbpf found in the object (its internal ones, such as
    /// "memwarde.rodata", included).
    func mapNames() -> [String] {
        var result: [String] = []
        var map = bpf_object__next_map(object, nil)
        while let current = map {
            result.append(String(cString: bpf_map__name(current)))
            map = bpf_object__next_map(object, current)
        }
        return result
    }

    /// Each program's name and section as libbpf read them, and its fd once loaded (-1 before).
    func programs() -> [(name: String, section: String, fd: Int32)] {
        var result: [(String, String, Int32)] = []
        var program = bpf_object__next_program(object, nil)
        while let current = program {
            result.append((
                String(cString: bpf_program__name(current)), String(cString: bpf_program__section_name(current)),
                bpf_program__fd(current)
            ))
            program = bpf_object__next_program(object, current)
        }
        return result
    }

    static func lastLog() -> String {
        let lines = String(cString: mw_libbpf_log()).split(separator: "\n")
        return lines.suffix(12).joined(separator: "\n")
    }
}
