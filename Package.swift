// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The agent's resident memory is mostly pages of its own executable (BENCHMARKS.md, "Footprint"),
// so the release link is chosen for what a start touches, not only for size:
// - lld (the toolchain's own): gold, the default, cannot write packed relocations.
// - `-z pack-relative-relocs` (DT_RELR, glibc ≥ 2.36, Debian 12): 3 MB of RELA entries, which
//   the loader reads in full at every start, become 25 KB.
// - `--no-export-dynamic`: the static-stdlib link exports every Swift symbol of the program
//   (3.5 MB of .dynsym/.dynstr/.gnu.hash that the loader's lookups touch); nothing loads the
//   agent as a library or looks its symbols up by name. The cost: a fatal error's stack trace
//   from the stripped binary shows addresses only (the unstripped build symbolises them).
let releaseLinkFlags = [
    "-use-ld=lld",
    "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    "-Xlinker", "--no-export-dynamic",
]

let package = Package(
    name: "memwarden",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "memwarden", targets: ["memwarden"]),
        .executable(name: "leaksim", targets: ["leaksim"]),
        // scripts/fuzz builds it with libFuzzer and ASan; a plain build makes a replayer.
        .executable(name: "memwarden-fuzz", targets: ["memwarden-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // The policy file: Yams' Node API keeps every key's line and column (and, in 5.x, duplicate
        // keys, which the loader reports itself instead of stopping at the first).
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        // Outputs (issue 6): webhook/Alertmanager sinks, HMAC signature, metrics, HTTP server.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // libbpf from the system (Debian: libbpf-dev), found through pkg-config.
        .systemLibrary(
            name: "CLibbpf",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev"])]
        ),
        // libsystemd for sd_notify (READY=1, STOPPING=1, the watchdog); Debian: libsystemd-dev,
        // at runtime libsystemd0.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // The C side shared with the kernel program: ring-buffer structs (ebpf/memwarden.h)
        // and a thin shim over libbpf with prefixed functions.
        .target(
            name: "CMemwarden",
            dependencies: ["CLibbpf"],
            cSettings: [.headerSearchPath("../../ebpf")]
        ),
        // Compiles ebpf/*.bpf.c with the toolchain's clang and embeds the objects.
        .executableTarget(name: "bpf-embed", path: "Sources/bpf-embed"),
        .plugin(
            name: "BPFObjectPlugin",
            capability: .buildTool(),
            dependencies: ["bpf-embed"]
        ),
        // The embedded objects and their skeletons (maps, programs, typed settings): a
        // change in ebpf/ rebuilds this small module.
        .target(
            name: "MemwardenBPF",
            dependencies: ["CMemwarden"],
            swiftSettings: strictSettings,
            plugins: ["BPFObjectPlugin"]
        ),
        // The modules run in the direction of the data (docs/architecture.md): Model; then the
        // stages that produce facts and verdicts (Kernel, Identity, Kubernetes, Detection,
        // Policy); then those that act on them (Response, Output); then Agent, the wiring. Each
        // imports only modules before it, which ArchitectureTests checks.
        // Facts and events: the values every stage shares, the event schema, the seams
        // (EventSink, PodMetadataSource) and the small system helpers.
        .target(
            name: "MemwardenModel",
            dependencies: ["CMemwarden"],
            swiftSettings: strictSettings
        ),
        // The BPF program: load, attach, drain the ring buffer, the kernel's counters.
        .target(
            name: "MemwardenKernel",
            dependencies: [
                "CMemwarden", "MemwardenBPF", "MemwardenModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // pid → cgroup → container → pod: cgroup paths, /proc, the cgroup index.
        .target(
            name: "MemwardenIdentity",
            dependencies: ["MemwardenModel"],
            swiftSettings: strictSettings
        ),
        // The API server: client, pod watch and index (pod metadata), used by Identity's seam
        // and by the Kubernetes sink.
        .target(
            name: "MemwardenKubernetes",
            dependencies: [
                "MemwardenModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Traces, the detectors' userspace build, the assessor and the confirmation stage.
        .target(
            name: "MemwardenDetection",
            dependencies: ["CMemwarden", "MemwardenModel"],
            swiftSettings: strictSettings
        ),
        // The policy file: parsing, validation, rule matching, the hot-reloading store.
        .target(
            name: "MemwardenPolicy",
            dependencies: [
                "MemwardenModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        // Budgets and the memory.high ladder, the cgroup files it writes, its state file.
        .target(
            name: "MemwardenResponse",
            dependencies: [
                "MemwardenIdentity", "MemwardenModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Where events go: stdout, webhook, Alertmanager, Kubernetes; metrics.
        .target(
            name: "MemwardenOutput",
            dependencies: [
                "MemwardenIdentity", "MemwardenKubernetes", "MemwardenModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // The wiring: the pipeline, the HTTP API, systemd, the one ServiceGroup.
        .target(
            name: "MemwardenAgent",
            dependencies: [
                "CMemwarden", "CSystemd",
                "MemwardenDetection", "MemwardenIdentity", "MemwardenKernel", "MemwardenKubernetes",
                "MemwardenModel", "MemwardenOutput", "MemwardenPolicy", "MemwardenResponse",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "memwarden",
            dependencies: [
                "MemwardenAgent", "MemwardenDetection", "MemwardenIdentity", "MemwardenKernel",
                "MemwardenKubernetes", "MemwardenModel", "MemwardenOutput", "MemwardenPolicy",
                "MemwardenResponse",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings,
            linkerSettings: [.unsafeFlags(releaseLinkFlags, .when(configuration: .release))]
        ),
        .executableTarget(
            name: "leaksim",
            swiftSettings: strictSettings
        ),
        // The fuzz targets, one per parser of outside input (docs/reliability.md, "Fuzzing").
        .executableTarget(
            name: "memwarden-fuzz",
            dependencies: [
                "MemwardenAgent", "MemwardenDetection", "MemwardenIdentity", "MemwardenKubernetes",
                "MemwardenModel", "MemwardenPolicy", "MemwardenResponse",
            ],
            swiftSettings: strictSettings
        ),
        // What the test targets share: waiting on a condition with a deadline, never a fixed
        // sleep; pipes no child inherits; free ports; the failure helpers throw.
        .target(
            name: "MemwardenTestSupport",
            dependencies: ["CMemwarden"],
            path: "Tests/MemwardenTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "MemwardenTests",
            dependencies: [
                "MemwardenAgent", "MemwardenBPF", "MemwardenDetection", "MemwardenIdentity", "MemwardenKernel",
                "MemwardenKubernetes", "MemwardenModel", "MemwardenOutput", "MemwardenPolicy",
                "MemwardenResponse",
                "MemwardenTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Outputs against real receivers: webhook servers, Alertmanager, Prometheus, the schema.
        .testTarget(
            name: "MemwardenOutputTests",
            dependencies: [
                "MemwardenAgent", "MemwardenDetection", "MemwardenIdentity", "MemwardenModel", "MemwardenOutput",
                "MemwardenResponse",
                "MemwardenTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Real kernel: loads the BPF program, attaches, runs child processes.
        .testTarget(
            name: "MemwardenKernelTests",
            dependencies: [
                "MemwardenAgent", "MemwardenDetection", "MemwardenIdentity", "MemwardenKernel",
                "MemwardenKubernetes", "MemwardenModel", "MemwardenOutput", "MemwardenResponse",
                "MemwardenTestSupport",
                "leaksim", "memwarden",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
