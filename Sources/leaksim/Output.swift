import Glibc

/// Every line goes straight to its file descriptor with write(2): tests read leaksim through a
/// pipe and must see each line as soon as it is written, and `exec` in serve mode must not leave
/// anything behind in a user-space buffer.
enum Output {
    static func line(_ text: String) {
        write(text + "\n", to: STDOUT_FILENO)
    }

    /// A diagnostic on stderr, prefixed with the program name.
    static func warn(_ text: String) {
        write("leaksim: " + text + "\n", to: STDERR_FILENO)
    }

    /// A bad command line: the caller's mistake, exit status 2.
    static func usageError(_ text: String) -> Never {
        warn(text)
        exit(2)
    }

    /// The run itself failed (a system call, a child): exit status 1.
    static func failure(_ text: String) -> Never {
        warn(text)
        exit(1)
    }

    private static func write(_ text: String, to fd: Int32) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return  // nobody is listening any more; nothing useful left to do with the line
                }
                offset += written
            }
        }
    }
}

/// A failed system call, with the errno captured at the failure.
struct SystemError: Error, CustomStringConvertible {
    let operation: String
    let code: Int32

    init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

/// A reason to stop with a message: a bad request (status 2) or a failed run (status 1).
struct Problem: Error, CustomStringConvertible {
    let description: String
    let exitStatus: Int32

    static func usage(_ message: String) -> Problem { Problem(description: message, exitStatus: 2) }
    static func failure(_ message: String) -> Problem { Problem(description: message, exitStatus: 1) }
}

/// Reports any error from a run and exits with its status.
func fail(with error: any Error) -> Never {
    Output.warn("\(error)")
    exit((error as? Problem)?.exitStatus ?? 1)
}

/// Seconds from nanoseconds with exactly nine decimals, without Foundation's formatter and
/// without the exponent notation `Double.description` would use for small values.
func decimalSeconds(nanoseconds: UInt64) -> String {
    let fraction = String(nanoseconds % 1_000_000_000)
    return "\(nanoseconds / 1_000_000_000)." + String(repeating: "0", count: 9 - fraction.count) + fraction
}
