import Foundation
import Logging
@testable import MemwardenModel
@testable import MemwardenOutput
import MemwardenTestSupport
import Testing

@Suite struct SinkQueueTests {
    @Test func dropsTheOldestWhenFull() {
        let queue = SinkQueue<Int>(capacity: 3)
        var dropped = 0
        for i in 1...5 { dropped += queue.push(i) }
        #expect(dropped == 2)
        #expect(queue.popAll() == [3, 4, 5])
    }

    @Test func aRetriedElementGoesBackToTheFrontUnlessNewerOnesFilledTheQueue() {
        let queue = SinkQueue<Int>(capacity: 2)
        queue.push(1)
        queue.push(2)
        let first = queue.popFirst()!
        #expect(queue.pushFront(first))
        #expect(queue.popAll() == [1, 2])
        queue.push(3)
        queue.push(4)
        #expect(!queue.pushFront(2), "full of newer elements: the older one is the one dropped")
        #expect(queue.pop(upTo: 1) == [3])
    }

    @Test func aClosedQueueTakesNothingAndWakesItsWaiter() async {
        let queue = SinkQueue<Int>(capacity: 2)
        async let woken: Void = queue.wait()
        queue.close()
        await woken
        #expect(queue.push(1) == 1)
        #expect(queue.count == 0)
    }
}

@Suite struct StdoutSinkTests {
    let logger = Logger(label: "stdout-test")

    @Test func writesWholeLinesInOrder() async throws {
        let fds = try #require(closeOnExecPipe())
        let reader = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let sink = StdoutSink(writer: LineWriter(fd: fds[1]), capacity: 100, logger: logger)
        let services = RunningServices([sink])
        let events = AgentEvent.EventType.allCases.map { SampleEvents.make($0) }
        for event in events { sink.submit(event) }
        sink.submit(line: #"{"type":"stats","time":"2026-11-22T00:37:33.000Z"}"#)
        try await services.stop()
        close(fds[1])
        let lines = String(decoding: reader.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines == events.map { $0.jsonLine() } + [#"{"type":"stats","time":"2026-11-22T00:37:33.000Z"}"#])
        #expect(sink.statistics.delivered == UInt64(events.count + 1))
    }

    @Test func aStalledStdoutDropsTheOldestLinesInsteadOfBlocking() async throws {
        let fds = try #require(closeOnExecPipe())
        let reader = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let capacity = 100
        let sink = StdoutSink(writer: LineWriter(fd: fds[1]), capacity: capacity, logger: logger)
        let services = RunningServices([sink])
        let total = 5000
        let events = (0..<total).map { i in
            var event = SampleEvents.make(.budgetHigh)
            event.t = Double(i)
            return event
        }
        let lines = events.map { $0.jsonLine() }
        // megabytes into a pipe nobody reads: a submit that waited for stdout would never return
        try await waitForReturn("\(total) submits to return while nobody reads stdout") {
            for event in events { sink.submit(event) }
        }
        // nobody reads: the pipe fills, the writer stops holding the lines it took, the queue
        // drops its oldest. Whether the queue is also full depends on when the writer first ran:
        // on a busy machine it can take the whole queue after the last submit, so the stall is
        // told by lines neither written, dropped nor queued (in the writer's hands)
        try await waitUntil("the writer stalled on the full pipe with drops counted", seen: { "\(sink.statistics)" }) {
            let s = sink.statistics
            return s.droppedQueueFull > 0 && s.delivered + s.droppedQueueFull + UInt64(s.queueDepth) < UInt64(total)
        }
        let stalled = sink.statistics
        #expect(stalled.droppedQueueFull + stalled.delivered + UInt64(stalled.queueDepth) <= UInt64(total))

        // a reader appears: everything still queued or held by the writer comes out
        let drained = Task.detached { reader.readDataToEndOfFile() }
        try await waitUntil("every line written or dropped once read", seen: { "\(sink.statistics)" }) {
            let s = sink.statistics
            return s.queueDepth == 0 && s.delivered + s.droppedQueueFull == UInt64(total)
        }
        try await services.stop()
        close(fds[1])
        let out = String(decoding: await drained.value, as: UTF8.self).split(separator: "\n").map(String.init)
        let stats = sink.statistics
        #expect(stats.delivered + stats.droppedQueueFull == UInt64(total), "every line written or counted")
        #expect(out.count == Int(stats.delivered))
        // whole lines, in the order submitted, the newest kept
        let index = Dictionary(uniqueKeysWithValues: lines.enumerated().map { ($1, $0) })
        let positions = out.compactMap { index[$0] }
        #expect(positions.count == out.count, "no line cut or mixed with another")
        #expect(positions == positions.sorted())
        #expect(positions.last == total - 1)
    }
}
