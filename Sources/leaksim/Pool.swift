import Glibc

/// Memory held at a level a scenario sets tick by tick, the way a heap grows and shrinks: growing
/// maps a new chunk and touches it, shrinking unmaps from the newest end. The level is exact to the
/// page, and every change reaches the kernel's rss_stat counters at once (no allocator caching).
final class Pool {
    enum Backing {
        /// Private anonymous memory: RssAnon.
        case anonymous
        /// One unlinked /dev/shm file, mapped MAP_SHARED chunk after chunk: RssShmem.
        case sharedMemory
    }

    private let backing: Backing
    /// Touch one page in every `stride`: 1 for a dense heap, more for address space that is
    /// reserved but barely used (fragmentation: VmSize grows much faster than RSS).
    private let stride: Int
    private var file: Int32 = -1
    private var chunks: [Mapping] = []
    /// Bytes mapped (VmSize); with stride 1 also the bytes resident.
    private(set) var bytes = 0

    init(_ backing: Backing, touchingOnePageIn stride: Int = 1) throws(SystemError) {
        self.backing = backing
        self.stride = stride
        if case .sharedMemory = backing {
            file = try SharedMemoryFile.create()
        }
    }

    deinit {
        release()
    }

    func resize(to target: Int) throws(SystemError) {
        let target = target / Memory.pageSize * Memory.pageSize
        if target > bytes {
            try grow(by: target - bytes)
        } else if target < bytes {
            shrink(to: target)
        }
    }

    func release() {
        shrink(to: 0)
        if file >= 0 {
            close(file)
            file = -1
        }
    }

    private func grow(by length: Int) throws(SystemError) {
        let chunk: Mapping
        switch backing {
        case .anonymous:
            chunk = try Mapping.anonymous(length)
        case .sharedMemory:
            guard ftruncate(file, off_t(bytes + length)) == 0 else { throw SystemError("ftruncate /dev/shm file") }
            chunk = try Mapping.shared(file: file, offset: bytes, length: length, writable: true)
        }
        // Count pages across chunks, so the touched share is the same however the ticks cut them.
        let firstPage = bytes / Memory.pageSize
        chunk.touch(fromPage: (stride - firstPage % stride) % stride, every: stride)
        chunks.append(chunk)
        bytes += length
    }

    private func shrink(to target: Int) {
        while bytes > target, var last = chunks.popLast() {
            let excess = bytes - target
            if excess >= last.length {
                last.unmap()
                bytes -= last.length
            } else {
                last.unmapTail(excess)
                bytes -= excess
                chunks.append(last)
            }
        }
        if file >= 0 {
            // Unmapping only drops the pages from RSS; the file still holds them until it shrinks.
            _ = ftruncate(file, off_t(bytes))
        }
    }
}
