#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What one scenario function draws and simulates; `ScenarioCorpus` turns it
/// into a trace and its label.
struct ScenarioBuilder {
    var random: CorpusRandom
    var params: [String: Double] = [:]
    var scope = "process"
    var leakStart: Double?
    var growthEnd: Double?
    var simulator: CgroupSimulator?
    private var nextPid: Int32

    init(random: CorpusRandom) {
        self.random = random
        nextPid = Int32(self.random.integer(1_000...400_000))
    }

    /// Parameters are kept to four significant digits, and the rounded value
    /// is the one simulated: the label states exactly what the trace did.
    private static func round4(_ value: Double) -> Double {
        guard value != 0, value.isFinite else { return value }
        let scale = pow(10, 3 - floor(log10(abs(value))))
        return (value * scale).rounded() / scale
    }

    mutating func set(_ name: String, _ value: Double) -> Double {
        let rounded = Self.round4(value)
        params[name] = rounded
        return rounded
    }

    mutating func uniform(_ name: String, _ low: Double, _ high: Double) -> Double {
        set(name, random.uniform(low, high))
    }

    mutating func logUniform(_ name: String, _ low: Double, _ high: Double) -> Double {
        set(name, random.logUniform(low, high))
    }

    mutating func integer(_ name: String, _ range: ClosedRange<Int>) -> Int {
        let value = random.integer(range)
        params[name] = Double(value)
        return value
    }

    /// Pids grow with gaps, as other processes on the node take numbers too.
    mutating func pid() -> Int32 {
        let pid = nextPid
        nextPid += Int32(random.integer(1...40))
        return pid
    }

    /// The noise every process has: allocator and runtime wander plus jitter.
    mutating func noise(sigmaMiB: ClosedRange<Double> = 0.5...3) -> ProcessNoise {
        let sigma = uniform("noise_mib", sigmaMiB.lowerBound, sigmaMiB.upperBound)
        let tau = uniform("noise_tau_s", 10, 120)
        return ProcessNoise(
            anon: Wander(sigma: sigma * corpusMiB, tau: tau), file: Wander(sigma: 0.4 * corpusMiB, tau: 300),
            jitter: 0.25 * corpusMiB)
    }

    /// Simulates at t = 0, dt, … until `until` (healthy) or until the cgroup
    /// reaches `limit` (leak: it must, before `until`).
    mutating func run(
        dt: Double, until: Double, limit: UInt64? = nil,
        _ body: (Double, inout CorpusRandom) -> [SimulatedProcess]
    ) {
        let simulator = CgroupSimulator(limit: limit)
        var random = self.random
        simulator.run(dt: dt, until: until) { t in body(t, &random) }
        self.random = random
        if let limit {
            precondition(
                simulator.limitTime != nil,
                "a leak scenario did not reach its limit \(limit) by \(until) s (params \(params))")
        }
        self.simulator = simulator
    }

    /// One process with a shape: the common case.
    mutating func single(
        comm comms: [String], dt: Double, until: Double, limit: UInt64? = nil, fileMiB: ClosedRange<Double> = 10...200,
        shmemMiB: Double? = nil, noise sigma: ClosedRange<Double> = 0.5...3,
        anon: (Double, inout CorpusRandom) -> Double
    ) {
        let comm = random.pick(comms)
        let pid = self.pid()
        let file = uniform("file_mib", fileMiB.lowerBound, fileMiB.upperBound) * corpusMiB
        let shmem = (shmemMiB ?? (random.chance(0.4) ? uniform("shmem_mib", 0.5, 8) : 0)) * corpusMiB
        let extra = uniform("virtual_extra_mib", 200, 2048) * corpusMiB
        var noise = noise(sigmaMiB: sigma)
        run(dt: dt, until: until, limit: limit) { t, random in
            let a = anon(t, &random) + noise.anon(dt, &random)
            let f = file + noise.file(dt, &random)
            return [SimulatedProcess(pid: pid, comm: comm, anon: a, file: f, shmem: shmem, virtualExtra: extra)]
        }
    }

    /// The limit a leak reaches: from where the cgroup starts, plus the growth
    /// to the limit, rounded to 16 MiB the way limits are written ("1536Mi").
    func leakLimit(startBytes: Double, growthBytes: Double) -> UInt64 {
        let step = 16 * corpusMiB
        let rounded = ((startBytes + growthBytes) / step).rounded() * step
        return UInt64(max(rounded, startBytes + 32 * corpusMiB))
    }
}

struct ProcessNoise {
    var anon: Wander
    var file: Wander
    let jitter: Double

    mutating func anon(_ dt: Double, _ random: inout CorpusRandom) -> Double {
        anon.next(dt, &random) + random.uniform(-jitter, jitter)
    }

    mutating func file(_ dt: Double, _ random: inout CorpusRandom) -> Double {
        file.next(dt, &random)
    }
}
