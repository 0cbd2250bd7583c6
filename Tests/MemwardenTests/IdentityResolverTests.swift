import Foundation

#if canImport(Glibc)
import Glibc
#endif
import MemwardenTestSupport
import Synchronization
import Testing

@testable import MemwardenIdentity
@testable import MemwardenModel
@testable import MemwardenOutput

/// Host roots as a container sees them (/host/proc, /host/sys/fs/cgroup),
/// faked in a temp dir: procfs files written by the test, cgroupfs as
/// directories (their inode numbers are the ids, as on a real cgroupfs).
final class FakeHost {
    let base: String
    var paths: HostPaths { HostPaths(proc: base + "/host/proc", cgroup: base + "/host/sys/fs/cgroup") }

    init(_ name: String) throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-host-\(name)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: base)
        try FileManager.default.createDirectory(atPath: base + "/host/proc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/host/sys/fs/cgroup", withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: base) }

    func write(_ text: String, to relative: String) throws {
        let path = base + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func process(_ pid: Int32, cgroup text: String) throws { try write(text, to: "/host/proc/\(pid)/cgroup") }

    /// A cgroup directory below the host cgroupfs root ("/memory/kubepods/…" on v1).
    func cgroup(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: paths.cgroup + relative, withIntermediateDirectories: true)
    }

    func inode(_ relative: String) throws -> UInt64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: paths.cgroup + relative)
        return (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
    }

    /// cgroup v2 with the memory controller at the root.
    static func v2(_ name: String) throws -> FakeHost {
        let host = try FakeHost(name)
        try host.write("cpuset cpu io memory pids\n", to: "/host/sys/fs/cgroup/cgroup.controllers")
        return host
    }

    /// A hybrid node: v1 memory hierarchy, cgroup2 without controllers at /unified.
    static func hybrid(_ name: String) throws -> FakeHost {
        let host = try FakeHost(name)
        try host.write("0\n", to: "/host/sys/fs/cgroup/memory/memory.usage_in_bytes")
        try host.write("", to: "/host/sys/fs/cgroup/unified/cgroup.controllers")
        return host
    }
}

/// A PodMetadataSource double: learns pods while the test runs, as the API
/// server's watch would, and counts lookups.
final class PodDirectory: PodMetadataSource {
    private let state = Mutex<(pods: [String: PodMetadata], lookups: Int)>(([:], 0))

    func add(_ pod: PodMetadata) { state.withLock { $0.pods[pod.uid] = pod } }
    var lookups: Int { state.withLock { $0.lookups } }

    func metadata(podUID: String?, containerID: String?) -> PodMetadata? {
        state.withLock { state in
            state.lookups += 1
            return podUID.flatMap { state.pods[$0] }
        }
    }
}

struct IdentityResolverTests {
    static let c1 = CgroupPathIdentityTests.c1
    static let uid = CgroupPathIdentityTests.uid
    static let container = "/kubepods/besteffort/pod\(uid)/\(c1)"

    @Test("a hybrid node's /proc/PID/cgroup: the v1 memory line names the container, not the v2 line")
    func hybridProcessUsesTheMemoryLine() throws {
        let host = try FakeHost.hybrid("hybrid")
        try host.cgroup("/memory" + Self.container)
        try host.process(4242, cgroup: "12:pids:\(Self.container)\n4:memory:\(Self.container)\n1:name=systemd:/\n0::/system.slice/containerd.service\n")
        let hierarchy = try #require(CgroupHierarchy.detect(hostPaths: host.paths))
        #expect(hierarchy == CgroupHierarchy(mountPoint: host.paths.cgroup + "/memory", version: .v1))
        var resolver = IdentityResolver(hostPaths: host.paths, hierarchy: hierarchy)
        let identity = try resolver.identity(pid: 4242)
        #expect(identity == TargetIdentity(cgroup: Self.container, containerID: Self.c1, podUID: Self.uid, qos: .besteffort))
    }

    @Test("cgroup v2: the 0:: line, and without a known hierarchy the v2 line when there is no memory line")
    func v2ProcessUsesTheUnifiedLine() throws {
        let host = try FakeHost.v2("v2")
        try host.process(7, cgroup: "0::/system.slice/nginx.service\n")
        let hierarchy = try #require(CgroupHierarchy.detect(hostPaths: host.paths))
        #expect(hierarchy == CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2))
        var resolver = IdentityResolver(hostPaths: host.paths, hierarchy: hierarchy)
        #expect(try resolver.identity(pid: 7).systemdUnit == "nginx.service")
        var bare = IdentityResolver(hostPaths: host.paths)
        #expect(try bare.identity(pid: 7).runtime == .systemd)
    }

