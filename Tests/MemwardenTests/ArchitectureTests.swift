import Foundation
import Testing

/// Keeps docs/architecture.md true: its diagram lists the modules in layers, and a module may
/// import only modules of the layers below its own, in its sources and in Package.swift. The
/// compiler already refuses a cycle; this refuses an arrow the wrong way before it becomes one.
struct ArchitectureTests {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The diagram's layers, top (the command line) first: every line of the first fenced block
    /// that names modules is one layer.
    static func layers() throws -> [[String]] {
        let text = try String(contentsOf: root.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
        let parts = text.components(separatedBy: "```")
        try #require(parts.count >= 3, "docs/architecture.md has no diagram")
        let names = try NSRegularExpression(pattern: #"\b(Memwarden[A-Za-z]+|memwarden)\b"#)
        return parts[1].split(separator: "\n").map { line in
            let line = String(line)
            return names.matches(in: line, range: NSRange(line.startIndex..., in: line)).map {
                String(line[Range($0.range, in: line)!])
            }
        }.filter { !$0.isEmpty }
    }

    /// Layer numbers, bottom (Model) 0.
    static func rank() throws -> [String: Int] {
        let layers = try layers()
        var rank: [String: Int] = [:]
        for (index, layer) in layers.reversed().enumerated() {
            for module in layer {
                #expect(rank[module] == nil, "\(module) is in two layers of the diagram")
                rank[module] = index
            }
        }
        return rank
    }

    /// The project's Swift modules that belong in the diagram: Sources/Memwarden* and the command
    /// line; MemwardenBPF only embeds the kernel objects, as CMemwarden carries the C side.
    static func modules() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Sources").path)
            .filter { ($0.hasPrefix("Memwarden") && $0 != "MemwardenBPF") || $0 == "memwarden" }
            .sorted()
    }

    @Test func everyModuleIsInTheDiagram() throws {
        let rank = try Self.rank()
        let modules = try Self.modules()
        for module in modules {
            #expect(rank[module] != nil, "docs/architecture.md does not show \(module)")
        }
        for module in rank.keys {
            #expect(modules.contains(module), "docs/architecture.md shows \(module), which is not in Sources/")
        }
    }

    @Test func importsPointDown() throws {
        let rank = try Self.rank()
        let importLine = try NSRegularExpression(
            pattern: #"^\s*(?:@\w+\s+)*(?:(?:public|package|internal)\s+)?import\s+(\w+)"#, options: .anchorsMatchLines)
        for module in try Self.modules() {
            let directory = Self.root.appendingPathComponent("Sources/\(module)")
            let files = FileManager.default.enumerator(atPath: directory.path)?.compactMap { $0 as? String } ?? []
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                for match in importLine.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                    let imported = String(text[Range(match.range(at: 1), in: text)!])
                    guard let to = rank[imported], let from = rank[module] else { continue }
                    #expect(to < from, "Sources/\(module)/\(file) imports \(imported), which is not below it")
                }
            }
        }
    }

    @Test func packageDependenciesPointDown() throws {
        let rank = try Self.rank()
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        // one chunk a target; its name first, then its dependencies up to its settings
        let quoted = try NSRegularExpression(pattern: #""([A-Za-z-]+)""#)
        var checked = 0
        let targets = manifest.replacingOccurrences(of: "executableTarget(", with: "target(")
            .replacingOccurrences(of: "testTarget(", with: "target(")
        for chunk in targets.components(separatedBy: "target(").dropFirst() {
            let head = chunk.components(separatedBy: "Settings:").first ?? chunk
            let strings = quoted.matches(in: head, range: NSRange(head.startIndex..., in: head)).map {
                String(head[Range($0.range(at: 1), in: head)!])
            }
            guard let name = strings.first, let from = rank[name] else { continue }
            checked += 1
            for dependency in strings.dropFirst() {
                guard let to = rank[dependency] else { continue }
                #expect(to < from, "Package.swift: \(name) depends on \(dependency), which is not below it")
            }
        }
        #expect(checked == rank.count, "Package.swift: found \(checked) of the diagram's \(rank.count) modules")
    }
}
