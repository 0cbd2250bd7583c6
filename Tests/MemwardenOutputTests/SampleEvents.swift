import MemwardenModel

/// Events as the agent makes them, for every type: the schema test, the
/// sinks' tests and the HTTP tests share them.
enum SampleEvents {
    static let time: UInt64 = 1_795_000_000_123_000_000

    static let pod = PodMetadata(
        name: "shop-7d9f", namespace: "prod", uid: "1b2c3d4e-0000-4000-8000-000000000001", labels: ["app": "shop"],
        container: "api", qos: .burstable, memoryRequest: 256 << 20, memoryLimit: 512 << 20)

    static let containerIdentity = TargetIdentity(
        cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_000000000001.slice/cri-containerd-"
            + String(repeating: "ab", count: 32) + ".scope",
        runtime: .containerd, containerID: String(repeating: "ab", count: 32), podUID: "1b2c3d4e-0000-4000-8000-000000000001",
        qos: .burstable, pod: pod)

    static let unitIdentity = TargetIdentity(cgroup: "/system.slice/app.service", runtime: .systemd, systemdUnit: "app.service")

    static func processTarget(_ identity: TargetIdentity = containerIdentity, pid: Int32 = 4242) -> EventTarget {
        EventTarget(scope: .process, pid: pid, comm: "shop-api", identity: identity)
    }

    static func cgroupTarget(_ identity: TargetIdentity = containerIdentity) -> EventTarget {
        EventTarget(scope: .cgroup, identity: identity)
    }

    /// One event of a type, with every field its kind can carry.
    static func make(
        _ type: AgentEvent.EventType, target: EventTarget? = nil, node: String? = "node-1", time: UInt64 = time
    ) -> AgentEvent {
        let target = target ?? processTarget()
        func event(_ severity: AgentEvent.Severity, _ details: AgentEvent.Details, target: EventTarget? = target) -> AgentEvent {
            AgentEvent(type: type, severity: severity, epochNanoseconds: time, t: 12.5, node: node, target: target, details: details)
        }
        func budget(_ tier: BudgetTier, share: Double) -> AgentEvent.Details {
            .budget(
                BudgetDetails(
                    tier: tier, rule: "shop", budgetBytes: 512 << 20, usageBytes: UInt64(Double(512 << 20) * share),
                    share: share, growthBytesPerSecond: 1 << 20, secondsToBudget: 180))
        }
        switch type {
        case .leakSuspected:
            return event(
                .warning,
                .leak(
                    LeakDetails(
                        detectors: ["history"], confidence: 0.875, growthBytesPerSecond: 2_097_152,
                        secondsToLimit: 240.5, limit: 512 << 20, reasons: ["sustained_growth", "new_high"],
                        suspectedSeconds: nil, forecastInterval: 200...300, forecastModel: "linear")))
        case .leakUpdated:
            return event(
                .warning,
                .leak(
                    LeakDetails(
                        detectors: ["history"], confidence: 0.93, growthBytesPerSecond: 2_500_000,
                        secondsToLimit: 150.2, limit: 512 << 20, reasons: ["sustained_growth", "new_high"],
                        suspectedSeconds: 95, forecastInterval: 120...190.5, forecastModel: "quadratic")))
        case .leakCleared:
            return event(
                .info,
                .leak(
                    LeakDetails(
                        detectors: [], confidence: 0, growthBytesPerSecond: 0, secondsToLimit: nil, limit: nil,
                        reasons: ["process_exited"], suspectedSeconds: 31.25)))
        case .budgetWarning: return event(.warning, budget(.warning, share: 0.72))
        case .budgetHigh: return event(.warning, budget(.high, share: 0.83))
        case .budgetCritical: return event(.critical, budget(.critical, share: 0.91))
        case .budgetEmergency: return event(.critical, budget(.emergency, share: 0.97))
        case .budgetRecovered: return event(.info, budget(.warning, share: 0.6))
        case .responseThrottle:
            return event(
                .warning,
                .response(
                    ResponseDetails(
                        mode: .throttle, rule: "shop", dryRun: false, memoryHighBefore: nil, memoryHighAfter: 480 << 20,
                        floorBytes: 256 << 20, pressureMicroseconds: 1200,
                        verdict: ResponseVerdict(
                            target: processTarget().key, confidence: 0.91, suspectedSince: time - 300_000_000_000))),
                target: cgroupTarget())
        case .responseRestore:
            return event(
                .info,
                .response(
                    ResponseDetails(
                        mode: .throttle, rule: "shop", memoryHighBefore: 480 << 20, memoryHighAfter: nil,
                        reason: "leak_cleared")), target: cgroupTarget())
        case .responseSkipped:
            return event(
                .info, .response(ResponseDetails(mode: .throttle, rule: "shop", dryRun: true, reason: "cgroup_v1")),
                target: cgroupTarget())
        case .responseAnnotate:
            return event(
                .info,
                .response(
                    ResponseDetails(
                        mode: .annotate, rule: "shop",
                        annotations: ["memwarden.io/leak-suspected": "true", "memwarden.io/confidence": "0.875"])),
                target: cgroupTarget())
        case .policyReloaded:
            return event(.info, .policy(PolicyDetails(file: "/etc/memwarden/policy.yaml", rules: 3)), target: nil)
        case .policyRejected:
            return event(
                .warning,
                .policy(
                    PolicyDetails(
                        file: "/etc/memwarden/policy.yaml",
                        problems: ["/etc/memwarden/policy.yaml:7:5: rules[0].budget: \"12 parsecs\" is not a size"])),
                target: nil)
        case .agentStarted:
            return event(.info, .agent(AgentDetails(version: MemwardenVersion.current, message: "attached")), target: nil)
        case .agentStopping:
            return event(.info, .agent(AgentDetails(message: "SIGTERM")), target: nil)
        case .agentEventsLost:
            return event(.warning, .agent(AgentDetails(lost: ["ring_buffer": 12, "sink.webhook": 3])), target: nil)
        }
    }
}
