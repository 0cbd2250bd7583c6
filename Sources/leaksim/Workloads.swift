import Glibc

/// What a scenario does to memory, advanced tick by tick by a `Timeline`.
protocol Workload: AnyObject {
    /// Brings memory to the scenario's shape at `elapsed` seconds; false when there is nothing
    /// left to do before the duration is up.
    func advance(to elapsed: Double) throws -> Bool
    /// Ends the workload and releases what it holds; `requested` when a stop signal cut it short.
    func finish(requested: Bool) throws
}

/// A pool of memory that follows a shape, plus optional noise.
final class LevelWorkload: Workload {
    private let pool: Pool
    private let shape: Shape
    private var jitter: Jitter

    init(_ pool: Pool, _ shape: Shape, jitter: Jitter) {
        self.pool = pool
        self.shape = shape
        self.jitter = jitter
    }

    func advance(to elapsed: Double) throws -> Bool {
        let level = shape.mebibytes(at: elapsed) + jitter.mebibytes(at: elapsed)
        try pool.resize(to: Memory.pagesDown(mebibytes: level))
        return true
    }

    func finish(requested: Bool) {
        pool.release()
    }
}

/// Several workloads in one process (a heap next to shared memory, a file, a sparse region).
final class CompositeWorkload: Workload {
    private let parts: [any Workload]

    init(_ parts: [any Workload]) {
        self.parts = parts
    }

    func advance(to elapsed: Double) throws -> Bool {
        var busy = false
        for part in parts {
            let partBusy = try part.advance(to: elapsed)
            busy = busy || partBusy
        }
        return busy
    }

    func finish(requested: Bool) throws {
        for part in parts { try part.finish(requested: requested) }
    }
}

/// File-backed memory: a real file on a disk file system, written once (so its pages sit in the
/// page cache), then mapped read-only and read page by page at a rate. RssFile grows; RssAnon does
/// not. On tmpfs the same pages would be shmem, which is exactly what this control must not be.
final class FileCacheWorkload: Workload {
    private let mapping: Mapping
    private let shape: Shape
    private var pagesRead = 0
    /// Kept so the loads that fault the pages in have a use and stay in the optimized binary.
    private(set) var checksum: UInt64 = 0

    init(directory: String, bytes: Int, shape: Shape) throws {
        let type = try Linux.fileSystemType(of: directory)
        guard type != Linux.tmpfsMagic, type != Linux.ramfsMagic else {
            throw Problem.usage(
                "\(directory) is on tmpfs or ramfs, where file pages count as shmem, not file-backed memory; "
                    + "pass --dir on a disk file system")
        }
        let (fd, path) = try TemporaryFile.create(in: directory, prefix: "leaksim-filecache", unlink: false)
        defer {
            close(fd)
            // The mapping keeps the pages; with the name gone at once, not even SIGKILL leaves the file behind.
            unlink(path)
        }
        try Self.fill(fd, bytes: bytes, path: path)
        mapping = try Mapping.shared(file: fd, offset: 0, length: bytes, writable: false)
        self.shape = shape
    }

    private static func fill(_ fd: Int32, bytes: Int, path: String) throws(SystemError) {
        let blockSize = 1 << 16
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: Memory.pageSize)
        defer { block.deallocate() }
        block.initializeMemory(as: UInt8.self, repeating: 0x5A, count: blockSize)
        var written = 0
        while written < bytes {
            let result = write(fd, block, min(blockSize, bytes - written))
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw SystemError("write \(path)") }
            written += result
        }
    }

    func advance(to elapsed: Double) throws -> Bool {
        let target = min(mapping.pages, Memory.pagesDown(mebibytes: shape.mebibytes(at: elapsed)) / Memory.pageSize)
        if target > pagesRead {
            checksum &+= mapping.read(pages: pagesRead..<target)
            pagesRead = target
        }
        return true
    }

    func finish(requested: Bool) {
        mapping.unmap()
    }
}

/// N forked children, each running its own workload on the parent's timeline, all in the
/// parent's cgroup. The parent holds no memory of its own and waits for them.
final class ChildrenWorkload: Workload {
    private let count: Int
    private let timeline: Timeline
    private let makeChild: (Int) throws -> any Workload
    private var running: [pid_t] = []
    private var failures: [String] = []
    private var started = false

    init(count: Int, timeline: Timeline, makeChild: @escaping (Int) throws -> any Workload) {
        self.count = count
        self.timeline = timeline
        self.makeChild = makeChild
    }

    func advance(to elapsed: Double) throws -> Bool {
        if !started {
            started = true
            for index in 0..<count { try spawn(index) }
        }
        reap(blocking: false)
        return !running.isEmpty
    }

    func finish(requested: Bool) throws {
        if requested {
            for pid in running { kill(pid, SIGTERM) }
        }
        while !running.isEmpty { reap(blocking: true) }
        if !failures.isEmpty { throw Problem.failure(failures.joined(separator: "; ")) }
    }

    private func spawn(_ index: Int) throws(SystemError) {
        let parent = getpid()
        let pid = fork()
        guard pid >= 0 else { throw SystemError("fork") }
        guard pid == 0 else {
            running.append(pid)
            return
        }
        // The child: single-threaded like its parent, so it can go on in Swift after fork.
        do {
            let workload = try makeChild(index)
            let outcome = try timeline.run(workload, parent: parent)
            try workload.finish(requested: outcome != .finished)
            exit(0)
        } catch {
            Output.warn("child \(getpid()): \(error)")
            exit(1)
        }
    }

    private func reap(blocking: Bool) {
        while !running.isEmpty {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, blocking ? 0 : WNOHANG)
            if pid < 0 && errno == EINTR { continue }
            guard pid > 0 else { return }
            running.removeAll { $0 == pid }
            // WIFEXITED/WEXITSTATUS are C macros Swift does not import.
            let signal = status & 0x7F
            let code = (status >> 8) & 0xFF
            if signal != 0 {
                failures.append("child \(pid) killed by signal \(signal)")
            } else if code != 0 {
                failures.append("child \(pid) exited with status \(code)")
            }
            if blocking { return }
        }
    }
}

/// Allocate/free churn with random sizes, like `stress-ng --malloc`: every 1/--ops seconds a
/// block of up to --block MiB is allocated or a live one freed (at most --blocks live). The level
/// wanders between base and base + blocks × block and never trends: a control.
final class MallocChurnWorkload: Workload {
    private let pool: Pool
    private let base: Double
    private let block: Double
    private let maximum: Int
    private let interval: Double
    private var random: XorShift
    private var live: [Double] = []
    private var operations = 0

    init(_ pool: Pool, base: Double, block: Double, blocks: Int, opsPerSecond: Double, seed: UInt64) {
        self.pool = pool
        self.base = base
        self.block = block
        maximum = blocks
        interval = 1 / opsPerSecond
        random = XorShift(seed: seed)
    }

    func advance(to elapsed: Double) throws -> Bool {
        while Double(operations) * interval <= elapsed {
            operations += 1
            let allocate = live.isEmpty || (live.count < maximum && random.signedUnit() >= 0)
            if allocate {
                live.append(max(0.0625, (random.signedUnit() + 1) / 2 * block))
            } else {
                live.remove(at: Int(random.next() % UInt64(live.count)))
            }
        }
        try pool.resize(to: Memory.pagesDown(mebibytes: base + live.reduce(0, +)))
        return true
    }

    func finish(requested: Bool) {
        pool.release()
    }
}
