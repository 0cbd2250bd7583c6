import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenIdentity
import MemwardenKernel
import MemwardenModel
import MemwardenOutput
import MemwardenTestSupport

/// A child memory cgroup below the test's own (never anything else in the
/// hierarchy), removed afterwards.
final class ScratchCgroup {
    let hierarchy: CgroupHierarchy
    /// Path relative to the hierarchy's root, as samples name it.
    let path: String
    var directory: String { hierarchy.mountPoint + path }

    convenience init() throws {
        guard let hierarchy = CgroupHierarchy.detect() else { throw TestFailure("no memory cgroup hierarchy mounted") }
        guard let own = ProcCgroup.memoryCgroupPath(pid: getpid(), version: hierarchy.version) else {
            throw TestFailure("cannot read this process's memory cgroup")
        }
        try self.init(hierarchy: hierarchy, path: (own == "/" ? "" : own) + "/memwarden-test-\(getpid())-\(monotonicNanoseconds() % 1_000_000)")
    }

    /// A group below another scratch group.
    convenience init(in parent: ScratchCgroup, name: String) throws {
        try self.init(hierarchy: parent.hierarchy, path: parent.path + "/" + name)
    }

    private init(hierarchy: CgroupHierarchy, path: String) throws {
        self.hierarchy = hierarchy
        self.path = path
        guard mkdir(hierarchy.mountPoint + path, 0o755) == 0 else {
            throw TestFailure("mkdir \(hierarchy.mountPoint + path): errno \(errno)")
        }
    }

    var inode: UInt64 {
        var info = stat()
        return stat(directory, &info) == 0 ? UInt64(info.st_ino) : 0
    }

    /// Removes the group once its processes are gone (rmdir fails with EBUSY until then).
    func remove() {
        let end = deadline(seconds: 10)
        while rmdir(directory) != 0 && errno == EBUSY && monotonicNanoseconds() < end {
            usleep(UInt32(20_000_000 / 1000))
        }
    }
}

@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct CgroupChargeTests {
    @Test("a child moved into a new memory cgroup is charged to it, and its samples name it")
    func movedChildIsChargedToItsNewCgroup() throws {
        let cgroup = try ScratchCgroup()
        defer { cgroup.remove() }
        let monitor = try KernelMonitor()
        let log = RecordLog(monitor)
        let simulator = try Simulator()
        defer { simulator.kill() }
        try simulator.run("cgroup \(cgroup.directory)")
        try simulator.run("touch 64")
        let sample = try #require(
            log.waitFor(seconds: 10) {
                guard let p = $0.process, p.pid == simulator.pid else { return false }
                return p.cgroupID == cgroup.inode && p.memory.anon >= 63 * mib
            }?.process,
            "no sample naming the new cgroup (id \(cgroup.inode)) within 10 s")
        let aggregate = try #require(
            log.waitFor(seconds: 10) {
                guard let c = $0.cgroup, c.cgroupID == cgroup.inode else { return false }
                return c.memory.anon >= 63 * mib
            }?.cgroup,
            "no cgroup aggregate of 64 MiB for the new cgroup within 10 s")
        #expect(aggregate.processCount == 1)
        // usage is the cgroup's page counter: what the child had before it moved
        // stays charged to its old cgroup (v1 does not move charges), and the
        // record may be written before the last touched pages are charged
        if let usage = aggregate.usage { #expect(usage >= 60 * mib, "usage \(usage)") }

        // the id resolves to the path userspace prints
        var resolver = RecordResolver(hierarchy: cgroup.hierarchy)
        #expect(resolver.cgroupPath(id: sample.cgroupID, pid: nil) == cgroup.path)
        let line = SampleFormatter().traceLine(sample, cgroup: resolver.resolve(.process(sample)).cgroup)
        #expect(line.contains("\"cgroup\":\"\(cgroup.path)\""))

        // leaving: the aggregate goes back down when the process exits
        simulator.kill()
        let emptied = log.waitFor(seconds: 10) {
            guard let c = $0.cgroup, c.cgroupID == cgroup.inode else { return false }
            return c.processCount == 0
        }
        #expect(emptied != nil, "the cgroup's aggregate did not drop its last process within 10 s")
    }
}
