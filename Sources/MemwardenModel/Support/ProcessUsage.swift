#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// CPU time and memory of a process, from /proc: what the benchmarks report
/// about the agent itself.
public struct ProcessUsage: Sendable, Hashable {
    /// user + system CPU time in seconds.
    public var cpuSeconds: Double
    public var residentBytes: UInt64
    /// Peak resident set (VmHWM) since start or since the last `resetPeak`.
    public var peakResidentBytes: UInt64

    public static func read(pid: Int32, procRoot: String = "/proc") throws(FileError) -> ProcessUsage {
        let statPath = "\(procRoot)/\(pid)/stat"
        let stat = try readText(statPath)
        let status = try readText("\(procRoot)/\(pid)/status")
        guard let usage = parse(stat: stat, status: status) else {
            throw FileError(path: statPath, operation: "parse", errno: EINVAL)
        }
        return usage
    }

    /// The usage in the texts of /proc/PID/stat and /proc/PID/status; nil if stat has no
    /// parenthesised comm.
    @_spi(Fuzz) public static func parse(stat: String, status: String) -> ProcessUsage? {
        // fields after the parenthesised comm (which may hold spaces): state is field 3
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let utime = fields.count > 12 ? Double(fields[11]) ?? 0 : 0
        let stime = fields.count > 12 ? Double(fields[12]) ?? 0 : 0
        // "VmRSS:\t   18432 kB": the first number after the key, in KiB; anything else
        // (a value past UInt64 in bytes among them) is no reading, not a crash
        func kib(_ key: String) -> UInt64 {
            for line in status.split(separator: "\n") where line.hasPrefix(key) {
                guard let field = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first,
                    let kibibytes = UInt64(field)
                else { return 0 }
                let (bytes, overflow) = kibibytes.multipliedReportingOverflow(by: 1024)
                return overflow ? 0 : bytes
            }
            return 0
        }
        return ProcessUsage(cpuSeconds: (utime + stime) / ticks, residentBytes: kib("VmRSS:"), peakResidentBytes: kib("VmHWM:"))
    }

    /// Resets VmHWM to the current RSS (writing 5 to clear_refs), so a later
    /// read gives the peak of one phase only.
    public static func resetPeak(pid: Int32, procRoot: String = "/proc") throws(FileError) {
        try writeText("5", to: "\(procRoot)/\(pid)/clear_refs")
    }
}
