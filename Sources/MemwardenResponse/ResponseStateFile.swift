#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import MemwardenModel

/// One cgroup whose memory.high the responder changed: enough to put it back
/// after a crash, and to tell whether what is there now is still ours.
public struct ResponseStateRecord: Codable, Sendable, Hashable {
    /// The target's key (EventTarget.key).
    public var key: String
    /// The cgroup path relative to the hierarchy ("/kubepods/…").
    public var cgroup: String
    /// The cgroup's directory as the agent wrote it.
    public var directory: String
    /// The directory's inode when the original was read: a recycled path
    /// (a new container under the same name) has another one.
    public var inode: UInt64
    /// memory.high exactly as it was before the first write ("max" included).
    public var original: String
    /// The last value written.
    public var written: String?
    /// A value about to be written: recorded first, so that a crash between
    /// the record and the write still recognises the value as ours.
    public var pending: String?
    public var rule: String
    public var sinceEpochNanoseconds: UInt64
    /// How the value is steered: "pressure" (the PSI controller) or
    /// "growth_cap" (`GrowthCapController`). Absent in files of agents before
    /// growth caps, which only steered by pressure. Kept as text, not an enum,
    /// so that a mode a newer agent wrote still loads (and is restored) here.
    public var throttleMode: String?
    /// A growth cap's start (memory.high it began at) and rate, for what a
    /// restore after a restart says.
    public var growthCap: GrowthCapRecord?

    public struct GrowthCapRecord: Codable, Sendable, Hashable {
        public var start: UInt64
        public var rateBytesPerSecond: UInt64

        public init(start: UInt64, rateBytesPerSecond: UInt64) {
            self.start = start
            self.rateBytesPerSecond = rateBytesPerSecond
        }
    }

    public static let pressureMode = "pressure"
    public static let growthCapMode = "growth_cap"

    public init(
        key: String, cgroup: String, directory: String, inode: UInt64, original: String, written: String? = nil,
        pending: String? = nil, rule: String, sinceEpochNanoseconds: UInt64, throttleMode: String? = nil,
        growthCap: GrowthCapRecord? = nil
    ) {
        self.throttleMode = throttleMode
        self.growthCap = growthCap
        self.key = key
        self.cgroup = cgroup
        self.directory = directory
        self.inode = inode
        self.original = original
        self.written = written
        self.pending = pending
        self.rule = rule
        self.sinceEpochNanoseconds = sinceEpochNanoseconds
    }

    /// Whether memory.high's value now is one the agent put there (or the
    /// original, if the crash came before the first write).
    public func isOurs(_ current: MemoryKnob) -> Bool {
        [original, written, pending].contains { $0.flatMap(MemoryKnob.init(parsing:)) == current }
    }
}

public struct ResponseStateFileError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case unreadable
        /// Not the state file's JSON; kept next to it as `<file>.corrupt`.
        case corrupt
        case unwritable
    }

    public var code: Code
    public var path: String
    public var detail: String

    public var description: String { "\(path): \(detail)" }
}

/// The responder's memory of what it changed (default
/// /var/lib/memwarden/state.json). Every save is atomic and durable: a temp
/// file in the same directory, fsync, rename over the old one, fsync of the
/// directory; so after a kill -9 or a power cut the file holds either the old
/// or the new list, never half of one.
/// Called at a point where a kill would leave the disk in another state
/// (ResponderConfiguration.observeDurableStep).
public typealias DurableStepObserver = @Sendable (_ step: String) -> Void

public struct ResponseStateFile: Sendable {
    struct Contents: Codable {
        var version = 1
        var targets: [ResponseStateRecord]
    }

    public static let defaultPath = "/var/lib/memwarden/state.json"

    public let path: String

    public init(path: String = Self.defaultPath) {
        self.path = path
    }

    /// The records, or none. A missing file is an empty list; a corrupt one
    /// is moved aside (`<file>.corrupt`) and reported, and the agent goes on
    /// with an empty list rather than not starting.
    public func load() -> (records: [ResponseStateRecord], problem: ResponseStateFileError?) {
        let text: String
        do {
            text = try readText(path)
        } catch {
            if error.errno == ENOENT { return ([], nil) }
            return ([], ResponseStateFileError(code: .unreadable, path: path, detail: "\(error)"))
        }
        do {
            return (try Self.decode(Data(text.utf8)), nil)
        } catch {
            let aside = path + ".corrupt"
            let moved = rename(path, aside) == 0
            let detail =
                "not a memwarden state file (\(Self.describe(error))); "
                + (moved ? "kept as \(aside), starting with no records" : "could not move it aside (errno \(errno))")
            return ([], ResponseStateFileError(code: .corrupt, path: path, detail: detail))
        }
    }

    /// The records of a state file's contents; throws what JSONDecoder throws.
    @_spi(Fuzz) public static func decode(_ data: Data) throws -> [ResponseStateRecord] {
        try JSONDecoder().decode(Contents.self, from: data).targets
    }

    public func save(_ records: [ResponseStateRecord], observe: DurableStepObserver? = nil) throws(ResponseStateFileError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(Contents(targets: records))
        } catch {
            throw ResponseStateFileError(code: .unwritable, path: path, detail: "cannot encode: \(error)")
        }
        let directory = Self.directory(of: path)
        try makeDirectories(directory)
        // per process: `memwarden restore` may save while an agent does
        let temporary = path + ".tmp.\(getpid())"
        // a leftover of a crashed run (the agent is pid 1 in its container, so the name
        // repeats) goes first, and what is opened must be a new file: a symlink planted
        // in its place is removed by unlink, never followed
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("open \(temporary)") }
        observe?("state file: temporary created")
        var bytes = [UInt8](data)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let error = failure("write \(temporary)")
                close(fd)
                unlink(temporary)
                throw error
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let error = failure("fsync \(temporary)")
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        observe?("state file: temporary written")
        guard rename(temporary, path) == 0 else {
            let error = failure("rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        observe?("state file: renamed")
        // the rename is durable only once the directory entry is
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw failure("open \(directory)") }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw failure("fsync \(directory)") }
    }

    private func makeDirectories(_ directory: String) throws(ResponseStateFileError) {
        var built = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o755) != 0 && errno != EEXIST { throw failure("mkdir \(built)") }
        }
    }

    private func failure(_ operation: String) -> ResponseStateFileError {
        ResponseStateFileError(code: .unwritable, path: path, detail: "\(operation): \(String(cString: strerror(errno)))")
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): "invalid JSON: \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "bad field '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        default: "\(error)"
        }
    }
}