    @Test("a path read through a private cgroup namespace is resolved to the one host cgroup that ends with it")
    func namespacePathsResolveToHostPaths() throws {
        let host = try FakeHost.v2("cgns")
        try host.cgroup(Self.container)
        try host.cgroup("/system.slice/a/app.service")
        try host.cgroup("/system.slice/b/app.service")
        try host.process(9, cgroup: "0::/../../kubepods/besteffort/pod\(Self.uid)/\(Self.c1)\n")
        var resolver = IdentityResolver(hostPaths: host.paths, hierarchy: CgroupHierarchy.detect(hostPaths: host.paths))
        let identity = try resolver.identity(pid: 9)
        #expect(identity.cgroup == Self.container)
        #expect(identity.containerID == Self.c1)
        // two host cgroups end with the same tail: kept as read, still parsed
        let ambiguous = resolver.identity(cgroupPath: "/../app.service")
        #expect(ambiguous.cgroup == "/../app.service")
        #expect(ambiguous.systemdUnit == "app.service")
    }

    @Test("a namespaced path of a cgroup newer than the last walk is resolved on a later call, not cached as read")
    func namespacePathsOfNewCgroupsResolveLater() async throws {
        let host = try FakeHost.v2("cgns-late")
        let tail = "/kubepods/besteffort/pod\(Self.uid)/\(CgroupPathIdentityTests.c2)"
        var resolver = IdentityResolver(hostPaths: host.paths, hierarchy: CgroupHierarchy.detect(hostPaths: host.paths))
        let early = resolver.identity(cgroupPath: "/../.." + tail)
        #expect(early.cgroup == "/../.." + tail && early.containerID == CgroupPathIdentityTests.c2)
        #expect(resolver.cachedPaths == 0)
        try host.cgroup(tail)
        // the index walks again at most once a second: wait for that walk
        var resolved = resolver.identity(cgroupPath: "/../.." + tail)
        try await waitUntil("the new cgroup resolved by a later walk of the index") {
            resolved = resolver.identity(cgroupPath: "/../.." + tail)
            return resolved.cgroup == tail
        }
        #expect(resolver.cachedPaths == 1)
    }

