import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenIdentity
import MemwardenModel
import MemwardenTestSupport

/// containerd, ctr, runc and a static busybox: the real container tests need
/// all four (scripts/setup installs them). Elsewhere the tests skip with the
/// reason; under CI=true they run and fail on the missing piece.
enum ContainerTools {
    static func find(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where access("\(directory)/\(name)", X_OK) == 0 {
            return "\(directory)/\(name)"
        }
        return nil
    }

    static let missing: String? = {
        let absent = ["containerd", "ctr", "runc", "busybox"].filter { find($0) == nil }
        guard absent.isEmpty else {
            return "real container tests need \(absent.joined(separator: ", ")) (apt-get install containerd runc busybox-static)"
        }
        return nil
    }()

    static var enabled: Bool { KernelAccess.enabled && (KernelAccess.isCI || missing == nil) }
    static var comment: Comment { Comment(rawValue: KernelAccess.unavailableReason ?? missing ?? "containerd available") }

    /// scripts/busybox-oci-image, found from this file's place in the repository.
    static let imageScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/busybox-oci-image").path
}

/// Runs a short command to its end, with a deadline; its output (stdout then stderr).
@discardableResult
func runTool(_ executable: String, _ arguments: [String], seconds: Double = 60) throws -> String {
    let child = try ChildProcess(executable, arguments, stdout: .pipe, stderr: .pipe)
    let end = deadline(seconds: seconds)
    var lines: [String] = []
    while let line = child.stdout?.readLine(deadline: end) { lines.append(line) }
    while let line = child.stderr?.readLine(deadline: end) { lines.append(line) }
    guard let code = child.waitForExit(deadline: end) else {
        child.signal(SIGKILL)
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not end within \(seconds) s")
    }
    let output = lines.joined(separator: "\n")
    guard code == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) exited \(code): \(output)")
    }
    return output
}

/// A containerd of the test's own: root, state, socket, config and log in a
/// temp dir, the CRI plugin off, no registry (images come from tarballs).
final class TestContainerd {
    let directory: String
    let namespace = "memwarden-test"
    var socket: String { directory + "/containerd.sock" }
    private let daemon: ChildProcess
    private let ctrPath: String

