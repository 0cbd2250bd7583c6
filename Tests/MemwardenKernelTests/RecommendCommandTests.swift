import Foundation
import Testing

/// `memwarden recommend` as a user runs it, on a trace it writes: 8 hours of two pods' containers
/// under a 1 GiB limit, one leaking 60 MiB/h, one flat with a 10-minute sawtooth. It needs no
/// privileges (it lives here for the executable built next to these tests).
struct RecommendCommandTests {
    static let mib = 1 << 20

    static func trace() throws -> String {
        var lines: [String] = []
        var t = 0.0
        while t <= 8 * 3600 {
            let leaky = 300 * mib + Int(60 * Double(mib) * t / 3600)
            let flat = 200 * mib + Int(t.truncatingRemainder(dividingBy: 600) / 600 * 8 * Double(mib))
            lines.append(
                #"{"t":\#(t),"pid":100,"comm":"api","cgroup":"/kubepods/burstable/podaaaa/leaky","anon":\#(leaky),"file":\#(20 * mib),"shmem":0,"swap":0,"vsz":\#(2000 * mib),"limit":\#(1024 * mib)}"#)
            lines.append(
                #"{"t":\#(t + 0.5),"pid":200,"comm":"web","cgroup":"/kubepods/burstable/podbbbb/flat","anon":\#(flat),"file":\#(10 * mib),"shmem":0,"swap":0,"vsz":\#(900 * mib),"limit":\#(1024 * mib)}"#)
            t += 30
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-recommend-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the leaking container gets its size without the leak and the time to each limit; the flat one its peak plus 15 %")
    func leakAwareFigures() throws {
        let path = try Self.trace()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try CheckConfigCommandTests.run(["recommend", "--json", path])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.joined(separator: "\n").utf8)) as? [String: Any])
        let rows = try #require(object["recommendations"] as? [[String: Any]])
        let leaky = try #require(rows.first { $0["cgroup"] as? String == "/kubepods/burstable/podaaaa/leaky" })
        let flat = try #require(rows.first { $0["cgroup"] as? String == "/kubepods/burstable/podbbbb/flat" })

        #expect(leaky["leaking"] as? Bool == true)
        let rate = try #require((leaky["trend"] as? [String: Any])?["bytes_per_second"] as? Double)
        #expect(abs(rate / (60.0 * Double(Self.mib) / 3600) - 1) < 0.1, "\(rate) B/s")
        // the leak taken out: about the 320 MiB it started at, plus the margin; VPA's and KRR's
        // figures follow the leak to its 780 MiB peak
        let memwarden = try #require(leaky["memwarden_bytes"] as? Int)
        let vpa = try #require(leaky["vpa_style_bytes"] as? Int)
        #expect(memwarden > 300 * Self.mib && memwarden < 420 * Self.mib, "\(memwarden / Self.mib) MiB")
        #expect(vpa > 780 * Self.mib, "\(vpa / Self.mib) MiB")
        let reach = try #require(leaky["limit_reached_in"] as? [[String: Any]])
        let current = try #require(reach.first { $0["kind"] as? String == "current" }?["seconds"] as? Double)
        // 1024 MiB less the 800 MiB held at 8 h, at 60 MiB/h: about 3.7 h
        #expect(abs(current / 3600 - 3.7) < 0.5, "\(current / 3600) h")
        #expect((leaky["note"] as? String)?.hasPrefix("raising the limit only moves the OOM") == true)

        #expect(flat["leaking"] as? Bool == false)
        let flatFigure = try #require(flat["memwarden_bytes"] as? Int)
        let flatPeak = try #require(flat["current_peak_bytes"] as? Int)
        // held memory (anon + shmem + swap): the file pages are cache the kernel takes back
        #expect(flatPeak > 206 * Self.mib && flatPeak < 209 * Self.mib, "\(flatPeak / Self.mib) MiB")
        #expect(abs(Double(flatFigure) / Double(flatPeak) - 1.15) < 0.01)

        // the table says the same in columns, and the leak's sentence under its row
        let table = try CheckConfigCommandTests.run(["recommend", path])
        #expect(table.status == 0)
        #expect(table.stdout.first?.hasPrefix("TARGET") == true)
        // the growth column: 60 MiB/h, as the table rounds it (59.8 and 60 are both the truth)
        let row = try #require(table.stdout.first { $0.contains("podaaaa/leaky") }, "\(table.stdout)")
        let growth = try #require(
            row.split(separator: " ").enumerated().first { $0.offset > 0 && $0.element == "MiB/h" }
                .flatMap { index, _ in Double(row.split(separator: " ")[index - 1]) },
            "no growth column in \(row)")
        #expect(abs(growth / 60 - 1) < 0.05, "\(row)")
        #expect(table.stdout.contains { $0.contains("raising the limit only moves the OOM") })
    }

    @Test("a line that is not a trace sample: exit 1 naming the file, the line and the field")
    func badInput() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memwarden-recommend-bad-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #"{"t":0,"pid":1,"comm":"a","cgroup":"/x","anon":1,"file":0,"shmem":0,"swap":0,"vsz":1}"#.appending("\n{\"t\":1}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let result = try CheckConfigCommandTests.run(["recommend", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains { $0.contains("\(path):2") && $0.contains("pid") }, "\(result.stderr)")
    }
}
