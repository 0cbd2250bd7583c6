#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// Gives back the pages of the agent's own executable that only starting it
/// touched.
///
/// Most of the agent's resident set is clean, file-backed pages of its
/// executable (BENCHMARKS.md, "Footprint"): parsing the command line and the
/// policy, starting the HTTP server, TLS and the Kubernetes client, loading the
/// BPF program run code once that steady work never runs again, and each first
/// touch maps 64 KiB around it (the kernel's fault-around). Those pages stay
/// mapped, so they count as RSS for the agent's whole life.
///
/// `MADV_DONTNEED` on a private file mapping drops the page-table entries and
/// nothing else: the pages stay in the page cache and the next touch maps them
/// again from the unchanged file, so only what the steady loop runs comes back.
/// That is only true of pages the process never wrote. A private mapping that
/// was written (relocations in the RELRO segment, made read-only afterwards)
/// holds anonymous copies that `MADV_DONTNEED` would discard, so a mapping is
/// dropped only when it is read-only and pagemap shows none of its resident
/// pages anonymous; read-only mappings cannot gain such pages later. The file
/// cannot change under the mappings either: the kernel refuses writes to a
/// running executable (ETXTBSY), and an upgrade replaces it by a new inode.
public enum StartupPages {
    /// Drops the eligible mappings of /proc/self/exe; returns the bytes of
    /// address space advised (not all of them were resident). Failures leave
    /// the mappings as they are: this saves memory and is never needed.
    @discardableResult
    public static func release() -> Int {
        guard let executable = selfExecutable(), let maps = try? readText("/proc/self/maps") else { return 0 }
        let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { return 0 }
        defer { close(pagemap) }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var released = 0
        for line in maps.split(separator: "\n") {
            // start-end perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].drop(while: { $0 == " " }) == executable[...],
                fields[1].hasPrefix("r"), !fields[1].contains("w"), fields[1].hasSuffix("p")
            else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start
            else { continue }
            let length = Int(end - start)
            guard onlyFilePages(pagemap, start: start, pages: length / pageSize, pageSize: pageSize),
                let address = UnsafeMutableRawPointer(bitPattern: start),
                madvise(address, length, MADV_DONTNEED) == 0
            else { continue }
            released += length
        }
        return released
    }

    private static func selfExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// True when no resident page of the range is anonymous (pagemap(5): bit 63
    /// present, bit 61 file page or shared anonymous); false if pagemap cannot
    /// be read.
    private static func onlyFilePages(_ pagemap: Int32, start: UInt, pages: Int, pageSize: Int) -> Bool {
        var entries = [UInt64](repeating: 0, count: pages)
        let wanted = pages * MemoryLayout<UInt64>.size
        let got = entries.withUnsafeMutableBytes {
            pread(pagemap, $0.baseAddress, wanted, off_t(start / UInt(pageSize)) * off_t(MemoryLayout<UInt64>.size))
        }
        guard got == wanted else { return false }
        let present: UInt64 = 1 << 63, file: UInt64 = 1 << 61
        return !entries.contains { $0 & present != 0 && $0 & file == 0 }
    }
}
