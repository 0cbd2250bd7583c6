import Foundation
import MemwardenOutput
import Testing

/// The Prometheus rules and the Grafana dashboard that ship in deploy/.
@Suite struct OpsAssetsTests {
    @Test(.enabled(if: OutputAccess.enabled(.promtool), OutputAccess.comment(.promtool)))
    func rulesPassPromtoolCheckAndTheirUnitTests() throws {
        let promtool = try #require(OutputAccess.path(.promtool))
        let check = try run(promtool, ["check", "rules", repositoryFile("deploy/prometheus/memwarden-rules.yaml")])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("SUCCESS"))
        // the rule unit tests: each alert fires on the series it is about, with its labels and text
        let test = try run(
            "/bin/sh", ["-c", "cd \(repositoryFile("deploy/prometheus")) && \(promtool) test rules memwarden-rules.test.yaml"])
        #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
    }

    /// Metric names a text mentions (memwarden_…), without PromQL's own words.
    static func metricNames(in text: String) -> Set<String> {
        var names = Set<String>()
        var scanner = Substring(text)
        while let range = scanner.range(of: "memwarden_") {
            let tail = scanner[range.lowerBound...]
            let name = tail.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            names.insert(String(name))
            scanner = tail.dropFirst(name.count)
        }
        return names
    }

    @Test func rulesQueryOnlyDocumentedMetrics() throws {
        let rules = try String(contentsOfFile: repositoryFile("deploy/prometheus/memwarden-rules.yaml"), encoding: .utf8)
        let names = Self.metricNames(in: rules)
        #expect(names.count >= 8)
        #expect(names.isSubset(of: Set(AgentMetrics.metricNames)), "unknown: \(names.subtracting(AgentMetrics.metricNames))")
    }

    @Test func dashboardParsesAndQueriesOnlyDocumentedMetrics() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: repositoryFile("deploy/grafana/memwarden-dashboard.json")))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(dashboard["uid"] as? String == "memwarden")
        var expressions: [String] = []
        func walk(_ value: Any) {
            if let object = value as? [String: Any] {
                for (key, inner) in object {
                    if key == "expr" || key == "definition", let text = inner as? String { expressions.append(text) }
                    walk(inner)
                }
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(dashboard)
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        #expect(expressions.count >= 20)
        let doc = try String(contentsOfFile: repositoryFile("docs/metrics.md"), encoding: .utf8)
        let names = expressions.reduce(into: Set<String>()) { $0.formUnion(Self.metricNames(in: $1)) }
        for name in names {
            #expect(doc.contains("`\(name)`"), "the dashboard queries \(name), which docs/metrics.md does not document")
            #expect(AgentMetrics.metricNames.contains(name), "the dashboard queries \(name), which the agent does not export")
        }
        // every panel's queries name a data source variable, so the dashboard imports anywhere
        for panel in panels where panel["type"] as? String != "row" {
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == "${datasource}")
        }
    }
}
