import Glibc

/// Linux calls that Swift's Glibc module does not export: gettid is declared only under
/// _GNU_SOURCE, sys/vfs.h (statfs) and sys/prctl.h are not in its module map, and variadic C
/// functions (prctl, syscall) cannot be called from Swift at all. leaksim has no C target of its
/// own, so the non-variadic ones are looked up in libc at run time and the rest go through /proc.
enum Linux {
    static let tmpfsMagic: UInt32 = 0x0102_1994
    static let ramfsMagic: UInt32 = 0x8584_58F6

    /// The calling thread's id (gettid(2)).
    static func threadID() -> Int32 {
        typealias GetTID = @convention(c) () -> Int32
        guard let symbol = dlsym(nil, "gettid") else { return -1 }  // nil handle is RTLD_DEFAULT
        return unsafeBitCast(symbol, to: GetTID.self)()
    }

    /// The f_type of statfs(2) for `path`: which file system holds it.
    static func fileSystemType(of path: String) throws(SystemError) -> UInt32 {
        typealias StatFS = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
        guard let symbol = dlsym(nil, "statfs") else { throw SystemError("statfs", code: ENOSYS) }
        let statfs = unsafeBitCast(symbol, to: StatFS.self)
        // struct statfs is 120 bytes on 64-bit Linux and starts with f_type, a C long (Swift Int).
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
        defer { buffer.deallocate() }
        guard statfs(path, buffer) == 0 else { throw SystemError("statfs \(path)") }
        return UInt32(truncatingIfNeeded: buffer.load(as: Int.self))
    }

    /// What prctl(PR_SET_NAME) does: both end in the kernel's set_task_comm on the calling thread
    /// (the main thread here, so the process's comm) and fire the task_rename tracepoint.
    static func setThreadName(_ name: String) throws(SystemError) {
        try writeFile("/proc/thread-self/comm", name)
    }

    /// Moves the whole process into a cgroup v2 directory (children forked later follow).
    static func joinCgroup(_ directory: String) throws(SystemError) {
        try writeFile(directory + "/cgroup.procs", "\(getpid())\n")
    }

    static func writeFile(_ path: String, _ text: String) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open \(path)") }
        defer { close(fd) }
        var text = text
        let written = text.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        guard written == text.utf8.count else { throw SystemError("write \(path)") }
    }
}
