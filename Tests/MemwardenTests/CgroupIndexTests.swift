import Foundation
import Testing

@testable import MemwardenIdentity
@testable import MemwardenModel

/// The index against a cgroupfs-shaped directory tree in a temp dir (ids are
/// the directories' inode numbers, as on a real cgroupfs).
struct CgroupIndexTests {
    final class Tree {
        let root: String
        init(_ name: String) throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-cgfs-\(name)-\(getpid())").path
            try? FileManager.default.removeItem(atPath: root)
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: root) }

        func make(_ path: String, limit: String? = nil, file: String = "memory.max") throws {
            try FileManager.default.createDirectory(atPath: root + path, withIntermediateDirectories: true)
            if let limit { try limit.write(toFile: root + path + "/" + file, atomically: false, encoding: .utf8) }
        }

        func inode(_ path: String) throws -> UInt64 {
            let attributes = try FileManager.default.attributesOfItem(atPath: root + path)
            return (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
        }
    }

    @Test func resolvesIdsToPathsAndRescansOnAMiss() throws {
        let tree = try Tree("paths")
        try tree.make("/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-abc.scope")
        var index = CgroupIndex(hierarchy: CgroupHierarchy(mountPoint: tree.root, version: .v2))
        let id = try tree.inode("/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-abc.scope")
        #expect(index.path(for: id, now: 1) == "/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-abc.scope")
        #expect(index.path(for: try tree.inode(""), now: 2) == "/")

        // a cgroup created after the walk is found by the next walk, not before the interval
        try tree.make("/system.slice/new.service")
        let late = try tree.inode("/system.slice/new.service")
        #expect(index.path(for: late, now: 3) == nil)
        #expect(index.path(for: late, now: 3 + index.rescanInterval) == "/system.slice/new.service")
    }

    @Test func effectiveLimitIsTheLowestOfTheCgroupAndItsAncestors() throws {
        let tree = try Tree("limits")
        try tree.make("/kubepods", limit: "max\n")
        try tree.make("/kubepods/pod1", limit: "536870912\n")
        try tree.make("/kubepods/pod1/ctr", limit: "max\n")
        var index = CgroupIndex(hierarchy: CgroupHierarchy(mountPoint: tree.root, version: .v2))
        #expect(index.effectiveLimit(path: "/kubepods/pod1/ctr", own: .unlimited, now: 1) == .bytes(536_870_912))
        #expect(index.effectiveLimit(path: "/kubepods/pod1/ctr", own: .bytes(1 << 20), now: 1) == .bytes(1 << 20))
        #expect(index.effectiveLimit(path: "/kubepods", own: .unlimited, now: 1) == .unlimited)
        #expect(index.effectiveLimit(path: "/other", own: .unknown, now: 1) == .unknown)
    }

    @Test func v1LimitFilesAreRead() throws {
        let tree = try Tree("v1")
        try tree.make("/job", limit: "268435456\n", file: "memory.limit_in_bytes")
        try tree.make("/job/step", limit: "9223372036854771712\n", file: "memory.limit_in_bytes")
        var index = CgroupIndex(hierarchy: CgroupHierarchy(mountPoint: tree.root, version: .v1))
        #expect(index.effectiveLimit(path: "/job/step", own: .unlimited, now: 1) == .bytes(268_435_456))
    }

    @Test(arguments: [
        ("max\n", MemoryLimit.unlimited), ("1048576\n", .bytes(1_048_576)), ("9223372036854771712", .unlimited),
        ("garbage", .unknown), ("", .unknown),
    ])
    func parsesLimitFiles(text: String, expected: MemoryLimit) {
        #expect(CgroupIndex.parseLimit(text) == expected)
    }
}
