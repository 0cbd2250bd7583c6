import Foundation
import MemwardenAgent
import MemwardenModel
import MemwardenResponse
import Testing

/// `memwarden restore` on a cgroupfs-shaped temp tree, as an operator runs it
/// after removing the agent. Needs no privileges: the tree is plain files.
@Suite struct RestoreCommandTests {
    func group(_ root: String, _ name: String, high: String) throws -> (directory: String, inode: UInt64) {
        let directory = root + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (file, text) in [
            ("cgroup.controllers", "memory\n"), ("memory.current", "1048576\n"), ("memory.max", "max\n"), ("memory.high", high),
        ] {
            try text.write(toFile: directory + "/" + file, atomically: false, encoding: .utf8)
        }
        let inode = try #require(FileManager.default.attributesOfItem(atPath: directory)[.systemFileNumber] as? UInt64)
        return (directory, inode)
    }

    @Test("restores what the state file records, leaves others' values alone, exits 1 only for what it could not restore")
    func restoresRecords() throws {
        let memwarden = try #require(ChildProcess.sibling("memwarden"), "memwarden not built next to the tests")
        let root = FileManager.default.temporaryDirectory.path + "/memwarden-restore-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ours = try group(root, "ours", high: "524288")
        let theirs = try group(root, "theirs", high: "999424")
        let broken = try group(root, "broken", high: "8192")
        let stateFile = ResponseStateFile(path: root + "/state/state.json")
        func record(_ name: String, _ g: (directory: String, inode: UInt64), original: String, written: String) -> ResponseStateRecord {
            ResponseStateRecord(
                key: "cgroup:/\(name)", cgroup: "/\(name)", directory: g.directory, inode: g.inode, original: original,
                written: written, rule: "r", sinceEpochNanoseconds: 1)
        }
        try stateFile.save([
            record("ours", ours, original: "max", written: "524288"),
            record("theirs", theirs, original: "max", written: "524288"),
        ])

        let dry = try ChildProcess(memwarden, ["restore", "--host-cgroup", root, "--state-file", stateFile.path, "--dry-run"], stdout: .pipe, stderr: .pipe)
        var dryLines: [String] = []
        while let line = dry.stdout?.readLine(deadline: deadline(seconds: 30)) { dryLines.append(line) }
        #expect(dry.waitForExit() == 0)
        #expect(dryLines.count == 2 && dryLines.allSatisfy { $0.contains("\"reason\":\"dry_run\"") }, "\(dryLines)")
        #expect(try String(contentsOfFile: ours.directory + "/memory.high", encoding: .utf8) == "524288")

        let run = try ChildProcess(memwarden, ["restore", "--host-cgroup", root, "--state-file", stateFile.path], stdout: .pipe, stderr: .pipe)
        var lines: [String] = []
        while let line = run.stdout?.readLine(deadline: deadline(seconds: 30)) { lines.append(line) }
        #expect(run.waitForExit() == 0)
        #expect(lines.contains { $0.contains("\"type\":\"response.restore\"") && $0.contains("\"cgroup\":\"/ours\"") })
        #expect(lines.contains { $0.contains("\"type\":\"response.skipped\"") && $0.contains("\"reason\":\"external_write\"") })
        #expect(try String(contentsOfFile: ours.directory + "/memory.high", encoding: .utf8) == "max")
        #expect(try String(contentsOfFile: theirs.directory + "/memory.high", encoding: .utf8) == "999424")
        #expect(stateFile.load().records.isEmpty)

        // a memory.high that cannot be written (here: a directory in its place) stays recorded
        try FileManager.default.removeItem(atPath: broken.directory + "/memory.high")
        try FileManager.default.createDirectory(atPath: broken.directory + "/memory.high", withIntermediateDirectories: false)
        try stateFile.save([record("broken", broken, original: "max", written: "8192")])
        let failing = try ChildProcess(memwarden, ["restore", "--host-cgroup", root, "--state-file", stateFile.path], stdout: .pipe, stderr: .pipe)
        while failing.stdout?.readLine(deadline: deadline(seconds: 30)) != nil {}
        #expect(failing.waitForExit() == 1)
        #expect(stateFile.load().records.count == 1)
    }
}
