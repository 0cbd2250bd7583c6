#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MemwardenModel

/// The truth about one corpus trace: a line of `labels.jsonl`
/// (docs/detection-corpus.md). Times are seconds on the trace's clock.
public struct CorpusLabel: Codable, Sendable, Hashable {
    /// The trace file's name, relative to the corpus directory.
    public var file: String
    public var className: String
    public var variant: Int
    public var leak: Bool
    /// Where the leak is clearest: "process" or "cgroup".
    public var scope: String
    /// Leak traces: when the leak began.
    public var leakStart: Double?
    /// Leak traces: when the cgroup's RSS first reached `limit`.
    public var limitTime: Double?
    /// Healthy traces with a bounded growth (warm-up, fill, step): when it ended.
    public var growthEnd: Double?
    public var duration: Double
    /// The cgroup's memory.max, bytes (on every trace line).
    public var limit: UInt64
    public var seed: UInt64
    /// The randomised parameters, by name (units in the name: `_mib`, `_s`, `_mib_per_min`).
    public var params: [String: Double]

    public init(
        file: String, className: String, variant: Int, leak: Bool, scope: String, leakStart: Double?,
        limitTime: Double?, growthEnd: Double?, duration: Double, limit: UInt64, seed: UInt64, params: [String: Double]
    ) {
        self.file = file
        self.className = className
        self.variant = variant
        self.leak = leak
        self.scope = scope
        self.leakStart = leakStart
        self.limitTime = limitTime
        self.growthEnd = growthEnd
        self.duration = duration
        self.limit = limit
        self.seed = seed
        self.params = params
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case file
        case className = "class"
        case variant, leak, scope
        case leakStart = "leak_start"
        case limitTime = "limit_time"
        case growthEnd = "growth_end"
        case duration, limit, seed, params
    }

    // nulls are written, not left out: a reader sees every field on every line
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(file, forKey: .file)
        try container.encode(className, forKey: .className)
        try container.encode(variant, forKey: .variant)
        try container.encode(leak, forKey: .leak)
        try container.encode(scope, forKey: .scope)
        try container.encode(leakStart, forKey: .leakStart)
        try container.encode(limitTime, forKey: .limitTime)
        try container.encode(growthEnd, forKey: .growthEnd)
        try container.encode(duration, forKey: .duration)
        try container.encode(limit, forKey: .limit)
        try container.encode(seed, forKey: .seed)
        try container.encode(params, forKey: .params)
    }

    /// Strict: every field present, leak times present on leak traces.
    /// `CorpusDirectory.load` reports the same checks with file and line.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        file = try container.decode(String.self, forKey: .file)
        className = try container.decode(String.self, forKey: .className)
        variant = try container.decode(Int.self, forKey: .variant)
        leak = try container.decode(Bool.self, forKey: .leak)
        scope = try container.decode(String.self, forKey: .scope)
        leakStart = try container.decodeIfPresent(Double.self, forKey: .leakStart)
        limitTime = try container.decodeIfPresent(Double.self, forKey: .limitTime)
        growthEnd = try container.decodeIfPresent(Double.self, forKey: .growthEnd)
        duration = try container.decode(Double.self, forKey: .duration)
        limit = try container.decode(UInt64.self, forKey: .limit)
        seed = try container.decode(UInt64.self, forKey: .seed)
        params = try container.decode([String: Double].self, forKey: .params)
        if leak {
            guard leakStart != nil else {
                throw DecodingError.keyNotFound(
                    CodingKeys.leakStart, .init(codingPath: [], debugDescription: "a leak trace needs leak_start"))
            }
            guard limitTime != nil else {
                throw DecodingError.keyNotFound(
                    CodingKeys.limitTime, .init(codingPath: [], debugDescription: "a leak trace needs limit_time"))
            }
        }
    }
}

/// One trace line before it is written: a process's counters at a moment.
struct CorpusSample: Sendable, Hashable {
    enum Event: UInt8, Sendable { case sample, exec, exit }
    var t: Double
    var pid: Int32
    var comm: String
    var anon: UInt64
    var file: UInt64
    var shmem: UInt64
    var vsz: UInt64
    var event: Event = .sample

    var rss: UInt64 { anon &+ file &+ shmem }
}

/// One generated trace: its lines and the truth about them.
public struct CorpusTrace: Sendable {
    /// "class-variant", e.g. "gc_sawtooth-2"; the file is NAME.jsonl.
    public var name: String
    public var label: CorpusLabel
    public let cgroup: String
    let samples: [CorpusSample]

    public var lineCount: Int { samples.count }
    public var fileName: String { name + ".jsonl" }

    /// The trace in the format of docs/trace-format.md, every line with the limit.
    public func traceBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(samples.count * (200 + cgroup.utf8.count))
        for sample in samples {
            var line = JSONLine()
            line.addRaw("t", Self.seconds(sample.t))
            line.add("pid", sample.pid)
            line.add("comm", sample.comm)
            line.add("cgroup", cgroup)
            line.add("anon", sample.anon)
            line.add("file", sample.file)
            line.add("shmem", sample.shmem)
            line.add("swap", UInt64(0))
            line.add("vsz", sample.vsz)
            line.add("limit", label.limit)
            switch sample.event {
            case .sample: break
            case .exec: line.add("event", "exec")
            case .exit: line.add("event", "exit")
            }
            bytes.append(contentsOf: line.finish().utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    /// Microsecond resolution, written exactly (no Double formatting), so the
    /// bytes depend on the seed alone.
    static func seconds(_ t: Double) -> String {
        let micros = Int64((t * 1e6).rounded())
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}

/// Why a corpus could not be written or read. `description` names the file and
/// the line: `corpus/labels.jsonl:7: missing field leak_start for a leak trace`.
public struct CorpusError: Error, CustomStringConvertible, Sendable, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let missingLabels = Code(name: "missing labels")
        public static let invalidLabel = Code(name: "invalid label")
        public static let missingTrace = Code(name: "missing trace")
        public static let unlabelledTrace = Code(name: "unlabelled trace")
        public static let io = Code(name: "i/o")
        public var description: String { name }
    }

    public var code: Code
    public var file: String
    /// 1-based; 0 when the error is about the whole file.
    public var line: Int
    public var detail: String

    public init(_ code: Code, file: String, line: Int = 0, detail: String) {
        self.code = code
        self.file = file
        self.line = line
        self.detail = detail
    }

    public var description: String { (line > 0 ? "\(file):\(line): " : "\(file): ") + detail }
}
