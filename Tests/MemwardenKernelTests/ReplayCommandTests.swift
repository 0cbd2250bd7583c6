import Foundation
import Testing

/// `memwarden replay` as a user runs it, on a trace recorded where no cgroup
/// set a limit: the live agent judged it against the node's memory, and
/// `--node-memory` lets replay do the same. No privileges needed.
struct ReplayCommandTests {
    @Test("--node-memory: a leak with no limit of its own is forecast against the node, as live; without it, it waits for patience; a bad size is named")
    func nodeMemoryIsTheLimitOfTargetsWithoutOne() throws {
        let scratch = try IdentifyCommandTests.Scratch("replay-node-memory")
        // 2 MiB/s for 7 minutes from 50 MiB, no "limit" field: at a 1 GiB node it would meet the
        // node after ~8 minutes (urgent after six); with no limit at all, only patience (3 h) speaks
        var lines: [String] = []
        for second in 0..<420 {
            let anon = (50 + 2 * second) << 20
            lines.append(
                #"{"t":\#(second),"pid":42,"comm":"app","cgroup":"/system.slice/app.service","anon":\#(anon),"file":52428800,"shmem":0,"swap":0,"vsz":\#(anon + (200 << 20))}"#)
        }
        try scratch.write(lines.joined(separator: "\n") + "\n", to: "/leak.jsonl")
        let trace = scratch.path + "/leak.jsonl"
        func suspected(_ result: (code: Int32, out: [String], err: [String])) -> [[String: Any]] {
            result.out.compactMap(AgentCommandTests.json).filter { $0["type"] as? String == "leak.suspected" }
        }

        let bare = try IdentifyCommandTests.memwarden(["replay", trace])
        #expect(bare.code == 0, "\(bare.err)")
        #expect(suspected(bare).isEmpty, "suspected without any limit: \(bare.out)")

        let node = try IdentifyCommandTests.memwarden(["replay", "--node-memory", "1Gi", trace])
        #expect(node.code == 0, "\(node.err)")
        let first = try #require(suspected(node).first, "not suspected against a 1 GiB node: \(node.out)")
        #expect(first["limit"] as? Int == 1 << 30)
        let t = try #require(first["t"] as? Double)
        let seconds = try #require(first["seconds_to_limit"] as? Double, "no forecast: \(first)")
        // the truth: 1 GiB − 50 MiB file − (50 + 2t) MiB anon, at 2 MiB/s
        let truth = (1024 - 50 - 50 - 2 * t) / 2
        #expect(abs(seconds - truth) <= 0.2 * truth, "forecast \(seconds) s at \(t) s, truth \(truth) s")

        for bad in ["lots", "-1Gi", "0"] {
            let result = try IdentifyCommandTests.memwarden(["replay", "--node-memory", bad, trace])
            #expect(result.code != 0 && result.out.isEmpty, "--node-memory \(bad): exit \(result.code), \(result.out.count) lines")
            #expect(result.err.joined(separator: "\n").contains("--node-memory"), "\(bad): \(result.err)")
        }
    }
}
