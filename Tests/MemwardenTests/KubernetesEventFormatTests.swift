import Testing

@testable import MemwardenModel
@testable import MemwardenOutput

struct KubernetesEventFormatTests {
    static let pod = PodMetadata(name: "web-0", namespace: "shop", uid: "u-1", container: "app")
    static let time: UInt64 = 1_795_000_000_123_456_789

    static func event(_ type: AgentEvent.EventType, _ details: AgentEvent.Details, severity: AgentEvent.Severity = .warning) -> AgentEvent {
        AgentEvent(
            type: type, severity: severity, epochNanoseconds: time, node: "node-a",
            target: EventTarget(scope: .process, pid: 42, comm: "java", identity: TargetIdentity(cgroup: "/kubepods/x", pod: pod)),
            details: details)
    }

    static let leak = LeakDetails(
        detectors: ["linear_trend", "composition"], confidence: 0.834, growthBytesPerSecond: 5 << 20, secondsToLimit: 1800,
        limit: 1 << 30, reasons: ["anon_growth"], suspectedSeconds: 600)

    static func budget(_ tier: BudgetTier) -> AgentEvent.Details {
        .budget(BudgetDetails(tier: tier, rule: "shop-default", budgetBytes: 1 << 30, usageBytes: 900 << 20, share: 0.879, growthBytesPerSecond: nil, secondsToBudget: 90))
    }

    @Test func leakSuspectedSetsBothLeakAnnotations() {
        let format = KubernetesEventFormat(Self.event(.leakSuspected, .leak(Self.leak)))
        #expect(format.reason == "LeakSuspected")
        #expect(format.action == "Detected")
        #expect(format.type == "Warning")
        #expect(format.note.contains("container app (pid 42 java)"))
        #expect(format.note.contains("5.0 MiB/s"))
        #expect(format.note.contains("30 min"))
        #expect(format.annotations[KubernetesEventFormat.leakSuspectedAnnotation] == .some("true"))
        #expect(format.annotations[KubernetesEventFormat.leakSinceAnnotation] == .some("2026-11-18T11:06:40.123Z"))
    }

    @Test func leakClearedRemovesThem() {
        let format = KubernetesEventFormat(Self.event(.leakCleared, .leak(Self.leak), severity: .info))
        #expect(format.reason == "LeakCleared")
        #expect(format.type == "Normal")
        #expect(format.annotations.count == 2)
        #expect(format.annotations.values.allSatisfy { $0 == nil })
    }

    @Test(arguments: BudgetTier.allCases)
    func budgetTiers(tier: BudgetTier) {
        let format = KubernetesEventFormat(Self.event(.budget(tier), Self.budget(tier)))
        #expect(format.reason == "Budget" + tier.rawValue.prefix(1).uppercased() + tier.rawValue.dropFirst())
        #expect(format.annotations == [KubernetesEventFormat.budgetTierAnnotation: tier.rawValue])
        #expect(format.note.contains("87.9%"))
        let recovered = KubernetesEventFormat(Self.event(.budgetRecovered, Self.budget(tier), severity: .info))
        #expect(recovered.reason == "BudgetRecovered")
        #expect(recovered.annotations == [KubernetesEventFormat.budgetTierAnnotation: String?.none])
    }

    @Test func growthCapSaysTheRateAndTheAllowance() {
        let cap = ResponseDetails(
            mode: .throttle, rule: "r", memoryHighAfter: 346_034_176, reason: "growth_cap_raise",
            growthCap: GrowthCapDetails(rateBytesPerSecond: 128 << 10, allowanceBytes: 39_321_600))
        let format = KubernetesEventFormat(Self.event(.responseThrottle, .response(cap)))
        #expect(format.reason == "MemoryThrottled")
        #expect(format.note.hasSuffix(": memory it cannot give back, growth slowed to 128.0 KiB/s, 37.5 MiB allowed since the cap started"))
    }

    /// The forecast under the cap: (ceiling − usage) / rate, in the event and in the note.
    @Test func growthCapForecastsTheCeilingAtItsRate() {
        let details = GrowthCapDetails(
            rateBytesPerSecond: 128 << 10, allowanceBytes: 0, usageBytes: 346_030_080, ceilingBytes: 402_653_184)
        #expect(details.secondsToCeiling == 432)
        #expect(GrowthCapDetails(rateBytesPerSecond: 128 << 10, allowanceBytes: 0, usageBytes: 346_030_080).secondsToCeiling == nil)
        #expect(GrowthCapDetails(rateBytesPerSecond: 1, allowanceBytes: 0, usageBytes: 9, ceilingBytes: 8).secondsToCeiling == 0)
        let cap = ResponseDetails(mode: .throttle, rule: "r", memoryHighAfter: 346_034_176, reason: "growth_cap", growthCap: details)
        let event = Self.event(.responseThrottle, .response(cap))
        #expect(KubernetesEventFormat(event).note.hasSuffix("; at this rate the limit in \(KubernetesEventFormat.duration(432))"))
        #expect(event.jsonLine().contains(#""seconds_to_ceiling":432}"#), "\(event.jsonLine())")
    }

    @Test func throttleAndRestoreButNotInDryRun() {
        let throttle = ResponseDetails(mode: .throttle, rule: "r", memoryHighBefore: nil, memoryHighAfter: 768 << 20)
        let format = KubernetesEventFormat(Self.event(.responseThrottle, .response(throttle)))
        #expect(format.reason == "MemoryThrottled")
        #expect(format.note.contains("768.0 MiB"))
        #expect(format.annotations == [KubernetesEventFormat.throttledAnnotation: "true"])
        var dry = throttle
        dry.dryRun = true
        let dryFormat = KubernetesEventFormat(Self.event(.responseThrottle, .response(dry)))
        #expect(dryFormat.action == "WouldThrottle")
        #expect(dryFormat.annotations.isEmpty)
        let restore = KubernetesEventFormat(
            Self.event(.responseRestore, .response(ResponseDetails(mode: .throttle, rule: "r", reason: "leak_cleared")), severity: .info))
        #expect(restore.annotations == [KubernetesEventFormat.throttledAnnotation: String?.none])
        #expect(restore.note.contains("leak_cleared"))
    }

    @Test func limitsOfTheEventsAPI() {
        var leak = Self.leak
        leak.reasons = Array(repeating: "a_very_long_reason_é", count: 200)
        let format = KubernetesEventFormat(Self.event(.leakSuspected, .leak(leak)))
        #expect(format.note.utf8.count <= 1024)
        #expect(format.note.hasSuffix("…"))
        #expect(KubernetesEventFormat.truncate(String(repeating: "é", count: 100), to: 128).utf8.count <= 128)
        #expect(KubernetesEventFormat.truncate("short", to: 128) == "short")
    }

    @Test func microTime() {
        #expect(KubernetesSink.microTime(Self.time) == "2026-11-18T11:06:40.123456Z")
        #expect(KubernetesSink.microTime(1_000_000_000_000_005_000) == "2001-09-09T01:46:40.000005Z")
    }
}
