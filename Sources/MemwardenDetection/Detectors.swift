import CMemwarden

/// The three detectors, in `enum mw_det_kind` order.
public enum DetectorKind: Int, Sendable, CaseIterable {
    case trend = 0
    case composition = 1
    case multiFactor = 2

    /// The name events carry in "detectors".
    public var name: String {
        switch self {
        case .trend: "trend"
        case .composition: "composition"
        case .multiFactor: "multi_factor"
        }
    }
}

/// `enum mw_det_reason` as a set, with the names events carry in "reasons".
public struct DetectorReasons: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let floorRising = DetectorReasons(rawValue: MW_R_FLOOR_RISING.rawValue)
    public static let levelRising = DetectorReasons(rawValue: MW_R_LEVEL_RISING.rawValue)
    public static let linear = DetectorReasons(rawValue: MW_R_LINEAR.rawValue)
    public static let sawtooth = DetectorReasons(rawValue: MW_R_SAWTOOTH.rawValue)
    public static let anonGrowth = DetectorReasons(rawValue: MW_R_ANON_GROWTH.rawValue)
    public static let shmemGrowth = DetectorReasons(rawValue: MW_R_SHMEM_GROWTH.rawValue)
    public static let swapGrowth = DetectorReasons(rawValue: MW_R_SWAP_GROWTH.rawValue)
    public static let fileGrowth = DetectorReasons(rawValue: MW_R_FILE_GROWTH.rawValue)
    public static let cacheOnly = DetectorReasons(rawValue: MW_R_CACHE_ONLY.rawValue)
    public static let swapShuffle = DetectorReasons(rawValue: MW_R_SWAP_SHUFFLE.rawValue)
    public static let fastGrowth = DetectorReasons(rawValue: MW_R_FAST_GROWTH.rawValue)
    public static let risingFloor = DetectorReasons(rawValue: MW_R_RISING_FLOOR.rawValue)
    public static let vszDivergence = DetectorReasons(rawValue: MW_R_VSZ_DIVERGENCE.rawValue)
    public static let anonShare = DetectorReasons(rawValue: MW_R_ANON_SHARE.rawValue)
    public static let swapShare = DetectorReasons(rawValue: MW_R_SWAP_SHARE.rawValue)

    static let named: [(DetectorReasons, String)] = [
        (.floorRising, "floor_rising"), (.levelRising, "level_rising"), (.linear, "linear_fit"),
        (.sawtooth, "rising_floor_under_sawtooth"), (.anonGrowth, "anon_growth"), (.shmemGrowth, "shmem_growth"),
        (.swapGrowth, "swap_growth"), (.fileGrowth, "file_growth"), (.cacheOnly, "cache_only"),
        (.swapShuffle, "swap_shuffle"), (.fastGrowth, "fast_growth"), (.risingFloor, "rising_floor_duration"),
        (.vszDivergence, "vsz_divergence"), (.anonShare, "anon_share"), (.swapShare, "swap_share"),
    ]

    public var names: [String] { Self.named.compactMap { contains($0.0) ? $0.1 : nil } }
}

/// `enum mw_det_factor`: the parts of the detectors with their own hysteresis.
public struct DetectorFactors: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let trend = DetectorFactors(rawValue: MW_F_TREND.rawValue)
    public static let composition = DetectorFactors(rawValue: MW_F_COMPOSITION.rawValue)
    public static let fast = DetectorFactors(rawValue: MW_F_FAST.rawValue)
    public static let rise = DetectorFactors(rawValue: MW_F_RISE.rawValue)
    public static let vsz = DetectorFactors(rawValue: MW_F_VSZ.rawValue)
}

/// What the detectors said after a sample: `struct mw_det_verdict`, read
/// through, so a verdict from the kernel's ring buffer and one from replay are
/// the same value.
public struct DetectorVerdict: Sendable {
    public var raw: mw_det_verdict

    public init(raw: mw_det_verdict) {
        self.raw = raw
    }

    public var fired: Set<DetectorKind> {
        Set(DetectorKind.allCases.filter { raw.fired & (1 << UInt8($0.rawValue)) != 0 })
    }

    public func hasFired(_ kind: DetectorKind) -> Bool { raw.fired & (1 << UInt8(kind.rawValue)) != 0 }

    /// 0...1000.
    public func score(_ kind: DetectorKind) -> Int {
        withUnsafeBytes(of: raw.score) { Int($0.load(fromByteOffset: kind.rawValue * 2, as: UInt16.self)) }
    }

    public var reasons: DetectorReasons { DetectorReasons(rawValue: raw.reasons) }
    public var factors: DetectorFactors { DetectorFactors(rawValue: raw.factors) }
    /// 0...3: band of the strongest score.
    public var level: Int { Int(raw.level) }
    /// The rate of the evidence that fired (bytes/s), the forecast's slope.
    public var growthBytesPerSecond: Int64 { raw.growth }
    public var floorSlopeBytesPerSecond: Int64 { raw.floor_slope }
    public var levelSlopeBytesPerSecond: Int64 { raw.level_slope }
    /// Held memory (anon + shmem + swap) of the sample, bytes.
    public var heldBytes: UInt64 { raw.held }
    public var floorBytes: UInt64 { raw.floor }
    public var floorR2: Double { Double(raw.floor_r2) / 1000 }
    public var levelR2: Double { Double(raw.level_r2) / 1000 }
}

/// Detector states for many targets in one allocation that never moves, so
/// the C code gets stable pointers; slots are reused after `release`.
/// Not thread-safe: one owner feeds it.
public final class DetectorStatePool {
    @exclusivity(unchecked) private var chunks: [UnsafeMutablePointer<mw_det_state>] = []
    @exclusivity(unchecked) private var free: [Int32] = []
    @exclusivity(unchecked) private var count: Int32 = 0
    private static let chunkSize = 256

    public init() {}

    deinit {
        for chunk in chunks { chunk.deallocate() }
    }

    /// A zeroed state's slot.
    public func acquire() -> Int32 {
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
        } else {
            if Int(count) == chunks.count * Self.chunkSize {
                let chunk = UnsafeMutablePointer<mw_det_state>.allocate(capacity: Self.chunkSize)
                chunks.append(chunk)
            }
            slot = count
            count += 1
        }
        mw_det_reset(pointer(slot))
        return slot
    }

    public func release(_ slot: Int32) {
        free.append(slot)
    }

    @inline(__always)
    public func pointer(_ slot: Int32) -> UnsafeMutablePointer<mw_det_state> {
        chunks[Int(slot) / Self.chunkSize] + Int(slot) % Self.chunkSize
    }
}