    init() throws {
        guard let containerd = ContainerTools.find("containerd"), let ctr = ContainerTools.find("ctr") else {
            throw TestFailure(ContainerTools.missing ?? "containerd not found")
        }
        ctrPath = ctr
        var template = Array("/tmp/memwarden-containerd-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp: errno \(errno)") }
        directory = String(cString: made)
        let config = """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(directory)/containerd.sock"
            [ttrpc]
              address = ""
            [debug]
              address = ""
            [plugins."io.containerd.internal.v1.opt"]
              path = "\(directory)/opt"

            """
        try config.write(toFile: directory + "/config.toml", atomically: false, encoding: .utf8)
        // the log goes to a file: a pipe nobody reads would stall the daemon
        daemon = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" --config \"$1\" >\"$2\" 2>&1", containerd, directory + "/config.toml", directory + "/containerd.log"])
        let end = deadline(seconds: 30)
        while (try? runTool(ctrPath, ["--address", socket, "version"], seconds: 5)) == nil {
            if daemon.exitCodeIfEnded() != nil || monotonicNanoseconds() > end {
                let log = (try? String(contentsOfFile: directory + "/containerd.log", encoding: .utf8)) ?? ""
                stop()
                throw TestFailure("containerd did not answer on \(socket) within 30 s:\n\(log.suffix(2000))")
            }
            usleep(UInt32(100_000_000 / 1000))
        }
    }

    @discardableResult
    func ctr(_ arguments: [String]) throws -> String {
        try runTool(ctrPath, ["--address", socket, "--namespace", namespace] + arguments)
    }

    /// The host pid of a running task.
    func pid(of id: String) throws -> Int32 {
        let listing = try ctr(["tasks", "ls"])
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 3, fields[0] == id, let pid = Int32(fields[1]) { return pid }
        }
        throw TestFailure("no task \(id) in:\n\(listing)")
    }

    /// Kills and deletes a container's task and the container (runc removes its cgroup).
    func remove(_ id: String) {
        _ = try? ctr(["tasks", "kill", "--signal", "SIGKILL", id])
        let end = deadline(seconds: 20)
        while (try? ctr(["tasks", "delete", id])) == nil, monotonicNanoseconds() < end {
            usleep(UInt32(100_000_000 / 1000))
        }
        _ = try? ctr(["containers", "delete", id])
    }

    /// Stops the daemon and deletes everything it kept.
    func stop() {
        daemon.signal(SIGTERM)
        if daemon.waitForExit(deadline: deadline(seconds: 15)) == nil {
            daemon.signal(SIGKILL)
            daemon.waitForExit()
        }
        // a rootfs bind mount left behind by a crashed shim must not take the rm with it
        if let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) {
            for line in mounts.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count > 4, fields[4].hasPrefix(directory) { umount2(String(fields[4]), Int32(MNT_DETACH)) }
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The cgroup directories a container's process sits in, one per hierarchy,
/// read from its /proc/PID/cgroup; removes them bottom-up to (and including)
/// the component named `top`, once the container's processes are gone.
struct ContainerCgroups {
    var directories: [String]

    init(pid: Int32, top: String) throws {
        let lines = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8).split(separator: "\n")
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).split(separator: "\n")
        directories = []
        for line in lines {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].contains(top) else { continue }
            let controllers = fields[1].split(separator: ",")
            let mount = mounts.first { mount in
                let halves = mount.split(separator: " - ", maxSplits: 1)
                guard halves.count == 2 else { return false }
                let tail = halves[1].split(separator: " ")
                if controllers.isEmpty { return tail.first == "cgroup2" }
                guard tail.first == "cgroup", tail.count >= 3 else { return false }
                let options = tail[2].split(separator: ",")
                return controllers.allSatisfy { options.contains($0) }
            }
            guard let mount, case let point = mount.split(separator: " - ")[0].split(separator: " "), point.count > 4 else { continue }
            var directory = String(point[4]) + String(fields[2])
            // leaf first, then each parent up to the test's own top directory
            while directory.contains("/" + top) {
                directories.append(directory)
                directory = String(directory[..<directory.lastIndex(of: "/")!])
            }
        }
    }

    /// Removes them (rmdir fails with EBUSY while a process is still inside);
    /// returns those that could not be removed.
    func remove() -> [String] {
        var left: [String] = []
        for directory in directories {
            let end = deadline(seconds: 10)
            while rmdir(directory) != 0 && errno != ENOENT {
                if monotonicNanoseconds() > end {
                    left.append(directory)
                    break
                }
                usleep(UInt32(50_000_000 / 1000))
            }
        }
        return left
    }
}

@Suite(.serialized, .enabled(if: ContainerTools.enabled, ContainerTools.comment))
struct ContainerIdentityTests {
    static let podUID = "64b622fd-1603-4567-9c37-e8df29f5d649"

