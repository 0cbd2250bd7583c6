import Glibc

enum Memory {
    /// The real page size: 4 KiB on x86_64, but 16 or 64 KiB on some arm64 kernels.
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    static let mebibyte = 1 << 20
    private static let largestMebibytes = Double(1 << 30)

    /// Bytes for a size in MiB, rounded down to whole pages (a level never overshoots its shape).
    static func pagesDown(mebibytes: Double) -> Int {
        guard mebibytes > 0 else { return 0 }
        // A shape that grows without end must not trap the Int conversion: 1 PiB is "more than any machine".
        let bytes = Int(min(mebibytes, largestMebibytes) * Double(mebibyte))
        return bytes / pageSize * pageSize
    }

    /// Bytes for a size in MiB, rounded up to whole pages (an allocation holds at least what was asked).
    static func pagesUp(mebibytes: Double) -> Int {
        let bytes = Int((mebibytes * Double(mebibyte)).rounded(.up))
        return (bytes + pageSize - 1) / pageSize * pageSize
    }
}

/// A region this process mapped itself; it lives until `unmap` (a value type, so ownership stays
/// with whoever keeps the list of mappings).
struct Mapping {
    let address: UnsafeMutableRawPointer
    private(set) var length: Int

    var pages: Int { length / Memory.pageSize }

    /// Private anonymous memory, not yet touched: counted in VmSize only until its pages are written.
    static func anonymous(_ length: Int) throws(SystemError) -> Mapping {
        try map(length, protection: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: -1, offset: 0)
    }

    /// A MAP_SHARED view of `length` bytes of an open file, from `offset` (page-aligned).
    static func shared(file fd: Int32, offset: Int, length: Int, writable: Bool) throws(SystemError) -> Mapping {
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        return try map(length, protection: protection, flags: MAP_SHARED, fd: fd, offset: offset)
    }

    /// Shared memory as a /dev/shm file would give it (RssShmem, like POSIX shm or memfd users):
    /// the file is gone from the directory at once, so nothing is left behind however leaksim ends.
    static func sharedMemory(_ length: Int) throws(SystemError) -> Mapping {
        let fd = try SharedMemoryFile.create()
        defer { close(fd) }  // the mapping keeps the memory alive
        guard ftruncate(fd, off_t(length)) == 0 else { throw SystemError("ftruncate /dev/shm file") }
        return try shared(file: fd, offset: 0, length: length, writable: true)
    }

    private static func map(
        _ length: Int, protection: Int32, flags: Int32, fd: Int32, offset: Int
    ) throws(SystemError) -> Mapping {
        guard let address = mmap(nil, length, protection, flags, fd, off_t(offset)), address != MAP_FAILED else {
            throw SystemError("mmap \(length) bytes")
        }
        // Without transparent huge pages every fault maps one page, so the rss_stat counters move
        // page by page as in an ordinary heap instead of jumping 2 MiB at a time. An error only
        // means THP is not built in, which gives the same result.
        _ = madvise(address, length, MADV_NOHUGEPAGE)
        return Mapping(address: address, length: length)
    }

    /// Writes one byte to every `stride`-th page from page `first`: each write is one fault.
    func touch(fromPage first: Int = 0, every stride: Int = 1) {
        var page = first
        while page < pages {
            (address + page * Memory.pageSize).storeBytes(of: 0x5A, as: UInt8.self)
            page += stride
        }
    }

    /// Reads one byte of each page in `range`; the sum is returned so the loads cannot be optimized away.
    func read(pages range: Range<Int>) -> UInt64 {
        var sum: UInt64 = 0
        for page in range {
            sum &+= UInt64((address + page * Memory.pageSize).load(as: UInt8.self))
        }
        return sum
    }

    /// Gives back the last `bytes` of the mapping (page multiple), keeping the rest.
    mutating func unmapTail(_ bytes: Int) {
        munmap(address + (length - bytes), bytes)
        length -= bytes
    }

    func unmap() {
        munmap(address, length)
    }
}

enum SharedMemoryFile {
    /// A new, already unlinked file in /dev/shm; the descriptor (and later mappings) keep it alive.
    static func create() throws(SystemError) -> Int32 {
        try TemporaryFile.create(in: "/dev/shm", prefix: "leaksim-shm", unlink: true).fd
    }
}

enum TemporaryFile {
    /// mkstemp under `directory`: a unique name even with many leaksim processes side by side.
    static func create(
        in directory: String, prefix: String, unlink remove: Bool
    ) throws(SystemError) -> (fd: Int32, path: String) {
        var template = Array("\(directory)/\(prefix).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError("create a file in \(directory)") }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if remove { unlink(path) }
        return (fd, path)
    }
}
