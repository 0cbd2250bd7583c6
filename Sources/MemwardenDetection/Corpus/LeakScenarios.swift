#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Leaks: each runs until its cgroup reaches the limit and the OOM killer
/// ends it. Every class with a steady underlying rate records it as
/// `rate_mib_per_min` (the slow-class target selects on it).
enum LeakScenarios {
    static let mib = corpusMiB

    /// Seconds per quarter MiB of growth, within what the class needs.
    private static func dt(rateMiBPerMin rate: Double, low: Double = 0.1, high: Double = 5) -> Double {
        min(high, max(low, 15 / rate))
    }

    static func linear(_ b: inout ScenarioBuilder) {
        let rate = b.logUniform("rate_mib_per_min", 0.1, 100)
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let timeDrawn = min(24 * 60, max(15, b.random.logUniform(256, 4096) / rate))
        let time = b.set("time_to_limit_min", timeDrawn) * 60
        let growth = rate * mib * time / 60
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 120 * mib, growthBytes: growth)
        b.single(
            comm: (["api", "java", "node", "python3"]), dt: dt(rateMiBPerMin: rate), until: time * 3,
            limit: limit, fileMiB: 20...120, shmemMiB: 0
        ) { t, _ in heap + rate * mib * t / 60 }
    }

    static func verySlow(_ b: inout ScenarioBuilder) {
        let rate = b.uniform("rate_mib_per_min", 0.05, 0.5)
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let timeDrawn = min(36, max(6, b.random.logUniform(64, 256) / rate / 60))
        let time = b.set("time_to_limit_h", timeDrawn) * 3600
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 60 * mib, growthBytes: rate * mib * time / 60)
        b.single(
            comm: (["sshd", "containerd", "fluent-bit", "api"]), dt: 5, until: time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0, noise: 0.3...1.5
        ) { t, _ in heap + rate * mib * t / 60 }
    }

    static func fast(_ b: inout ScenarioBuilder) {
        let rate = b.logUniform("rate_mib_per_s", 10, 200) * mib
        let limitMiB = b.logUniform("limit_mib", 512, 4096)
        let heap = b.uniform("heap_mib", 30, min(300, limitMiB / 2)) * mib
        let onset = b.uniform("onset_s", 5, 60)
        b.leakStart = onset
        let limit = UInt64(limitMiB.rounded()) * UInt64(mib)
        b.single(
            comm: (["python3", "api", "converter"]), dt: 0.05, until: onset + Double(limit) / rate * 3,
            limit: limit, fileMiB: 10...60, shmemMiB: 0
        ) { t, _ in heap + rate * max(0, t - onset) }
    }

    static func underSawtooth(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 128, 1024) * mib
        let period = b.logUniform("period_s", 10, 300)
        let amplitudeDrawn = min(b.random.uniform(0.1, 0.4) * heap, 8 * mib * period) / mib
        let amplitude = b.set("amplitude_mib", amplitudeDrawn) * mib
        let rate = b.logUniform("rate_mib_per_min", 0.5, 20)
        let time = b.uniform("time_to_limit_h", 1, 4) * 3600
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + amplitude + 80 * mib, growthBytes: rate * mib * time / 60)
        let dt = min(1, max(0.05, period / 60))
        var phase = 0.0
        var cyclePeriod = period
        b.single(
            comm: (["java", "node", "dotnet"]), dt: dt, until: time * 3, limit: limit,
            fileMiB: 20...60, shmemMiB: 0
        ) { t, random in
            phase += dt / cyclePeriod
            if phase >= 1 {
                phase -= 1
                cyclePeriod = period * random.uniform(0.9, 1.1)
            }
            return heap + rate * mib * t / 60 + amplitude * phase
        }
    }

    static func staircase(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let every = b.uniform("step_every_min", 1, 30) * 60
        let size = b.uniform("step_mib", 8, 64) * mib
        let ramp = b.uniform("step_ramp_s", 1, 10)
        let steps = b.integer("steps_to_limit", 8...40)
        let first = b.uniform("first_step_min", 5, 30) * 60
        _ = b.set("rate_mib_per_min", size / mib / (every / 60))
        b.leakStart = first
        let limit = b.leakLimit(startBytes: heap + 100 * mib, growthBytes: (Double(steps) - 0.5) * size)
        b.single(
            comm: (["api", "worker", "java"]), dt: 1, until: first + every * Double(steps) * 3,
            limit: limit, fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in
            guard t >= first else { return heap }
            let done = ((t - first) / every).rounded(.down)
            let inStep = (t - first) - done * every
            return heap + size * (done + min(1, inStep / ramp))
        }
    }

    static func noisy(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 256, 2048) * mib
        let rate = b.logUniform("rate_mib_per_min", 1, 20)
        let sigma = b.uniform("wander_sigma_mib", 10, 50) * mib
        let tau = b.uniform("wander_tau_s", 60, 300)
        let time = b.uniform("time_to_limit_h", 1, 6) * 3600
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 3 * sigma + 80 * mib, growthBytes: rate * mib * time / 60)
        var wander = Wander(sigma: sigma, tau: tau)
        b.single(
            comm: (["python3", "api", "ruby"]), dt: 2, until: time * 3, limit: limit,
            fileMiB: 20...120, shmemMiB: 0
        ) { t, random in
            heap + rate * mib * t / 60 + wander.next(2, &random) + random.uniform(-5, 5) * mib
        }
    }

    static func quadratic(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let growth = b.logUniform("growth_to_limit_mib", 256, 4096) * mib
        let time = b.uniform("time_to_limit_h", 1, 8) * 3600
        let a = growth / (time * time)
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 100 * mib, growthBytes: growth)
        b.single(
            comm: (["api", "java", "indexer"]), dt: 2, until: time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in heap + a * t * t }
    }

    static func exponential(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let initial = b.uniform("initial_mib", 2, 20) * mib
        let tau = b.uniform("tau_min", 20, 180) * 60
        let growth = b.logUniform("growth_to_limit_mib", 256, 4096) * mib
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 100 * mib, growthBytes: growth)
        let time = tau * log(1 + growth / initial)
        b.single(
            comm: (["api", "node", "queue"]), dt: 2, until: time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in heap + initial * (exp(t / tau) - 1) }
    }

    static func lateOnset(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let onset = b.uniform("onset_h", 2, 8) * 3600
        let rate = b.logUniform("rate_mib_per_min", 0.5, 20)
        let time = b.uniform("time_to_limit_h", 1, 6) * 3600
        b.leakStart = onset
        let limit = b.leakLimit(startBytes: heap + 100 * mib, growthBytes: rate * mib * time / 60)
        b.single(
            comm: (["api", "java", "scheduler"]), dt: 2, until: onset + time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in heap + rate * mib * max(0, t - onset) / 60 }
    }

    static func spreadWorkers(_ b: inout ScenarioBuilder) {
        b.scope = "cgroup"
        let workers = b.integer("workers", 4...12)
        let rate = b.logUniform("rate_mib_per_min", 1, 20)
        let time = b.uniform("time_to_limit_h", 1, 8) * 3600
        let master = b.pid()
        let pids = (0..<workers).map { _ in b.pid() }
        let sizes = (0..<workers).map { _ in b.random.uniform(50, 300) * mib }
        let shares = (0..<workers).map { _ in b.random.uniform(0.5, 1.5) }
        let shareSum = shares.reduce(0, +)
        let rates = shares.map { rate * mib / 60 * $0 / shareSum }
        let sigma = b.uniform("noise_mib", 1, 4) * mib
        var noises = (0..<workers).map { _ in Wander(sigma: sigma, tau: b.random.uniform(20, 120)) }
        let file = b.uniform("file_mib", 10, 60) * mib
        let comm = b.random.pick(["gunicorn", "puma", "uwsgi", "httpd"])
        b.leakStart = 0
        let start = sizes.reduce(0, +) + 40 * mib + Double(workers + 1) * file + 4 * sigma * Double(workers)
        let limit = b.leakLimit(startBytes: start, growthBytes: rate * mib * time / 60)
        b.run(dt: 2, until: time * 3, limit: limit) { t, random in
            var live = [SimulatedProcess(pid: master, comm: comm, anon: 40 * mib, file: file)]
            for i in 0..<workers {
                live.append(
                    SimulatedProcess(
                        pid: pids[i], comm: comm, anon: sizes[i] + rates[i] * t + noises[i].next(2, &random),
                        file: file))
            }
            return live
        }
    }

    static func restartingProcess(_ b: inout ScenarioBuilder) {
        b.scope = "cgroup"
        let (helperComm, workerComm) = b.random.pick([
            ("shm-broker", "render-worker"), ("postmaster", "postgres"), ("supervisord", "python3"),
        ])
        let helperHeap = b.uniform("helper_mib", 20, 80) * mib
        let life = b.uniform("life_min", 2, 10) * 60
        let chunk = b.uniform("left_behind_mib", 4, 32) * mib
        let workerSize = b.uniform("worker_mib", 100, 500) * mib
        let lives = b.integer("lives_to_limit", 10...60)
        _ = b.set("rate_mib_per_min", chunk / mib / (life / 60))
        let helper = b.pid()
        let pool = (0..<(lives * 3 + 4)).map { _ in b.pid() }
        let file = b.uniform("file_mib", 10, 60) * mib
        let limit = b.leakLimit(
            startBytes: helperHeap + workerSize + 2 * file + 16 * mib, growthBytes: (Double(lives) - 0.5) * chunk)
        var current = 0
        var born = 0.0
        var dies = life * b.random.uniform(0.8, 1.2)
        b.leakStart = dies
        var leftBehind = 0.0
        var noise = Wander(sigma: 2 * mib, tau: 60)
        b.run(dt: 1, until: life * Double(lives) * 3, limit: limit) { t, random in
            if t >= dies {
                // the worker dies (crash, OOM of its own, max-requests) and its shared segment stays
                leftBehind += chunk
                current += 1
                born = t
                dies = t + life * random.uniform(0.8, 1.2)
            }
            let age = t - born
            let worker = workerSize * (0.2 + 0.8 * min(1, age / 30)) + noise.next(1, &random)
            return [
                SimulatedProcess(pid: helper, comm: helperComm, anon: helperHeap, file: file, shmem: leftBehind),
                SimulatedProcess(pid: pool[current], comm: workerComm, anon: worker, file: file, shmem: 4 * mib),
            ]
        }
    }

    static func withSpikes(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 1024) * mib
        let rate = b.logUniform("rate_mib_per_min", 0.5, 20)
        let every = b.uniform("spike_every_min", 2, 20) * 60
        let size = b.uniform("spike_mib", 100, 500) * mib
        let length = b.uniform("spike_s", 2, 20)
        let time = b.uniform("time_to_limit_h", 1, 6) * 3600
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + 1.2 * size + 80 * mib, growthBytes: rate * mib * time / 60)
        var next = every * b.random.uniform(0.2, 1)
        var spikeEnd = -1.0
        var spikeSize = size
        b.single(
            comm: (["api", "report-gen", "java"]), dt: 0.5, until: time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0
        ) { t, random in
            if t >= next {
                spikeEnd = t + length
                spikeSize = size * random.uniform(0.8, 1.2)
                next = t + every * random.uniform(0.8, 1.2)
            }
            return heap + rate * mib * t / 60 + (t < spikeEnd ? spikeSize : 0)
        }
    }

    static func onDailyCycle(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 128, 2048) * mib
        let period = b.logUniform("period_h", 1, 24) * 3600
        let amplitude = b.uniform("amplitude", 0.2, 0.6) * heap
        let rate = b.logUniform("rate_mib_per_min", 0.05, 2)
        let cycles = b.uniform("cycles_to_limit", 1.5, 4)
        let time = cycles * period
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + amplitude + 60 * mib, growthBytes: rate * mib * time / 60)
        b.single(
            comm: (["api", "node", "java"]), dt: min(5, max(1, period / 2000)), until: time * 3,
            limit: limit, fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in
            heap + amplitude * (0.5 - 0.5 * cos(2 * Double.pi * t / period)) + rate * mib * t / 60
        }
    }

    /// A tmpfs file or a shared segment that only grows: anon stays flat.
    static func inShmem(_ b: inout ScenarioBuilder) {
        let heap = b.logUniform("heap_mib", 64, 512) * mib
        let rate = b.logUniform("rate_mib_per_min", 0.5, 20)
        let time = b.uniform("time_to_limit_h", 1, 6) * 3600
        let file = b.uniform("file_mib", 20, 80) * mib
        b.leakStart = 0
        let limit = b.leakLimit(startBytes: heap + file + 40 * mib, growthBytes: rate * mib * time / 60)
        let pid = b.pid()
        let comm = b.random.pick(["postgres", "chrome", "shm-writer"])
        var noise = b.noise()
        b.run(dt: 2, until: time * 3, limit: limit) { t, random in
            [
                SimulatedProcess(
                    pid: pid, comm: comm, anon: heap + noise.anon(2, &random), file: file + noise.file(2, &random),
                    shmem: 2 * mib + rate * mib * t / 60)
            ]
        }
    }

    static func afterWarmup(_ b: inout ScenarioBuilder) {
        let start = b.logUniform("start_mib", 64, 512) * mib
        let warmupDrawn = b.random.uniform(0.5, 2) * start / mib
        let warmup = b.set("warmup_growth_mib", warmupDrawn) * mib
        let tau = b.uniform("warmup_tau_min", 2, 20) * 60
        let onsetDrawn = tau * b.random.uniform(1, 3)
        let onset = b.set("onset_s", onsetDrawn)
        let rate = b.logUniform("rate_mib_per_min", 0.5, 20)
        let time = b.uniform("time_to_limit_h", 1, 6) * 3600
        b.leakStart = onset
        let limit = b.leakLimit(startBytes: start + warmup + 100 * mib, growthBytes: rate * mib * time / 60)
        b.single(
            comm: (["java", "api", "node"]), dt: 2, until: onset + time * 3, limit: limit,
            fileMiB: 20...80, shmemMiB: 0
        ) { t, _ in start + warmup * (1 - exp(-t / tau)) + rate * mib * max(0, t - onset) / 60 }
    }
}
