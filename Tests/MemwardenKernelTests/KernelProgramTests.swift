import Testing

#if canImport(Glibc)
import Glibc
#endif
import MemwardenAgent
import MemwardenKernel
import MemwardenModel

/// The BPF program on this machine's real kernel. Serialized: each test loads
/// its own copy of the program and watches its own child processes by pid.
@Suite(.serialized, .enabled(if: KernelAccess.enabled, KernelAccess.comment))
struct KernelProgramTests {
    @Test("the object loads, passes the verifier, attaches and sees events")
    func loadsAndAttaches() throws {
        let monitor = try KernelMonitor()
        let simulator = try Simulator()
        defer { simulator.kill() }
        try simulator.run("touch 4")
        let log = RecordLog(monitor)
        let seen = log.waitFor(seconds: 10) { $0.process?.pid == simulator.pid }
        #expect(seen != nil, "no record for the child within 10 s")
        let counters = monitor.counters()
        #expect(counters.events > 0)
        #expect(counters.processSamples > 0)
        #expect(counters.processesTracked > 0)
    }

    @Test("a child touching 64 MiB of anonymous memory is reported with its pid, within 1 MiB")
    func anonymousGrowthIsReported() throws {
        let monitor = try KernelMonitor()
        let log = RecordLog(monitor)
        let simulator = try Simulator()
        defer { simulator.kill() }
        // the child's own start (exec, runtime loading) has samples of its own: count after it
        log.poll(seconds: 0.5)
        let before = log.processRecords(pid: simulator.pid).count
        try simulator.run("touch 64")
        let truth = try statusBytes(pid: simulator.pid, "RssAnon:")
        #expect(truth >= 64 * mib)
        let sample = log.waitFor(seconds: 10) {
            guard let p = $0.process, p.pid == simulator.pid else { return false }
            return p.memory.anon + mib > truth
        }?.process
        let reported = try #require(sample, "no sample within 1 MiB of RssAnon \(truth) within 10 s")
        #expect(reported.memory.anon <= truth + mib)
        #expect(reported.comm == "leaksim")
        #expect(reported.kind == .sample)
        // one sample per MiB of growth at most (1 MiB step), not one per page
        log.poll(seconds: 0.5)
        let samples = log.processRecords(pid: simulator.pid).dropFirst(before).filter { $0.kind == .sample }
        #expect(samples.count >= 32, "\(samples.count) samples for 64 MiB")
        #expect(samples.count <= 64 + 4, "\(samples.count) samples for 64 MiB")
    }

    @Test("a thread that exits keeps its process's state; the process exiting drops it")
    func threadExitIsNotProcessExit() throws {
        let monitor = try KernelMonitor()
        let log = RecordLog(monitor)
        let simulator = try Simulator()
        try simulator.run("touch 16")
        try simulator.run("thread 16")
        _ = log.waitFor(seconds: 2) { _ in false }
        let afterThread = try #require(monitor.processState(pid: simulator.pid), "state gone after a thread exit")
        #expect(afterThread.memory.anon >= 31 * mib)
        #expect(!log.processRecords(pid: simulator.pid).contains { $0.kind == .exit })
        // the state carries on: the next growth builds on the thread's memory
        try simulator.run("touch 16")
        let grown = log.waitFor(seconds: 10) {
            guard let p = $0.process, p.pid == simulator.pid else { return false }
            return p.memory.anon >= 47 * mib
        }
        #expect(grown != nil, "no sample with the thread's and the new memory within 10 s")

        simulator.process.send("exit")
        #expect(simulator.process.waitForExit() == 0)
        let exit = log.waitFor(seconds: 10) { $0.process?.pid == simulator.pid && $0.process?.kind == .exit }
        #expect(exit != nil, "no exit record within 10 s")
        #expect(monitor.processState(pid: simulator.pid) == nil)
    }