    static func randomContainerID() -> String {
        (0..<4).map { _ in
            let hex = String(UInt64.random(in: .min ... .max), radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    @Test("real containerd containers: identify --pid and run's samples name the full id, pod and cgroup")
    func containerIsIdentified() throws {
        if let missing = ContainerTools.missing { throw TestFailure(missing) }
        let memwarden = try AgentCommandTests.memwarden()
        guard let hierarchy = CgroupHierarchy.detect(),
            let own = ProcCgroup.memoryCgroupPath(pid: getpid(), version: hierarchy.version)
        else { throw TestFailure("no memory cgroup hierarchy, or this process's memory cgroup is unreadable") }

        let containerd = try TestContainerd()
        defer { containerd.stop() }
        let image = containerd.directory + "/busybox.tar"
        try runTool("/bin/bash", [ContainerTools.imageScript, image, "localhost/memwarden/busybox:test"])
        try containerd.ctr(["images", "import", "--snapshotter", "native", image])

        // the kubelet's cgroupfs shape, below this test's own memory cgroup (runc puts a
        // relative path below its own cgroup, which is the test's)
        let id = Self.randomContainerID()
        let top = "memwarden-ctr-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let relative = "\(top)/kubepods/burstable/pod\(Self.podUID)/\(id)"
        let expected = (own == "/" ? "" : own) + "/" + relative
        let limit = 64 * mib

        let agent = try ChildProcess(memwarden, ["run", "--samples", "--listen", "127.0.0.1:0", "--stats-interval", "60"], stdout: .pipe, stderr: .pipe)
        defer {
            agent.signal(SIGTERM)
            #expect(agent.waitForExit(deadline: deadline(seconds: 30)) == 0, "the agent did not exit 0 within 30 s of SIGTERM")
        }
        try AgentCommandTests.waitUntilAttached(agent)

        // dd's 40 MiB block is memory the container's process touches, sampled at each MiB
        try containerd.ctr([
            "run", "--detach", "--snapshotter", "native", "--memory-limit", "\(limit)", "--cgroup", relative,
            "localhost/memwarden/busybox:test", id, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=40M count=1; exec sleep 600",
        ])
        var cgroups: ContainerCgroups?
        defer {
            containerd.remove(id)
            let left = cgroups?.remove() ?? []
            #expect(left.isEmpty, "cgroups left behind: \(left)")
        }
        let pid = try containerd.pid(of: id)
        cgroups = try ContainerCgroups(pid: pid, top: top)
        #expect(cgroups?.directories.contains(hierarchy.mountPoint + expected) == true, "the container is not in \(expected)")

        // identify --pid: one JSON object naming the container
        let printed = try runTool(memwarden, ["identify", "--pid", "\(pid)"])
        let identity = try #require(AgentCommandTests.json(printed), "not one JSON object: \(printed)")
        #expect(identity["cgroup"] as? String == expected)
        #expect(identity["container_id"] as? String == id)
        #expect(identity["pod_uid"] as? String == Self.podUID)
        #expect(identity["qos"] as? String == "burstable")
        #expect(identity["runtime"] is NSNull, "the cgroupfs driver's bare id does not say the runtime")
        #expect(identity["systemd_unit"] is NSNull)

        // run's sample lines for the container's processes carry the same identity and the limit
        var sample: [String: Any]?
        var cgroupSample: [String: Any]?
        let end = deadline(seconds: 30)
        while sample == nil || cgroupSample == nil, let line = agent.stdout?.readLine(deadline: end) {
            guard line.contains(#""container_id":"\#(id)""#), let object = AgentCommandTests.json(line) else { continue }
            // dd's samples: the process that touches the memory, long after runc set the limit
            if object["type"] as? String == "sample", object["comm"] as? String == "dd", sample == nil { sample = object }
            // the aggregate once dd's block is in it (runc's first records come before the limit)
            if object["type"] as? String == "cgroup_sample", (object["anon"] as? Int ?? 0) >= 32 << 20, cgroupSample == nil {
                cgroupSample = object
            }
        }
        let process = try #require(sample, "no sample line of dd naming container \(id) within 30 s")
        #expect(process["cgroup"] as? String == expected)
        #expect(process["pod_uid"] as? String == Self.podUID)
        #expect(process["qos"] as? String == "burstable")
        #expect(process["limit"] as? Int == Int(limit))
        let aggregate = try #require(cgroupSample, "no cgroup_sample line of 32 MiB or more naming container \(id) within 30 s")
        #expect(aggregate["cgroup"] as? String == expected)
        #expect(aggregate["limit"] as? Int == Int(limit))

        // a second container below a containerd namespace's name (ctr's own default cgroup
        // shape, /<namespace>/<id>): the path says the runtime
        let second = Self.randomContainerID()
        let secondRelative = "\(top)/k8s.io/\(second)"
        try containerd.ctr(["run", "--detach", "--snapshotter", "native", "--cgroup", secondRelative, "localhost/memwarden/busybox:test", second, "sleep", "600"])
        var secondCgroups: ContainerCgroups?
        defer {
            containerd.remove(second)
            let left = secondCgroups?.remove() ?? []
            #expect(left.isEmpty, "cgroups left behind: \(left)")
        }
        let secondPid = try containerd.pid(of: second)
        secondCgroups = try ContainerCgroups(pid: secondPid, top: top)
        // both containers share the top directory: the first container's cleanup removes it last
        secondCgroups?.directories.removeAll { $0.hasSuffix("/" + top) }
        let secondIdentity = try #require(AgentCommandTests.json(try runTool(memwarden, ["identify", "--pid", "\(secondPid)"])))
        #expect(secondIdentity["cgroup"] as? String == (own == "/" ? "" : own) + "/" + secondRelative)
        #expect(secondIdentity["runtime"] as? String == "containerd")
        #expect(secondIdentity["container_id"] as? String == second)
        #expect(secondIdentity["pod_uid"] is NSNull)
    }
}
