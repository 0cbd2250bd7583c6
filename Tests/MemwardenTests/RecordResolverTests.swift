import Testing

@testable import MemwardenIdentity
@testable import MemwardenModel

/// The Identity stage's resolver: each record's cgroup path, owner and
/// limit, once, for every later stage.
struct RecordResolverTests {
    static let container = IdentityResolverTests.container
    static let pod = "/kubepods/besteffort/pod\(IdentityResolverTests.uid)"

    static func sample(cgroupID: UInt64, own: MemoryLimit = .unlimited, pid: Int32 = 7) -> KernelRecord {
        .process(
            ProcessRecord(
                kind: .sample, pid: pid, monotonicNanoseconds: 1_000_000_000, cgroupID: cgroupID,
                memory: MemoryCounters(anon: 1, file: 2, shmem: 3, swap: 4), virtualSize: 10, limit: own, comm: "app"))
    }

    @Test("a record gets its cgroup's path, owner with the pod's metadata, and the lowest limit of it and its ancestors")
    func recordsAreResolvedWithIdentityAndEffectiveLimit() throws {
        let host = try FakeHost.v2("resolve")
        try host.cgroup(Self.container)
        try host.write("268435456\n", to: "/host/sys/fs/cgroup" + Self.pod + "/memory.max")
        let id = try host.inode(Self.container)
        let pods = PodDirectory()
        pods.add(PodMetadata(name: "web-0", namespace: "shop", uid: IdentityResolverTests.uid, container: "app"))
        var resolver = RecordResolver(
            hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2), hostPaths: host.paths, metadata: pods)
        let resolved = resolver.resolve(Self.sample(cgroupID: id, own: .bytes(512 << 20)))
        #expect(resolved.cgroup.path == Self.container)
        #expect(resolved.cgroup.identity.containerID == IdentityResolverTests.c1)
        #expect(resolved.cgroup.identity.pod?.name == "web-0")
        // the pod's 256 MiB bounds the container's own 512 MiB
        #expect(resolved.cgroup.limit == 256 << 20)
        // a cgroup record and a verdict of the same cgroup get the same facts
        let aggregate = KernelRecord.cgroup(
            CgroupRecord(
                cgroupID: id, monotonicNanoseconds: 1, processCount: 1,
                memory: MemoryCounters(anon: 1, file: 0, shmem: 0, swap: 0), usage: 1, limit: .bytes(512 << 20)))
        #expect(resolver.resolve(aggregate).cgroup == resolved.cgroup)
    }

    @Test("a pod not known yet is looked up on every record; once known, from the cache for a second, then afresh")
    func resolutionIsCachedPerCgroupForASecond() throws {
        let host = try FakeHost.v2("resolve-cache")
        try host.cgroup(Self.container)
        let id = try host.inode(Self.container)
        let pods = PodDirectory()
        var resolver = RecordResolver(
            hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2), hostPaths: host.paths, metadata: pods)
        // a pod the watch does not know yet is looked up again on the next record
        let first = resolver.resolve(Self.sample(cgroupID: id), now: 10_000_000_000)
        #expect(first.cgroup.identity.pod == nil)
        pods.add(PodMetadata(name: "web-0", namespace: "shop", uid: IdentityResolverTests.uid, container: "app"))
        let next = resolver.resolve(Self.sample(cgroupID: id), now: 10_001_000_000)
        #expect(next.cgroup.identity.pod?.name == "web-0")
        // once known, records within the second take it from the cache...
        let lookups = pods.lookups
        pods.add(PodMetadata(name: "web-0", namespace: "shop", uid: IdentityResolverTests.uid, container: "renamed"))
        for step in 1...100 {
            _ = resolver.resolve(Self.sample(cgroupID: id), now: 10_001_000_000 + UInt64(step) * 9_000_000)
        }
        #expect(pods.lookups == lookups)
        // ...and the first record after it reads the metadata again
        let later = resolver.resolve(Self.sample(cgroupID: id), now: 11_001_000_000)
        #expect(later.cgroup.identity.pod?.container == "renamed")
        // a different own limit (the cgroup's memory.max was changed) is read at once
        let resized = resolver.resolve(Self.sample(cgroupID: id, own: .bytes(64 << 20)), now: 11_000_000_001)
        #expect(resized.cgroup.limit == 64 << 20)
    }

    @Test("an unknown cgroup is not cached: found through /proc on a later record, by id after that")
    func unknownCgroupsAreTriedAgain() throws {
        let host = try FakeHost.v2("resolve-late")
        var resolver = RecordResolver(
            hierarchy: CgroupHierarchy(mountPoint: host.paths.cgroup, version: .v2), hostPaths: host.paths)
        let missing = resolver.resolve(Self.sample(cgroupID: 999_999, pid: 4321), now: 1)
        #expect(missing.cgroup.path.isEmpty)
        #expect(missing.cgroup.limit == nil)
        try host.cgroup(Self.container)
        let id = try host.inode(Self.container)
        try host.process(4321, cgroup: "0::\(Self.container)\n")
        let found = resolver.resolve(Self.sample(cgroupID: id, pid: 4321), now: 2)
        #expect(found.cgroup.path == Self.container)
        let byID = resolver.cgroup(id: id, pid: nil, own: .unlimited, now: 3)
        #expect(byID.path == Self.container)
    }
}
