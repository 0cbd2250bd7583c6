import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenModel
import MemwardenTestSupport

/// `memwarden identify` and the identity on `memwarden replay`'s events, run
/// as a user runs them. No privileges needed: host roots are faked in temp dirs.
struct IdentifyCommandTests {
    static let c1 = "1339b927ae75ad1197e9d4ec3c7499c37e6c57d662bd57e516af886be90b175d"
    static let uid = "64b622fd-1603-4567-9c37-e8df29f5d649"
    static let containerd =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uid.replacingOccurrences(of: "-", with: "_")).slice/cri-containerd-\(c1).scope"

    /// A temp dir removed at the end.
    final class Scratch {
        let path: String
        init(_ name: String) throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-\(name)-\(getpid())").path
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }

        func write(_ text: String, to relative: String) throws {
            let file = path + relative
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: file, atomically: false, encoding: .utf8)
        }
    }

    /// Runs memwarden to its end: exit code, stdout lines, stderr lines.
    static func memwarden(_ arguments: [String]) throws -> (code: Int32, out: [String], err: [String]) {
        let child = try ChildProcess(try AgentCommandTests.memwarden(), arguments, stdout: .pipe, stderr: .pipe)
        let end = deadline(seconds: 60)
        var out: [String] = []
        var err: [String] = []
        while let line = child.stdout?.readLine(deadline: end) { out.append(line) }
        while let line = child.stderr?.readLine(deadline: end) { err.append(line) }
        guard let code = child.waitForExit(deadline: end) else { throw TestFailure("memwarden \(arguments) did not end within 60 s") }
        return (code, out, err)
    }

    @Test("identify --cgroup-path prints one object with every key, null where the path does not say")
    func identifiesAPath() throws {
        let result = try Self.memwarden(["identify", "--cgroup-path", Self.containerd])
        #expect(result.code == 0 && result.out.count == 1, "\(result)")
        let object = try #require(AgentCommandTests.json(result.out.first ?? ""))
        #expect(object["cgroup"] as? String == Self.containerd)
        #expect(object["runtime"] as? String == "containerd")
        #expect(object["container_id"] as? String == Self.c1)
        #expect(object["pod_uid"] as? String == Self.uid)
        #expect(object["qos"] as? String == "burstable")
        #expect(object["systemd_unit"] is NSNull)

        let unknown = try Self.memwarden(["identify", "--cgroup-path", "/some/unknown/shape"])
        let plain = try #require(AgentCommandTests.json(unknown.out.first ?? ""))
        #expect(Set(plain.keys) == ["cgroup", "runtime", "container_id", "pod_uid", "qos", "systemd_unit"])
        #expect(plain.filter { !($0.value is NSNull) }.keys.sorted() == ["cgroup"])
    }

    @Test("identify --pid reads the host's procfs and cgroupfs from --host-proc and --host-cgroup")
    func identifiesAProcessUnderHostRoots() throws {
        let host = try Scratch("identify-host")
        try host.write("0\n", to: "/host/sys/fs/cgroup/memory/memory.usage_in_bytes")
        try FileManager.default.createDirectory(
            atPath: host.path + "/host/sys/fs/cgroup/memory/kubepods/besteffort/pod\(Self.uid)/\(Self.c1)", withIntermediateDirectories: true)
        try host.write(
            "4:memory:/kubepods/besteffort/pod\(Self.uid)/\(Self.c1)\n0::/system.slice/containerd.service\n", to: "/host/proc/4242/cgroup")
        let roots = ["--host-proc", host.path + "/host/proc/", "--host-cgroup", host.path + "/host/sys/fs/cgroup"]
        let byPid = try Self.memwarden(["identify", "--pid", "4242"] + roots)
        let object = try #require(AgentCommandTests.json(byPid.out.first ?? ""), "\(byPid)")
        #expect(object["container_id"] as? String == Self.c1)
        #expect(object["qos"] as? String == "besteffort")
        #expect(object["runtime"] is NSNull)

        // a directory under the host cgroupfs names the same cgroup
        let directory = host.path + "/host/sys/fs/cgroup/memory/kubepods/besteffort/pod\(Self.uid)/\(Self.c1)"
        let byDirectory = try Self.memwarden(["identify", "--cgroup-path", directory] + roots)
        let same = try #require(AgentCommandTests.json(byDirectory.out.first ?? ""), "\(byDirectory)")
        #expect(same["cgroup"] as? String == "/kubepods/besteffort/pod\(Self.uid)/\(Self.c1)")
        #expect(same["pod_uid"] as? String == Self.uid)
    }

    @Test("bad input: one line on stderr naming it, no JSON, nonzero exit")
    func badInputIsNamed() throws {
        let gone = try Self.memwarden(["identify", "--pid", "2147483646"])
        #expect(gone.code == 1 && gone.out.isEmpty)
        #expect(gone.err.count == 1 && gone.err[0].contains("no process 2147483646"), "\(gone.err)")

        let roots = try Self.memwarden(["identify", "--pid", "1", "--host-proc", "/nonexistent/proc"])
        #expect(roots.code == 1 && roots.err.first?.contains("/nonexistent/proc") == true, "\(roots.err)")

        for arguments in [["identify"], ["identify", "--cgroup-path", "kubepods/x"], ["identify", "--pid", "0"], ["identify", "--pid", "1", "--cgroup-path", "/"]] {
            let result = try Self.memwarden(arguments)
            #expect(result.code != 0 && result.out.isEmpty, "\(arguments) → \(result)")
        }
    }

    @Test("replay's leak events carry the identity their cgroup path gives")
    func replayEventsCarryIdentity() throws {
        let scratch = try Scratch("replay-identity")
        // a steady 2 MiB/s heap leak in a containerd container, a systemd service and an unknown shape,
        // each under a 1 GiB limit it would reach after ~8 minutes: urgent after six
        var lines: [String] = []
        for second in 0..<420 {
            for (pid, cgroup) in [(Int32(42), Self.containerd), (43, "/system.slice/app.service"), (44, "/jobs/7")] {
                let anon = (50 + 2 * second) << 20
                lines.append(
                    #"{"t":\#(second),"pid":\#(pid),"comm":"app","cgroup":"\#(cgroup)","anon":\#(anon),"file":52428800,"shmem":0,"swap":0,"vsz":\#(anon + (200 << 20)),"limit":1073741824}"#)
            }
        }
        try scratch.write(lines.joined(separator: "\n") + "\n", to: "/leak.jsonl")
        let result = try Self.memwarden(["replay", scratch.path + "/leak.jsonl"])
        #expect(result.code == 0, "\(result.err)")
        let events = result.out.compactMap(AgentCommandTests.json).filter { $0["type"] as? String == "leak.suspected" }
        func event(_ pid: Int) -> [String: Any]? { events.first { $0["pid"] as? Int == pid } }
        let container = try #require(event(42), "no leak.suspected for the container's process")
        #expect(container["runtime"] as? String == "containerd")
        #expect(container["container_id"] as? String == Self.c1)
        #expect(container["pod_uid"] as? String == Self.uid)
        let service = try #require(event(43), "no leak.suspected for the service's process")
        #expect(service["systemd_unit"] as? String == "app.service")
        #expect(service["runtime"] as? String == "systemd")
        let unknown = try #require(event(44), "no leak.suspected for the unknown shape's process")
        #expect(unknown["cgroup"] as? String == "/jobs/7")
        #expect(unknown["runtime"] == nil && unknown["container_id"] == nil && unknown["systemd_unit"] == nil)
    }
}