    @Test func aMissingProcessIsAnErrorNamingIt() throws {
        let host = try FakeHost.v2("missing")
        var resolver = IdentityResolver(hostPaths: host.paths)
        #expect {
            try resolver.identity(pid: 4243)
        } throws: { error in
            guard let error = error as? IdentityError else { return false }
            return error.code == .noSuchProcess && error.input == "4243" && error.description.contains(host.paths.proc + "/4243/cgroup")
        }
    }

    @Test func aProcessWithoutAMemoryLineIsAnError() throws {
        let host = try FakeHost.hybrid("nomemory")
        try host.process(11, cgroup: "5:cpu,cpuacct:/x\n")
        var resolver = IdentityResolver(hostPaths: host.paths, hierarchy: CgroupHierarchy.detect(hostPaths: host.paths))
        #expect(throws: IdentityError(.noMemoryCgroup, input: "11", detail: host.paths.proc + "/11/cgroup has no memory cgroup line")) {
            try resolver.identity(pid: 11)
        }
    }

    @Test func hostRootsAreTrimmedAndValidated() throws {
        #expect(HostPaths(proc: "/host/proc/", cgroup: "/host/sys/fs/cgroup//") == HostPaths(proc: "/host/proc", cgroup: "/host/sys/fs/cgroup"))
        #expect(HostPaths(proc: "/").proc == "/")
        let host = try FakeHost("roots")
        try host.paths.validate()
        let missing = HostPaths(proc: host.base + "/nope", cgroup: host.paths.cgroup)
        #expect(throws: IdentityError.self) { try missing.validate() }
        do {
            try missing.validate()
        } catch {
            #expect(error.code == .badHostRoot && error.input == host.base + "/nope")
        }
    }

    @Test func probingAHostRootWithoutAMemoryHierarchyFindsNone() {
        #expect(CgroupHierarchy.probe(cgroupRoot: "/x", read: { _ in nil }) == nil)
        #expect(CgroupHierarchy.probe(cgroupRoot: "/x", read: { $0 == "/x/cgroup.controllers" ? "cpu io pids\n" : nil }) == nil)
        #expect(
            CgroupHierarchy.probe(cgroupRoot: "/x", read: { $0 == "/x/memory/memory.usage_in_bytes" ? "0" : nil })
                == CgroupHierarchy(mountPoint: "/x/memory", version: .v1))
    }

    @Test("pod metadata is looked up per call, so a pod the watch learns later shows up; host paths never ask")
    func podMetadataFillsInWhenKnown() {
        let directory = PodDirectory()
        var resolver = IdentityResolver(metadata: directory)
        #expect(resolver.identity(cgroupPath: Self.container).pod == nil)
        let pod = PodMetadata(name: "web-0", namespace: "shop", uid: Self.uid, container: "app")
        directory.add(pod)
        #expect(resolver.identity(cgroupPath: Self.container).pod == pod)
        #expect(resolver.cachedPaths == 1)
        let lookups = directory.lookups
        #expect(resolver.identity(cgroupPath: "/system.slice/nginx.service").pod == nil)
        #expect(directory.lookups == lookups)
    }

    @Test func theCacheIsBounded() {
        var resolver = IdentityResolver(capacity: 2)
        for i in 0..<5 { _ = resolver.identity(cgroupPath: "/system.slice/s\(i).service") }
        #expect(resolver.cachedPaths <= 2)
        #expect(resolver.identity(cgroupPath: "/system.slice/s0.service").systemdUnit == "s0.service")
    }

    @Test("run's sample and cgroup_sample lines carry the identity; trace lines stay as the trace format says")
    func sampleLinesCarryTheIdentity() throws {
        let host = try FakeHost.v2("lines")
        try host.cgroup(Self.container)
        let id = try host.inode(Self.container)
        let directory = PodDirectory()
        directory.add(PodMetadata(name: "web-0", namespace: "shop", uid: Self.uid, container: "app"))
        var resolver = RecordResolver(
            hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2), hostPaths: host.paths,
            metadata: directory)
        var formatter = SampleFormatter(clock: WallClock(offset: 0), origin: 0)
        let record = ProcessRecord(
            kind: .sample, pid: 7, monotonicNanoseconds: 1_000_000_000, cgroupID: id,
            memory: MemoryCounters(anon: 1, file: 2, shmem: 3, swap: 4), virtualSize: 10, limit: .unlimited, comm: "app")
        let cgroup = resolver.resolve(.process(record)).cgroup
        let identity = #""cgroup":"\#(Self.container)","container_id":"\#(Self.c1)","pod_uid":"\#(Self.uid)","qos":"besteffort","pod":"web-0","namespace":"shop","container":"app","anon":1"#
        #expect(formatter.eventLine(record, cgroup: cgroup).contains(identity))
        #expect(!formatter.traceLine(record, cgroup: cgroup).contains("container_id"))
        let aggregate = CgroupRecord(
            cgroupID: id, monotonicNanoseconds: 1_000_000_000, processCount: 1,
            memory: MemoryCounters(anon: 1, file: 2, shmem: 3, swap: 4), usage: 10, limit: .unlimited)
        #expect(formatter.eventLine(aggregate, cgroup: resolver.resolve(.cgroup(aggregate)).cgroup)
            .contains(#""container_id":"\#(Self.c1)""#))
    }

    @Test("a cgroup newer than the last walk is learnt from a process's path, only when the directory's inode is the id")
    func newCgroupsAreLearntFromProcessPaths() throws {
        let host = try FakeHost.v2("learn")
        var index = CgroupIndex(hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2))
        index.rescan(now: 1)
        try host.cgroup(Self.container)
        let id = try host.inode(Self.container)
        let missed = index.path(for: id, now: 2)
        #expect(missed == nil)
        let elsewhere = index.learn(path: "/elsewhere", for: id)
        let namespaced = index.learn(path: "/../x", for: id)
        let learnt = index.learn(path: Self.container, for: id)
        #expect(!elsewhere && !namespaced && learnt)
        let found = index.path(for: id, now: 3)
        #expect(found == Self.container)

        // the resolver learns it from a process record's /proc fallback, so the
        // cgroup's aggregate record right after names it
        var resolver = RecordResolver(
            hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2), hostPaths: host.paths)
        _ = resolver.cgroupPath(id: 1, pid: nil)  // the first walk, before the container's cgroup exists
        try host.cgroup("/kubepods/besteffort/pod\(Self.uid)/\(CgroupPathIdentityTests.c2)")
        let late = try host.inode("/kubepods/besteffort/pod\(Self.uid)/\(CgroupPathIdentityTests.c2)")
        try host.process(4321, cgroup: "0::/kubepods/besteffort/pod\(Self.uid)/\(CgroupPathIdentityTests.c2)\n")
        let fromProc = resolver.cgroup(id: late, pid: 4321, own: .unlimited)
        let byID = resolver.cgroup(id: late, pid: nil, own: .unlimited, now: 0)
        #expect(fromProc.path.hasSuffix(CgroupPathIdentityTests.c2) && byID.path == fromProc.path)
        #expect(fromProc.identity.containerID == CgroupPathIdentityTests.c2)
    }

    @Test func identifyWritesEveryKeyWithNullsForTheUnknown() {
        var line = JSONLine()
        line.addIdentity(TargetIdentity(cgroup: "/x"), nulls: true, labels: true)
        #expect(line.finish() == #"{"cgroup":"/x","runtime":null,"container_id":null,"pod_uid":null,"qos":null,"systemd_unit":null}"#)
        var withPod = JSONLine()
        let pod = PodMetadata(name: "p", namespace: "n", uid: "u", labels: ["app": "web"])
        withPod.addIdentity(TargetIdentity(cgroup: "/x", pod: pod), nulls: true, labels: true)
        #expect(withPod.finish().hasSuffix(#""pod":"p","namespace":"n","labels":{"app":"web"}}"#))
    }
}
