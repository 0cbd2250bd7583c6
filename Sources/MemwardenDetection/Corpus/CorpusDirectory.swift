#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A corpus on disk: labels.jsonl and the traces it names, checked against
/// each other before anything is replayed (a missing label would silently
/// drop a trace from the score).
public struct CorpusDirectory: Sendable {
    public static let labelsFile = "labels.jsonl"

    public struct Entry: Sendable {
        public var label: CorpusLabel
        /// The trace file's path (the directory joined with `label.file`).
        public var path: String
        /// The trace's name: its file name without ".jsonl".
        public var name: String
    }

    public var path: String
    /// In labels.jsonl's order.
    public var entries: [Entry]

    public static func load(_ path: String) throws(CorpusError) -> CorpusDirectory {
        let labelsPath = path + "/" + labelsFile
        guard let data = FileManager.default.contents(atPath: labelsPath) else {
            throw CorpusError(.missingLabels, file: labelsPath, detail: "missing: a corpus directory needs \(labelsFile)")
        }
        let decoder = JSONDecoder()
        var entries: [Entry] = []
        var seen: [String: Int] = [:]
        for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let label: CorpusLabel
            do {
                label = try decoder.decode(CorpusLabel.self, from: Data(line))
            } catch let error as DecodingError {
                throw CorpusError(.invalidLabel, file: labelsPath, line: number, detail: describe(error))
            } catch {
                throw CorpusError(.invalidLabel, file: labelsPath, line: number, detail: "\(error)")
            }
            guard label.scope == "process" || label.scope == "cgroup" else {
                throw CorpusError(
                    .invalidLabel, file: labelsPath, line: number,
                    detail: "field scope: \"\(label.scope)\" is neither \"process\" nor \"cgroup\"")
            }
            guard !label.file.contains("/"), label.file.hasSuffix(".jsonl"), label.file != labelsFile else {
                throw CorpusError(
                    .invalidLabel, file: labelsPath, line: number,
                    detail: "field file: \"\(label.file)\" is not a trace file name in this directory")
            }
            if let first = seen[label.file] {
                throw CorpusError(
                    .invalidLabel, file: labelsPath, line: number,
                    detail: "\(label.file) is labelled twice (first on line \(first))")
            }
            seen[label.file] = number
            let tracePath = path + "/" + label.file
            guard FileManager.default.fileExists(atPath: tracePath) else {
                throw CorpusError(
                    .missingTrace, file: labelsPath, line: number, detail: "names \(label.file), which does not exist")
            }
            entries.append(Entry(label: label, path: tracePath, name: String(label.file.dropLast(6))))
        }
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw CorpusError(.io, file: path, detail: "cannot list the directory: \(error)")
        }
        for file in files.sorted() where file.hasSuffix(".jsonl") && file != labelsFile && seen[file] == nil {
            throw CorpusError(
                .unlabelledTrace, file: path + "/" + file, detail: "has no line in \(labelsFile)")
        }
        return CorpusDirectory(path: path, entries: entries)
    }

    private static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let leakOnly = key.stringValue == "leak_start" || key.stringValue == "limit_time"
            let path = context.codingPath.last?.stringValue == key.stringValue ? context.codingPath : context.codingPath + [key]
            let name = field(path)
            return "missing field \(name)" + (leakOnly ? " for a leak trace" : "")
        case .valueNotFound(_, let context):
            return "field \(field(context.codingPath)) is null"
        case .typeMismatch(let type, let context):
            return "field \(field(context.codingPath)): expected \(type)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "not valid JSON" : "field \(field(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
