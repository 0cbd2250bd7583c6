#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error reading or writing a file, with the path and errno.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var errno: Int32

    package init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(errno)))" }
}

/// Reads a whole file with plain POSIX calls: procfs and cgroupfs files report
/// a size of 0, and these reads sit on paths that run every few seconds.
package func readText(_ path: String, limit: Int = 1 << 22) throws(FileError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 8192)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FileError(path: path, operation: "read", errno: errno)
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes a short value to a control file (cgroupfs, procfs) in one write(2).
package func writeText(_ text: String, to path: String) throws(FileError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    let result = text.withCString { write(fd, $0, strlen($0)) }
    guard result >= 0 else { throw FileError(path: path, operation: "write", errno: errno) }
}

/// The running kernel's page size.
package let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of the kernel's records.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CLOCK_REALTIME now, in nanoseconds since the Unix epoch.
public func realtimeNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Seconds from now, as a monotonic deadline in nanoseconds.
public func deadline(seconds: Double) -> UInt64 {
    monotonicNanoseconds() + UInt64(seconds * 1e9)
}
