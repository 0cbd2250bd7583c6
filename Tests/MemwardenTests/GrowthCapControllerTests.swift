import MemwardenModel
import MemwardenResponse
import Testing

/// The growth cap's arithmetic, stepped by hand: where it starts, how fast it
/// rises, what stops it rising, and when it lets go.
struct GrowthCapControllerTests {
    static let page: UInt64 = 4096
    static let second: UInt64 = 1_000_000_000
    static let rate: UInt64 = 128 << 10
    static let settings = ThrottleSettings(interval: .seconds(6), maxGrowthRate: rate)

    static func controller(start: UInt64, highEvents: UInt64? = nil, settings: ThrottleSettings = settings) -> GrowthCapController {
        GrowthCapController(settings: settings, pageSize: page, start: start, now: 0, highEvents: highEvents)
    }

    @Test("it starts a page above what cannot be reclaimed, rounded up; no room under the ceiling is no cap")
    func startValue() {
        #expect(GrowthCapController.startValue(nonReclaimable: 100 * Self.page, ceiling: nil, pageSize: Self.page) == 101 * Self.page)
        #expect(GrowthCapController.startValue(nonReclaimable: 100 * Self.page + 1, ceiling: nil, pageSize: Self.page) == 102 * Self.page)
        #expect(
            GrowthCapController.startValue(nonReclaimable: 100 * Self.page, ceiling: 101 * Self.page + 5, pageSize: Self.page)
                == 101 * Self.page)
        #expect(GrowthCapController.startValue(nonReclaimable: 100 * Self.page, ceiling: 100 * Self.page, pageSize: Self.page) == nil)
        #expect(GrowthCapController.startValue(nonReclaimable: .max - 10, ceiling: nil, pageSize: Self.page) == nil)
    }

    @Test("pressed on, it rises by rate × elapsed once an interval, page-aligned, and never past the ceiling")
    func risesAtTheRate() {
        let start: UInt64 = 330 << 20
        let ceiling: UInt64 = 331 << 20
        var cap = Self.controller(start: start)
        var current = start
        var raises: [UInt64] = []
        for tick in 1...120 {
            // the leak sits on the cap, as the kernel holds it there
            let decision = cap.observe(now: UInt64(tick) * Self.second, usage: current, highEvents: nil, current: current, ceiling: ceiling)
            #expect(decision.step != .release)
            #expect(decision.value >= current && decision.value <= ceiling && decision.value % Self.page == 0)
            if decision.step == .raise {
                #expect(tick % 6 == 0)
                raises.append(decision.value - current)
            }
            current = decision.value
        }
        // 1 MiB of room at 768 KiB an interval: one full raise, then the rest up to the ceiling, then nothing
        #expect(raises == [768 << 10, 256 << 10])
        #expect(current == ceiling)
    }

    @Test("held back by tick timing, the raise covers the whole time since the last one")
    func lateTicksCatchUp() {
        var cap = Self.controller(start: 1 << 30)
        let decision = cap.observe(now: 9 * Self.second, usage: 1 << 30, highEvents: nil, current: 1 << 30, ceiling: nil)
        #expect(decision.step == .raise)
        #expect(decision.value == (1 << 30) + 9 * (128 << 10))
    }

    @Test("no allowance is banked while the cgroup does not press: after a pause, one interval's worth")
    func noBankingWhileIdle() {
        let start: UInt64 = 1 << 30
        var cap = Self.controller(start: start)
        // 4 MiB under the cap for half a minute: under the release margin, over one raise's slack
        for tick in 1...30 {
            let decision = cap.observe(
                now: UInt64(tick) * Self.second, usage: start - (4 << 20), highEvents: nil, current: start, ceiling: nil)
            #expect(decision.step == .hold)
        }
        // it presses again: the next raise grants the time since the last interval boundary, not the pause
        var raised: GrowthCapController.Decision?
        for tick in 31...36 {
            let decision = cap.observe(now: UInt64(tick) * Self.second, usage: start, highEvents: nil, current: start, ceiling: nil)
            if decision.step == .raise { raised = decision }
        }
        #expect(raised?.value == start + 6 * (128 << 10))
    }

    @Test("memory.events' high count rising is pressing, whatever usage read just after reclaim")
    func highEventsArePressing() {
        let start: UInt64 = 1 << 30
        var cap = Self.controller(start: start, highEvents: 10)
        var value = start
        for tick in 1...6 {
            // usage read low (reclaim just ran), but the kernel counted breaches of memory.high
            let decision = cap.observe(
                now: UInt64(tick) * Self.second, usage: start - (4 << 20), highEvents: 10 + UInt64(tick), current: value,
                ceiling: nil)
            value = decision.value
        }
        #expect(value == start + 6 * (128 << 10))
    }

    @Test("with the kernel's count known only breaches press; once the suspicion cleared, a minute without one releases")
    func clearedSuspicion() {
        let start: UInt64 = 1 << 30
        var cap = Self.controller(start: start, highEvents: 5)
        var value = start
        // the detectors saw only the capped rate and cleared; the leak goes on breaching: the cap stays and rises
        for tick in UInt64(1)...120 {
            let decision = cap.observe(
                now: tick * Self.second, usage: value, highEvents: 5 + tick, current: value, ceiling: nil, suspected: false)
            #expect(decision.step != .release)
            value = decision.value
        }
        #expect(value == start + 20 * 6 * Self.rate)
        // the allocations stop: usage sits at the cap, no breach; nothing is raised, and a minute on it lets go
        var released: UInt64?
        for tick in UInt64(121)...200 where released == nil {
            let decision = cap.observe(
                now: tick * Self.second, usage: value, highEvents: 125, current: value, ceiling: nil, suspected: false)
            #expect(decision.value == value)
            if decision.step == .release { released = tick }
        }
        #expect(released == 180)

        // while still suspected, sitting at the cap is neither a reason to raise nor to let go
        var suspected = Self.controller(start: start, highEvents: 5)
        for tick in UInt64(1)...300 {
            let decision = suspected.observe(now: tick * Self.second, usage: start, highEvents: 5, current: start, ceiling: nil)
            #expect(decision.step == .hold)
        }
    }

    @Test("far below the cap for the release window: release; a leak slower than the rate is never released")
    func release() {
        let start: UInt64 = 1 << 30
        var cap = Self.controller(start: start)
        #expect(cap.releaseAfter == 60 * Self.second)
        #expect(cap.releaseMargin == 60 * (128 << 10))
        var steps: [GrowthCapController.Step] = []
        for tick in 1...61 {
            steps.append(cap.observe(now: UInt64(tick) * Self.second, usage: 512 << 20, highEvents: nil, current: start, ceiling: nil).step)
        }
        // quiet from tick 1: the window is over at tick 61
        #expect(steps.dropLast().allSatisfy { $0 == .hold })
        #expect(steps.last == .release)

        // a leak at 32 KiB/s under a 128 KiB/s cap: it catches up after each raise, and never lets go
        var slow = Self.controller(start: start)
        var usage = start - (1 << 20)
        var current = start
        for tick in 1...3600 {
            usage += 32 << 10
            let decision = slow.observe(now: UInt64(tick) * Self.second, usage: usage, highEvents: nil, current: current, ceiling: nil)
            #expect(decision.step != .release)
            current = decision.value
            usage = min(usage, current)
        }
        // it was never held back: the cap stayed ahead of a leak slower than its rate
        #expect(usage == start - (1 << 20) + 3600 * (32 << 10))
    }

    @Test("a rate under a page per interval accrues until a page is due; a huge one saturates")
    func extremeRates() {
        let start: UInt64 = 1 << 30
        var slow = Self.controller(start: start, settings: ThrottleSettings(interval: .seconds(1), maxGrowthRate: 1000))
        var raisedAt: UInt64?
        for tick in 1...10 where raisedAt == nil {
            let decision = slow.observe(now: UInt64(tick) * Self.second, usage: start, highEvents: nil, current: start, ceiling: nil)
            if decision.step == .raise {
                raisedAt = UInt64(tick)
                #expect(decision.value == start + Self.page)
            }
        }
        // 4096 bytes at 1000 bytes a second: the fifth second
        #expect(raisedAt == 5)

        var fast = Self.controller(start: start, settings: ThrottleSettings(maxGrowthRate: .max))
        let decision = fast.observe(now: 6 * Self.second, usage: start, highEvents: nil, current: start, ceiling: 2 << 30)
        #expect(decision.value == 2 << 30)
        #expect(fast.observe(now: 12 * Self.second, usage: 2 << 30, highEvents: nil, current: 2 << 30, ceiling: nil).value
            == UInt64.max / Self.page * Self.page)
    }
}
