import Testing

@_spi(Fuzz) @testable import MemwardenIdentity

struct CgroupHierarchyTests {
    static let hybrid = """
        25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
        30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
        31 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
        """
    static let unified = """
        35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        """

    @Test func hybridUsesTheV1MemoryHierarchy() {
        let found = CgroupHierarchy.parse(mountinfo: Self.hybrid, cgroupRoot: nil, controllers: { _ in "" })
        #expect(found == CgroupHierarchy(mountPoint: "/sys/fs/cgroup/memory", version: .v1))
        #expect(found?.limitFile == "memory.limit_in_bytes")
    }

    @Test func unifiedWithTheMemoryControllerUsesV2() {
        let found = CgroupHierarchy.parse(mountinfo: Self.unified, cgroupRoot: nil, controllers: { _ in "cpuset cpu io memory pids\n" })
        #expect(found == CgroupHierarchy(mountPoint: "/sys/fs/cgroup", version: .v2))
        #expect(found?.limitFile == "memory.max")
    }

    @Test func cgroup2WithoutTheMemoryControllerIsNotTheMemoryHierarchy() {
        let found = CgroupHierarchy.parse(mountinfo: Self.unified, cgroupRoot: nil, controllers: { _ in "cpu io pids" })
        #expect(found == nil)
    }

    @Test func hostRootIsRelocatedForContainers() {
        let found = CgroupHierarchy.parse(mountinfo: Self.hybrid, cgroupRoot: "/host/sys/fs/cgroup", controllers: { _ in "" })
        #expect(found?.mountPoint == "/host/sys/fs/cgroup/memory")
    }

    @Test func unescapesMountinfoOctal() {
        #expect(CgroupHierarchy.unescape(#"/mnt/with\040space"#) == "/mnt/with space")
        #expect(CgroupHierarchy.unescape("/plain") == "/plain")
    }

    @Test(arguments: [
        ("12:memory:/kubepods/burstable/pod1/abc\n0::/\n", CgroupHierarchy.Version.v1, "/kubepods/burstable/pod1/abc"),
        ("4:memory:/process_api/9e\n0::/\n", .v1, "/process_api/9e"),
        ("0::/system.slice/nginx.service\n", .v2, "/system.slice/nginx.service"),
        ("5:cpu,cpuacct:/x\n0::/../../sibling\n", .v2, "/../../sibling"),
    ])
    func procCgroupPicksTheMemoryLine(text: String, version: CgroupHierarchy.Version, expected: String) {
        #expect(ProcCgroup.parse(text, version: version) == expected)
    }

    @Test func procCgroupWithoutAMemoryLineIsUnknown() {
        #expect(ProcCgroup.parse("5:cpu:/x\n", version: .v1) == nil)
    }
}
