#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

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

    /// Writes everything, blocking as long as it takes (trace files).
    public func write(_ text: String) throws(FileError) {
        var copy = text
        if let failure = copy.withUTF8({ writeAll(UnsafeRawBufferPointer($0)) }) {
            throw FileError(path: "fd \(fd)", operation: "write", errno: failure)
        }
    }

    /// write(2) until all of it went out; the errno of a failure, or nil.
    private func writeAll(_ buffer: UnsafeRawBufferPointer) -> Int32? {
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return errno
            }
            offset += n
        }
        return nil
    }

    /// Writes whole lines until `deadline` (monotonic ns) and returns how many
    /// went out: a pipe nobody reads must not stop the agent, and the caller
    /// counts the rest. Lines go in groups of at most PIPE_BUF bytes, each after
    /// poll(2) says the pipe has room: such a write is atomic and does not
    /// block, so no line is ever cut or interleaved.
    public func write(lines: [String], deadline: UInt64) -> (lines: Int, error: Int32?) {
        var sent = 0
        var index = 0
        while index < lines.count {
            var chunk: [UInt8] = []
            var count = 0
            while index + count < lines.count {
                let line = lines[index + count]
                if count > 0 && chunk.count + line.utf8.count + 1 > Int(PIPE_BUF) { break }
                chunk.append(contentsOf: line.utf8)
                chunk.append(UInt8(ascii: "\n"))
                count += 1
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let now = monotonicNanoseconds()
            let ready = poll(&descriptor, 1, deadline > now ? Int32(min((deadline - now) / 1_000_000, 1000)) : 0)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 {
                if monotonicNanoseconds() >= deadline { return (sent, nil) }
                continue
            }
            if let failure = chunk.withUnsafeBytes({ writeAll($0) }) { return (sent, failure) }
            sent += count
            index += count
        }
        return (sent, nil)
    }
}
