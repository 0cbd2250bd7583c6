import Glibc

/// `leaksim serve`: a child the kernel tests drive line by line on stdin, one answer line per
/// command, so each memory event the test provokes has a known cause and a known moment.
struct Serve {
    private var mappings: [Mapping] = []

    static let commands = [
        ("touch MIB", "map MIB MiB anonymous memory and touch every page", "ok touched=<bytes>"),
        ("reserve MIB", "map MIB MiB anonymous memory, untouched (for process_vm_writev)", "ok addr=0x<hex> bytes=<n>"),
        ("thread MIB", "a thread touches MIB MiB (kept after it exits); joined", "ok thread-exited tid=<tid>"),
        ("shm MIB", "map MIB MiB of an unlinked /dev/shm file MAP_SHARED, touch every page", "ok shmem=<bytes>"),
        ("free", "unmap everything touch, reserve, thread and shm mapped", "ok"),
        ("exec PATH [ARGS...]", "execv PATH; no answer on success", "error <reason>"),
        ("cgroup DIR", "write own pid to DIR/cgroup.procs", "ok"),
        ("comm NAME", "set the process name (prctl PR_SET_NAME; the rest of the line, ≤ 15 bytes kept)", "ok"),
        ("exit [CODE]", "exit with CODE (default 0)", "(none)"),
    ]

    static func run(_ words: ArraySlice<String>) -> Never {
        if let word = words.first {
            Output.usageError("serve: unexpected argument '\(word)' (see leaksim serve --help)")
        }
        var serve = Serve()
        Output.line("ready pid=\(getpid())")
        while let line = readLine() {
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            Output.line(serve.handle(line))
        }
        exit(0)
    }

    /// Reads stdin a byte at a time: after `exec`, the new program must find the rest of stdin
    /// unread, which a buffered reader would have swallowed. Commands are few and short.
    private static func readLine() -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = read(STDIN_FILENO, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            guard count == 1 else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func handle(_ line: String) -> String {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let command = words[0]
        let arguments = words.dropFirst()
        do throws(Problem) {
            switch command {
            case "touch":
                let mapping = try map(try size(arguments, command))
                mapping.touch()
                mappings.append(mapping)
                return "ok touched=\(mapping.length)"
            case "reserve":
                let mapping = try map(try size(arguments, command))
                mappings.append(mapping)
                return "ok addr=0x\(String(UInt(bitPattern: mapping.address), radix: 16)) bytes=\(mapping.length)"
            case "thread":
                let (mapping, tid) = try touchInThread(try size(arguments, command))
                mappings.append(mapping)
                return "ok thread-exited tid=\(tid)"
            case "shm":
                let bytes = try size(arguments, command)
                let mapping: Mapping
                do { mapping = try Mapping.sharedMemory(bytes) } catch { throw Problem.failure(error.description) }
                mapping.touch()
                mappings.append(mapping)
                return "ok shmem=\(mapping.length)"
            case "free":
                try noArguments(arguments, command)
                mappings.forEach { $0.unmap() }
                mappings.removeAll()
                return "ok"
            case "exec":
                guard let path = arguments.first else { throw Problem.usage("exec needs a PATH") }
                return "error " + Self.exec(path, Array(arguments))
            case "cgroup":
                guard arguments.count == 1 else { throw Problem.usage("cgroup needs one DIR") }
                do { try Linux.joinCgroup(arguments[arguments.startIndex]) } catch {
                    throw Problem.failure(error.description)
                }
                return "ok"
            case "comm":
                let name = line.drop { $0 == " " || $0 == "\t" }.dropFirst(command.count).drop {
                    $0 == " " || $0 == "\t"
                }
                guard !name.isEmpty else { throw Problem.usage("comm needs a NAME") }
                do { try Linux.setThreadName(String(name)) } catch { throw Problem.failure(error.description) }
                return "ok"
            case "exit":
                guard arguments.count <= 1 else { throw Problem.usage("exit takes at most one CODE") }
                guard let code = arguments.first.map({ Int32($0) }) ?? 0, (0...255).contains(code) else {
                    throw Problem.usage("exit CODE must be a whole number from 0 to 255")
                }
                exit(code)
            default:
                return "error unknown command: \(line)"
            }
        } catch {
            return "error \(error.description)"
        }
    }

    private func size(_ arguments: ArraySlice<String>, _ command: String) throws(Problem) -> Int {
        guard arguments.count == 1, let mebibytes = Double(arguments[arguments.startIndex]), mebibytes.isFinite,
            mebibytes > 0, mebibytes <= Flag.largestMebibytes
        else { throw Problem.usage("\(command) needs one size in MiB > 0") }
        return Memory.pagesUp(mebibytes: mebibytes)
    }

    private func noArguments(_ arguments: ArraySlice<String>, _ command: String) throws(Problem) {
        guard arguments.isEmpty else { throw Problem.usage("\(command) takes no arguments") }
    }

    private func map(_ bytes: Int) throws(Problem) -> Mapping {
        do { return try Mapping.anonymous(bytes) } catch { throw Problem.failure(error.description) }
    }

    /// The memory is mapped and touched by a short-lived thread, so its faults come from a tid
    /// that is not the pid, and the thread's exit must not be taken for the process's.
    private func touchInThread(_ bytes: Int) throws(Problem) -> (Mapping, Int32) {
        final class Job {
            let bytes: Int
            var result: Result<Mapping, SystemError>?
            var tid: Int32 = 0
            init(bytes: Int) { self.bytes = bytes }
        }
        let job = Job(bytes: bytes)
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { context in
                let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
                job.tid = Linux.threadID()
                job.result = Result { () throws(SystemError) in
                    let mapping = try Mapping.anonymous(job.bytes)
                    mapping.touch()
                    return mapping
                }
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw Problem.failure(SystemError("pthread_create", code: created).description)
        }
        pthread_join(thread, nil)
        switch job.result {
        case .success(let mapping): return (mapping, job.tid)
        case .failure(let error): throw Problem.failure(error.description)
        case nil: throw Problem.failure("the thread ended without a result")
        }
    }

    /// Replaces this process; returns only the reason when execv fails.
    private static func exec(_ path: String, _ arguments: [String]) -> String {
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        execv(path, argv)
        return String(cString: strerror(errno))
    }
}
