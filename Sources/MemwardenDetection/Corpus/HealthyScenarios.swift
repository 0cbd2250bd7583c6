#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Healthy shapes seen in production: memory that moves, grows for a while or
/// cycles, but is bounded. Sizes in MiB, times in seconds unless a parameter's
/// name says otherwise.
enum HealthyScenarios {
    static let mib = corpusMiB

    static func flatNoise(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 2048) * mib
        let duration = b.uniform("duration_h", 1, 6) * 3600
        b.single(comm: (["nginx", "postgres", "redis-server", "envoy", "node"]), dt: 2, until: duration) {
            _, _ in heap
        }
    }

    static func gcSawtooth(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 128, 2048) * mib
        let period = b.logUniform("period_s", 10, 600)
        // a cycle's allocation rate stays under 8 MiB/s: busier heaps exist, but
        // their lines would dominate the corpus
        let amplitudeDrawn = min(b.random.uniform(0.1, 0.5) * heap, 8 * mib * period) / mib
        let amplitude = b.set("amplitude_mib", amplitudeDrawn) * mib
        let durationDrawn = max(3600, b.random.uniform(12, 20) * period)
        let duration = b.set("duration_s", durationDrawn)
        let dt = min(1, max(0.05, period / 60))
        var phase = 0.0
        var cyclePeriod = period
        var cycleAmplitude = amplitude
        b.single(comm: (["java", "node", "dotnet", "app"]), dt: dt, until: duration) { _, random in
            phase += dt / cyclePeriod
            if phase >= 1 {
                phase -= 1
                cyclePeriod = period * random.uniform(0.9, 1.1)
                cycleAmplitude = amplitude * random.uniform(0.85, 1.15)
            }
            return heap + cycleAmplitude * phase
        }
    }

    static func warmupExponential(_ b: inout ScenarioBuilder) {
        let start = b.logUniform("start_mib", 64, 512) * mib
        let growthDrawn = b.random.uniform(0.5, 3) * start / mib
        let growth = b.set("growth_mib", growthDrawn)
        let tau = b.uniform("tau_min", 2, 60) * 60
        // the growth left is under 1 MiB from here on
        let end = tau * log(growth)
        b.growthEnd = end
        let duration = end + b.uniform("plateau_h", 1, 3) * 3600
        b.single(comm: (["java", "python3", "node"]), dt: min(5, max(0.2, tau / 200)), until: duration) {
            t, _ in start + growth * mib * (1 - exp(-t / tau))
        }
    }

    static func warmupLinear(_ b: inout ScenarioBuilder) {
        let start = b.logUniform("start_mib", 64, 512) * mib
        let growthDrawn = b.random.uniform(0.3, 3) * start / mib
        let growth = b.set("growth_mib", growthDrawn) * mib
        let ramp = b.uniform("ramp_min", 5, 60) * 60
        b.growthEnd = ramp
        let duration = ramp + b.uniform("plateau_h", 1, 3) * 3600
        b.single(comm: (["elasticsearch", "java", "ruby"]), dt: 1, until: duration) { t, _ in
            start + growth * min(1, t / ramp)
        }
    }

    static func step(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let jump = b.logUniform("jump_mib", 50, 1024) * mib
        let at = b.uniform("jump_at_min", 10, 60) * 60
        let ramp = b.uniform("jump_ramp_s", 1, 20)
        b.growthEnd = at + ramp
        let duration = at + ramp + b.uniform("plateau_h", 1, 3) * 3600
        b.single(comm: (["api", "python3", "go-service"]), dt: 0.5, until: duration) { t, _ in
            heap + jump * min(1, max(0, (t - at) / ramp))
        }
    }

    static func fileCache(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let cacheMax = b.uniform("cache_gib", 1, 6) * corpusGiB
        let tau = b.uniform("tau_min", 10, 120) * 60
        let duration = b.uniform("duration_h", 2, 6) * 3600
        let pid = b.pid()
        let comm = b.random.pick(["postgres", "mysqld", "rsync", "clickhouse"])
        let fileStart = b.uniform("file_mib", 10, 100) * mib
        var noise = b.noise()
        b.run(dt: 2, until: duration) { t, random in
            [
                SimulatedProcess(
                    pid: pid, comm: comm, anon: heap + noise.anon(2, &random),
                    file: fileStart + cacheMax * (1 - exp(-t / tau)) + noise.file(2, &random))
            ]
        }
    }

    static func batchCycles(_ b: inout ScenarioBuilder) {
        let idle = b.logUniform("idle_mib", 64, 256) * mib
        let peak = b.uniform("peak_gib", 1, 4) * corpusGiB
        let grow = b.uniform("grow_min", 5, 20) * 60
        let periodDrawn = max(b.random.uniform(10, 60), grow / 60 + 3)
        let period = b.set("period_min", periodDrawn) * 60
        let cycles = b.integer("cycles", 3...6)
        let free = b.uniform("free_s", 5, 30)
        let duration = Double(cycles) * period + b.uniform("tail_min", 5, 30) * 60
        b.single(comm: (["spark-worker", "etl", "python3"]), dt: 1, until: duration) { t, _ in
            let inCycle = t.truncatingRemainder(dividingBy: period)
            if inCycle < grow { return idle + (peak - idle) * inCycle / grow }
            return idle + (peak - idle) * max(0, 1 - (inCycle - grow) / free)
        }
    }

    static func loadCycle(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 128, 2048) * mib
        let period = b.logUniform("period_h", 1, 24) * 3600
        let amplitude = b.uniform("amplitude", 0.2, 1) * heap
        let phase = b.uniform("phase", 0, 2 * Double.pi)
        let duration = b.uniform("cycles", 3, 4) * period
        b.single(comm: (["api", "node", "java"]), dt: min(5, max(1, period / 2000)), until: duration) {
            t, _ in
            let x = 2 * Double.pi * t / period
            return heap + amplitude * (0.5 - 0.5 * cos(x)) + 0.15 * amplitude * sin(2 * x + phase)
        }
    }

    static func cacheFill(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 512) * mib
        let bound = b.logUniform("bound_mib", 100, 2048) * mib
        let fill = b.uniform("fill_min", 10, 120) * 60
        let rate = bound / fill
        var cache = 0.0
        var full: Double?
        let duration = fill * 1.2 + b.uniform("plateau_h", 1, 3) * 3600
        b.single(comm: (["memcached", "api", "varnishd"]), dt: 1, until: duration) { t, random in
            // insertions arrive unevenly; eviction holds the cache at its bound
            cache = min(bound, cache + rate * random.uniform(0, 2))
            if cache >= bound && full == nil { full = t }
            return heap + cache
        }
        b.growthEnd = full
    }

    static func startupSpike(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let factor = b.uniform("spike_factor", 1.5, 4)
        let length = b.uniform("spike_s", 5, 60)
        let duration = b.uniform("duration_h", 1, 3) * 3600
        b.single(comm: (["java", "python3", "ruby"]), dt: 0.5, until: duration) { t, _ in
            t < length ? heap * (1 + (factor - 1) * min(1, t / 2)) : heap
        }
    }

    static func periodicSpikes(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let every = b.uniform("every_min", 2, 30) * 60
        let size = b.uniform("spike_mib", 100, 800) * mib
        let length = b.uniform("spike_s", 2, 30)
        let duration = b.uniform("duration_h", 2, 5) * 3600
        var next = every * b.random.uniform(0.2, 1)
        var spikeEnd = -1.0
        var spikeSize = size
        b.single(comm: (["api", "report-gen", "java"]), dt: 0.5, until: duration) { t, random in
            if t >= next {
                spikeEnd = t + length
                spikeSize = size * random.uniform(0.8, 1.2)
                next = t + every * random.uniform(0.8, 1.2)
            }
            return heap + (t < spikeEnd ? spikeSize : 0)
        }
    }

    static func boundedRandomWalk(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 256, 2048) * mib
        let sigma = b.uniform("walk_sigma_mib", 10, 100) * mib
        let tau = b.uniform("walk_tau_min", 5, 60) * 60
        let duration = b.uniform("duration_h", 3, 8) * 3600
        var walk = Wander(sigma: sigma, tau: tau)
        b.single(comm: (["python3", "node", "api"]), dt: 2, until: duration) { _, random in
            heap + walk.next(2, &random)
        }
    }

    static func shrinking(_ b: inout ScenarioBuilder) {
        let start = b.logUniform("start_mib", 256, 4096) * mib
        let release = b.uniform("release", 0.2, 0.6)
        let tau = b.uniform("tau_min", 30, 180) * 60
        let duration = b.uniform("duration_h", 2, 6) * 3600
        b.single(comm: (["java", "mongod", "api"]), dt: 2, until: duration) { t, _ in
            start * (1 - release * (1 - exp(-t / tau)))
        }
    }

    static func processChurn(_ b: inout ScenarioBuilder) {
        let (parentComm, workerComm) = b.random.pick([
            ("gunicorn", "gunicorn"), ("php-fpm", "php-fpm"), ("celery", "celery"), ("make", "cc1plus"),
        ])
        let parentHeap = b.uniform("parent_mib", 30, 100) * mib
        let arrival = b.uniform("arrival_mean_s", 10, 60)
        let lifeMax = b.uniform("life_max_s", 10, 300)
        let workerMin = b.uniform("worker_min_mib", 20, 100) * mib
        let workerMaxDrawn = workerMin / mib + b.random.uniform(0, 100)
        let workerMax = b.set("worker_max_mib", workerMaxDrawn) * mib
        let workerGrowth = b.uniform("worker_growth_mib", 0, 50) * mib
        let duration = b.uniform("duration_h", 1, 2) * 3600
        let parent = b.pid()
        // pids for workers come from the builder before the run: draw a pool
        let pool = (0..<Int(duration / arrival * 3) + 16).map { _ in b.pid() }
        struct Worker {
            var pid: Int32
            var start: Double
            var end: Double
            var size: Double
        }
        var workers: [Worker] = []
        var nextPid = 0
        var nextArrival = 0.0
        let file = b.uniform("file_mib", 10, 60) * mib
        b.run(dt: 0.5, until: duration) { t, random in
            while t >= nextArrival && nextPid < pool.count {
                workers.append(
                    Worker(
                        pid: pool[nextPid], start: t, end: t + random.uniform(5, lifeMax),
                        size: random.uniform(workerMin, workerMax)))
                nextPid += 1
                nextArrival += -log(max(random.unit(), 1e-9)) * arrival
            }
            workers.removeAll { $0.end <= t }
            var live = [
                SimulatedProcess(
                    pid: parent, comm: parentComm, anon: parentHeap + random.uniform(-0.2, 0.2) * mib, file: file)
            ]
            for worker in workers {
                let age = (t - worker.start) / (worker.end - worker.start)
                live.append(
                    SimulatedProcess(
                        pid: worker.pid, comm: workerComm, anon: worker.size + workerGrowth * age,
                        file: file * 0.5, virtualExtra: 128 * mib))
            }
            return live
        }
    }

    static func mallocChurn(_ b: inout ScenarioBuilder) {
        let workers = b.integer("workers", 1...4)
        let maxBlocks = b.integer("max_blocks", 8...32)
        let rate = b.uniform("ops_per_s", 0.5, 5)
        let maxBlock = 64 * mib
        let duration = b.uniform("duration_min", 10, 40) * 60
        let parent = b.pid()
        let pids = (0..<workers).map { _ in b.pid() }
        var blocks = Array(repeating: [Double](), count: workers)
        let dt = 0.1
        b.run(dt: dt, until: duration) { _, random in
            var live = [SimulatedProcess(pid: parent, comm: "stress-ng", anon: 4 * mib, file: 6 * mib)]
            for i in 0..<workers {
                if random.chance(rate * dt) {
                    if !blocks[i].isEmpty && (blocks[i].count >= maxBlocks || random.chance(0.5)) {
                        blocks[i].remove(at: random.integer(0...(blocks[i].count - 1)))
                    } else {
                        blocks[i].append(random.uniform(4096, maxBlock))
                    }
                }
                live.append(
                    SimulatedProcess(
                        pid: pids[i], comm: "stress-ng-mallo", anon: 2 * mib + blocks[i].reduce(0, +), file: 6 * mib))
            }
            return live
        }
    }

    /// A JVM's RSS follows its committed heap, not the GC cycle inside it: the
    /// heap grows once or twice under load (pages touched over seconds) and is
    /// not given back.
    static func jvmHeapResize(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 256, 2048) * mib
        let resizes = b.integer("resizes", 1...2)
        let times = (0..<resizes).map { b.uniform("resize\($0 + 1)_at_min", 10, 120) * 60 }.sorted()
        let factors = (0..<resizes).map { b.uniform("resize\($0 + 1)_factor", 1.2, 1.6) }
        let ramp = b.uniform("resize_ramp_s", 5, 60)
        b.growthEnd = times.last! + ramp
        let duration = times.last! + ramp + b.uniform("plateau_h", 1, 3) * 3600
        b.single(comm: ["java"], dt: 1, until: duration) { t, _ in
            var committed = heap
            for (at, factor) in zip(times, factors) {
                committed *= 1 + (factor - 1) * min(1, max(0, (t - at) / ramp))
            }
            return committed
        }
    }
}
