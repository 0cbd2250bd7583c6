#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A labelled corpus of synthetic traces for scoring detection
/// (docs/detection-corpus.md): healthy shapes that must not be called leaks
/// and leaks that must be called before the OOM killer ends them.
public enum ScenarioCorpus {
    /// The seed detectors may be tuned on.
    public static let tuningSeed: UInt64 = 1
    /// The seed that only checks: tuning on it makes its figures meaningless.
    public static let heldOutSeed: UInt64 = 2

    struct ScenarioClass: Sendable {
        let name: String
        let leak: Bool
        let make: @Sendable (inout ScenarioBuilder) -> Void
    }

    static let classes: [ScenarioClass] = [
        .init(name: "flat_noise", leak: false, make: HealthyScenarios.flatNoise),
        .init(name: "gc_sawtooth", leak: false, make: HealthyScenarios.gcSawtooth),
        .init(name: "warmup_exponential", leak: false, make: HealthyScenarios.warmupExponential),
        .init(name: "warmup_linear", leak: false, make: HealthyScenarios.warmupLinear),
        .init(name: "step", leak: false, make: HealthyScenarios.step),
        .init(name: "file_cache", leak: false, make: HealthyScenarios.fileCache),
        .init(name: "batch_cycles", leak: false, make: HealthyScenarios.batchCycles),
        .init(name: "load_cycle", leak: false, make: HealthyScenarios.loadCycle),
        .init(name: "cache_fill", leak: false, make: HealthyScenarios.cacheFill),
        .init(name: "startup_spike", leak: false, make: HealthyScenarios.startupSpike),
        .init(name: "periodic_spikes", leak: false, make: HealthyScenarios.periodicSpikes),
        .init(name: "bounded_random_walk", leak: false, make: HealthyScenarios.boundedRandomWalk),
        .init(name: "shrinking", leak: false, make: HealthyScenarios.shrinking),
        .init(name: "process_churn", leak: false, make: HealthyScenarios.processChurn),
        .init(name: "malloc_churn", leak: false, make: HealthyScenarios.mallocChurn),
        .init(name: "jvm_heap_resize", leak: false, make: HealthyScenarios.jvmHeapResize),
        .init(name: "leak_linear", leak: true, make: LeakScenarios.linear),
        .init(name: "leak_very_slow", leak: true, make: LeakScenarios.verySlow),
        .init(name: "leak_fast", leak: true, make: LeakScenarios.fast),
        .init(name: "leak_under_sawtooth", leak: true, make: LeakScenarios.underSawtooth),
        .init(name: "leak_staircase", leak: true, make: LeakScenarios.staircase),
        .init(name: "leak_noisy", leak: true, make: LeakScenarios.noisy),
        .init(name: "leak_quadratic", leak: true, make: LeakScenarios.quadratic),
        .init(name: "leak_exponential", leak: true, make: LeakScenarios.exponential),
        .init(name: "leak_late_onset", leak: true, make: LeakScenarios.lateOnset),
        .init(name: "leak_spread_workers", leak: true, make: LeakScenarios.spreadWorkers),
        .init(name: "leak_restarting_process", leak: true, make: LeakScenarios.restartingProcess),
        .init(name: "leak_with_spikes", leak: true, make: LeakScenarios.withSpikes),
        .init(name: "leak_on_daily_cycle", leak: true, make: LeakScenarios.onDailyCycle),
        .init(name: "leak_in_shmem", leak: true, make: LeakScenarios.inShmem),
        .init(name: "leak_after_warmup", leak: true, make: LeakScenarios.afterWarmup),
    ]

    /// Every class name, healthy first.
    public static var classNames: [String] { classes.map(\.name) }

    /// Classes whose traces are bounded growth: `growth_end` is set.
    public static let boundedGrowthClasses: Set<String> = [
        "warmup_exponential", "warmup_linear", "step", "cache_fill", "jvm_heap_resize",
    ]

    /// The corpus for `seed`: `variantsPerClass` traces of every class, each
    /// with parameters drawn from the seed. The same seed gives the same bytes.
    public static func generate(
        seed: UInt64, variantsPerClass: Int = 3, classes names: Set<String>? = nil
    ) -> [CorpusTrace] {
        var traces: [CorpusTrace] = []
        for scenario in classes where names?.contains(scenario.name) ?? true {
            for variant in 1...max(1, variantsPerClass) {
                traces.append(make(scenario, seed: seed, variant: variant))
            }
        }
        return traces
    }

    static func make(_ scenario: ScenarioClass, seed: UInt64, variant: Int) -> CorpusTrace {
        var builder = ScenarioBuilder(random: CorpusRandom(seed: seed, stream: scenario.name, variant: variant))
        let cgroup = cgroupPath(&builder.random)
        scenario.make(&builder)
        guard let simulator = builder.simulator else { preconditionFailure("\(scenario.name) simulated nothing") }
        let limit: UInt64
        if let cgroupLimit = simulator.limit {
            limit = cgroupLimit
        } else {
            // a healthy cgroup's memory.max sits well above its peak, in 64 MiB steps
            let factor = builder.random.uniform(1.3, 3)
            let step = 64 * corpusMiB
            limit = UInt64((Double(simulator.peak) * factor / step).rounded(.up) * step)
        }
        let name = "\(scenario.name)-\(variant)"
        let label = CorpusLabel(
            file: name + ".jsonl", className: scenario.name, variant: variant, leak: scenario.leak, scope: builder.scope,
            leakStart: scenario.leak ? builder.leakStart : nil, limitTime: simulator.limitTime,
            growthEnd: builder.growthEnd, duration: Double(Int64((simulator.end * 1e6).rounded())) / 1e6, limit: limit,
            seed: seed, params: builder.params)
        return CorpusTrace(name: name, label: label, cgroup: cgroup, samples: simulator.samples)
    }

    /// A pod container's cgroup most of the time, a systemd service otherwise.
    static func cgroupPath(_ random: inout CorpusRandom) -> String {
        if random.chance(0.7) {
            let qos = random.chance(0.7) ? "/kubepods/burstable" : "/kubepods"
            return "\(qos)/pod\(random.uuid())/\(random.hex(64))"
        }
        let unit = random.pick(["api", "worker", "ingest", "billing", "search", "render", "queue", "gateway"])
        return "/system.slice/\(unit)-\(random.integer(1...9)).service"
    }

    /// Writes every trace as NAME.jsonl and their labels as labels.jsonl into
    /// `directory` (created if missing).
    public static func write(_ traces: [CorpusTrace], to directory: String) throws(CorpusError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CorpusError(.io, file: directory, detail: "cannot create the directory: \(error)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var labels = Data()
        for trace in traces {
            let path = directory + "/" + trace.fileName
            guard FileManager.default.createFile(atPath: path, contents: Data(trace.traceBytes())) else {
                throw CorpusError(.io, file: path, detail: "cannot write the trace")
            }
            do {
                labels.append(try encoder.encode(trace.label))
            } catch {
                throw CorpusError(.io, file: path, detail: "cannot encode its label: \(error)")
            }
            labels.append(UInt8(ascii: "\n"))
        }
        let path = directory + "/" + CorpusDirectory.labelsFile
        guard FileManager.default.createFile(atPath: path, contents: labels) else {
            throw CorpusError(.io, file: path, detail: "cannot write the labels")
        }
    }
}