    @Test("exec resets the baseline and the name")
    func execResets() throws {
        let monitor = try KernelMonitor()
        let log = RecordLog(monitor)
        let simulator = try Simulator()
        defer { simulator.kill() }
        try simulator.run("touch 64")
        let before = try #require(
            log.waitFor(seconds: 10) { ($0.process?.pid == simulator.pid) && $0.process!.memory.anon >= 63 * mib }?.process)
        let start = try #require(monitor.processState(pid: simulator.pid)).startMonotonicNanoseconds
        simulator.process.send("exec /bin/sleep 60")
        let exec = try #require(
            log.waitFor(seconds: 10) {
                guard let p = $0.process, p.pid == simulator.pid else { return false }
                return p.kind == .exec && p.monotonicNanoseconds > before.monotonicNanoseconds
            }?.process,
            "no exec record within 10 s")
        #expect(exec.comm == "sleep")
        #expect(exec.memory.anon < 8 * mib, "exec record kept the old program's memory: \(exec.memory.anon)")
        #expect(exec.monotonicNanoseconds > before.monotonicNanoseconds)
        let state = try #require(monitor.processState(pid: simulator.pid))
        #expect(state.comm == "sleep")
        #expect(state.startMonotonicNanoseconds > start)
        #expect(state.memory.anon < 8 * mib)
    }

    @Test("curr=0 updates (another process faulting our memory) are charged to the owner, not the current task")
    func remoteFaultsGoToTheOwner() throws {
        let monitor = try KernelMonitor()
        let log = RecordLog(monitor)
        let simulator = try Simulator()
        defer { simulator.kill() }
        // the owner's own faults bind its mm to it
        try simulator.run("touch 2")
        _ = log.waitFor(seconds: 10) { $0.process?.pid == simulator.pid }
        let answer = try simulator.run("reserve 64")
        let address = try #require(Simulator.field("addr", in: answer).flatMap { UInt(String($0.dropFirst(2)), radix: 16) })
        let ownBefore = try statusBytes(pid: getpid(), "RssAnon:")

        // this process writes into the child's memory through /proc/PID/mem: the
        // faults run here, in the writer's context, on the child's mm (curr=0)
        let memory = open("/proc/\(simulator.pid)/mem", O_RDWR)
        #expect(memory >= 0, "open /proc/\(simulator.pid)/mem: errno \(errno)")
        defer { close(memory) }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        for offset in stride(from: 0, to: 64 << 20, by: 1 << 20) {
            let written = chunk.withUnsafeBytes { pwrite(memory, $0.baseAddress, $0.count, off_t(address) + off_t(offset)) }
            #expect(written == 1 << 20, "pwrite into the child: errno \(errno)")
        }
        let charged = log.waitFor(seconds: 10) {
            guard let p = $0.process, p.pid == simulator.pid else { return false }
            return p.memory.anon >= 64 * mib
        }
        #expect(charged != nil, "the owner was not charged with the 64 MiB written into it")
        // ...and the writer was not: its state stays near its real RSS
        let ownAfter = try statusBytes(pid: getpid(), "RssAnon:")
        let ownState = monitor.processState(pid: getpid())
        if let ownState {
            #expect(ownState.memory.anon < max(ownBefore, ownAfter) + 16 * mib,
                    "the writing process was charged \(ownState.memory.anon) anon, really has \(ownAfter)")
        }
        #expect(!log.processRecords(pid: getpid()).contains { $0.memory.anon >= ownAfter + 48 * mib })
        #expect(monitor.counters().events > 0)
    }

    @Test("counters move, and a ring-buffer overflow is counted, not silent")
    func overflowIsCounted() throws {
        var configuration = KernelConfiguration()
        configuration.ringBufferBytes = UInt32(sysconf(Int32(_SC_PAGESIZE)))
        configuration.stepBytes = 4096
        let monitor = try KernelMonitor(configuration: configuration)
        let simulator = try Simulator()
        defer { simulator.kill() }
        // nobody drains while 16 Ki samples are produced into a one-page ring
        try simulator.run("touch 64")
        let counters = monitor.counters()
        #expect(counters.events > 16_000)
        #expect(counters.processSamples > 0)
        #expect(counters.ringBufferDrops > 0, "ring buffer overflowed silently: \(counters)")
        #expect(counters.coalesced <= counters.events)
        _ = monitor.drain()
    }
}
