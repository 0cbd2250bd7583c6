#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes whole lines to a file descriptor, a batch per write(2), so lines
/// from one writer are never interleaved or split.
public struct LineWriter: Sendable {
    public let fd: Int32

    public init(fd: Int32) {
        self.fd = fd
    }

    public static let standardOutput = LineWriter(fd: STDOUT_FILENO)

    /// Opens (creates or truncates) a file for writing.
    public static func create(path: String) throws(FileError) -> LineWriter {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", errno: errno) }
        return LineWriter(fd: fd)
    }

    public func close() {
        _ = Glibc.close(fd)
    }

    public func write(lines: [String]) throws(FileError) {
        guard !lines.isEmpty else { return }
        var text = lines.joined(separator: "\n")
        text += "\n"
        try write(text)
    }

    public func write(_ text: String) throws(FileError) {
        var copy = text
        let failure: Int32 = copy.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return errno
                }
                offset += n
            }
            return 0
        }
        if failure != 0 { throw FileError(path: "fd \(fd)", operation: "write", errno: failure) }
    }
}
