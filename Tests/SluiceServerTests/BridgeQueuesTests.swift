import Foundation
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceBridge
import SluiceConfig
import SluiceStore
import Testing

@testable import SluiceServer

/// A bridge's class queues on a real store in a temporary folder and a real event loop; no sockets.
private struct QueuesUnderTest {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let folder: URL
    let store: Store
    let queues: BridgeQueues
    /// Fed by the store's events, as GatewayService feeds the bridges'.
    let storeChanges = StoreChangeSignal()
    var loop: any EventLoop { group.next() }

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-queues-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        store = try Store(
            path: folder.appendingPathComponent("store.lmdb").path,
            onEvent: { [storeChanges] in storeChanges.note($0) }
        )
        let text = """
            connection edge
            address 127.0.0.1:1883
            topic telemetry/# out 1
            topic alarms/# out 1 "" "" priority 0
            """
        let config = try GatewayConfig.parse(text, fileName: "queues.conf").bridges[0]
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        queues = BridgeQueues(
            config: config,
            store: store,
            loop: group.next(),
            logger: quiet,
            storeChanges: self.storeChanges
        )
    }

    func append(_ topics: [String], priority: Int) async throws {
        try await append(messages: topics.map(Self.message(topic:)), priority: priority)
    }

    func append(messages: [QueuedMessage], priority: Int) async throws {
        let limits = QueueLimits(maxMessages: .max, maxBytes: .max, maxAge: nil, policy: .dropOldest)
        let queue = PriorityQueues.queueName(bridge: "edge", priority: priority)
        _ = try await store.append(queue: queue, messages: messages, limits: limits)
    }

    /// Asks fetches on the loop, back to back; returns each answer (topics) in the order it came, and
    /// whether every answer ran on the loop.
    func fetch(_ asks: [(after: UInt64?, limit: Int)], skip: Set<UInt64> = []) async throws -> (
        answers: [[String]], seqs: [[UInt64]], onLoop: Bool
    ) {
        let result = try await fetchItems(asks, skip: skip)
        return (result.answers.map { $0.map(\.message.topic) }, result.answers.map { $0.map(\.seq) }, result.onLoop)
    }

    /// `fetch`, with the items as the link gets them.
    func fetchItems(
        _ asks: [(after: UInt64?, limit: Int)],
        skip: Set<UInt64> = []
    ) async throws -> (answers: [[QueuedItem]], onLoop: Bool) {
        let answers = NIOLockedValueBox<(items: [[QueuedItem]], onLoop: Bool)>(([], true))
        let loop = self.loop
        let done = loop.makePromise(of: Void.self)
        let queues = self.queues
        loop.execute {
            @Sendable func record(_ items: [QueuedItem]) {
                let finished = answers.withLockedValue { state in
                    state.items.append(items)
                    state.onLoop = state.onLoop && loop.inEventLoop
                    return state.items.count == asks.count
                }
                if finished { done.succeed() }
            }
            for ask in asks {
                // Answered at once from memory, or later from the store.
                if let items = queues.fetch(after: ask.after, limit: ask.limit, skip: skip, answer: record) {
                    record(items)
                }
            }
        }
        try await done.futureResult.get()
        return answers.withLockedValue { ($0.items, $0.onLoop) }
    }

    /// Appends as the gateway's `DurableBatcher` does: the committed records go to the cache too.
    func appendLive(_ topics: [String], priority: Int, limits: QueueLimits = .unlimited) async throws {
        try await appendLive(messages: topics.map(Self.message(topic:)), priority: priority, limits: limits)
    }

    func appendLive(messages: [QueuedMessage], priority: Int, limits: QueueLimits = .unlimited) async throws {
        let queue = PriorityQueues.queueName(bridge: "edge", priority: priority)
        let results = try await store.append(queue: queue, messages: messages, limits: limits)
        queues.committed(queue: queue, messages: messages, results: results)
    }

    /// A message without properties, its topic as payload.
    static func message(topic: String) -> QueuedMessage {
        QueuedMessage(topic: topic, payload: Array(topic.utf8), qos: 1, retain: false, properties: [], enqueuedAt: 0)
    }

    /// Records sent from memory so far.
    func servedFromMemory() async throws -> UInt64 {
        let queues = self.queues
        return try await loop.submit { queues.cacheStatus.counters.served }.get()
    }

    func finish() async throws {
        try await queues.shutdown().get()
        store.close()
        try await group.shutdownGracefully()
        try? FileManager.default.removeItem(at: folder)
    }
}

@Suite("Bridge class queues: fetches read off the loop")
struct BridgeQueuesTests {
    @Test func fetchAnswersOnTheLoopHighestClassFirstInSeqOrder() async throws {
        let test = try QueuesUnderTest()
        try await test.append(["telemetry/1", "telemetry/2"], priority: PriorityQueues.defaultClass)
        try await test.append(["alarms/1", "alarms/2"], priority: 0)
        let result = try await test.fetch([(nil, 10)])
        try await test.finish()
        #expect(result.answers == [["alarms/1", "alarms/2", "telemetry/1", "telemetry/2"]])
        #expect(result.seqs == [[1, 2, 3, 4]])
        #expect(result.onLoop)
    }

    @Test func reloadedRulesAddTheirClassesToTheQueuesRead() async throws {
        let test = try QueuesUnderTest()
        test.queues.updateRules([RuleClass(priority: 2, ttl: nil), RuleClass(priority: 0, ttl: nil)])
        try await test.append(["telemetry/two"], priority: 2)
        let result = try await test.fetch([(nil, 10)])
        let queues = test.queues
        let names = try await test.loop.submit { queues.queueNames }.get()
        try await test.finish()
        #expect(result.answers == [["telemetry/two"]])
        #expect(
            names == [0, 2, PriorityQueues.defaultClass].map { PriorityQueues.queueName(bridge: "edge", priority: $0) }
        )
    }

    @Test func answersComeInTheOrderFetchesWereAsked() async throws {
        let test = try QueuesUnderTest()
        try await test.append((1...6).map { "telemetry/\($0)" }, priority: PriorityQueues.defaultClass)
        // The second ask continues after the first's link seqs; the third finds nothing more.
        let result = try await test.fetch([(nil, 2), (2, 3), (5, 5), (6, 5)])
        try await test.finish()
        #expect(result.seqs == [[1, 2], [3, 4, 5], [6], []])
        #expect(result.answers[2] == ["telemetry/6"])
    }

    @Test func aReplayFromTheHeadSkipsSeqsWhoseRemovalIsPending() async throws {
        let test = try QueuesUnderTest()
        try await test.append((1...4).map { "telemetry/\($0)" }, priority: PriorityQueues.defaultClass)
        _ = try await test.fetch([(nil, 4)])
        // A new connection asks from the head while 1 and 3 are acknowledged, removal not committed.
        let replay = try await test.fetch([(nil, 4)], skip: [1, 3])
        try await test.finish()
        #expect(replay.answers == [["telemetry/2", "telemetry/4"]])
    }

    @Test func aFetchAskedAfterShutdownIsAnsweredEmpty() async throws {
        let test = try QueuesUnderTest()
        try await test.append(["telemetry/1"], priority: PriorityQueues.defaultClass)
        try await test.queues.shutdown().get()
        let result = try await test.fetch([(nil, 4)])
        try await test.finish()
        #expect(result.answers == [[]])
    }

    @Test func aCachedPayloadDoesNotKeepTheBufferItWasReadInto() async throws {
        let test = try QueuesUnderTest()
        _ = try await test.fetch([(nil, 10)])  // drained: live records are served from memory from here on
        // Two 64-byte payloads sliced out of one 4 KiB read buffer, as the broker hands them over.
        var read = ByteBufferAllocator().buffer(capacity: 4096)
        read.writeRepeatingByte(7, count: 4096)
        let payloads = [read.getSlice(at: 0, length: 64)!, read.getSlice(at: 64, length: 64)!]
        let messages = payloads.enumerated().map { index, payload in
            QueuedMessage(topic: "telemetry/\(index)", payload: payload, enqueuedAt: 0)
        }
        let queue = PriorityQueues.queueName(bridge: "edge", priority: PriorityQueues.defaultClass)
        let results = try await test.store.append(queue: queue, messages: messages, limits: .unlimited)
        test.queues.committed(queue: queue, messages: messages, results: results)
        let queues = test.queues
        let served = try await test.loop.submit {
            queues.fetch(after: 0, limit: 10, skip: []) { _ in }?.map(\.message.payload)
        }.get()
        try await test.finish()
        #expect(served?.count == 2)
        #expect(served?.allSatisfy { $0.readableBytes == 64 && $0.storageCapacity < 512 } == true)
        #expect(served?.first.map { Array($0.readableBytesView) } == Array(repeating: 7, count: 64))
    }

    @Test func liveRecordsAfterADrainedReadComeFromMemoryInOrder() async throws {
        let test = try QueuesUnderTest()
        try await test.append(["telemetry/old"], priority: PriorityQueues.defaultClass)
        let first = try await test.fetch([(nil, 10)])  // the backlog, from the store: every class drained
        try await test.appendLive(["telemetry/1", "telemetry/2"], priority: PriorityQueues.defaultClass)
        try await test.appendLive(["alarms/1"], priority: 0)
        let live = try await test.fetch([(1, 10)])
        let served = try await test.servedFromMemory()
        try await test.finish()
        #expect(first.answers == [["telemetry/old"]])
        #expect(live.answers == [["alarms/1", "telemetry/1", "telemetry/2"]])
        #expect(live.seqs == [[2, 3, 4]])
        #expect(live.onLoop)
        #expect(served == 3)
    }

    @Test func aBacklogDrainsFromTheStoreBeforeLiveRecordsFromMemory() async throws {
        let test = try QueuesUnderTest()
        try await test.append((1...3).map { "telemetry/old\($0)" }, priority: PriorityQueues.defaultClass)
        // Live records arrive before the backlog is read: they wait their turn behind it.
        try await test.appendLive(["telemetry/live1", "telemetry/live2"], priority: PriorityQueues.defaultClass)
        let result = try await test.fetch([(nil, 2), (2, 2), (4, 2), (5, 2)])
        try await test.finish()
        #expect(
            result.answers == [
                ["telemetry/old1", "telemetry/old2"], ["telemetry/old3", "telemetry/live1"], ["telemetry/live2"], [],
            ]
        )
    }

    @Test func aRecordAppendedOutOfBandIsNotJumped() async throws {
        let test = try QueuesUnderTest()
        _ = try await test.fetch([(nil, 10)])  // empty: every class drained
        try await test.append(["telemetry/requeued"], priority: PriorityQueues.defaultClass)  // no notification
        try await test.appendLive(["telemetry/live"], priority: PriorityQueues.defaultClass)
        let result = try await test.fetch([(0, 10)])
        let served = try await test.servedFromMemory()
        try await test.finish()
        #expect(result.answers == [["telemetry/requeued", "telemetry/live"]])
        #expect(served == 0)
    }

    @Test func aStoreChangeSendsTheNextFetchToTheStore() async throws {
        let test = try QueuesUnderTest()
        _ = try await test.fetch([(nil, 10)])
        // drop_oldest at a bound of 1: the second append drops the first record in its own commit.
        let limits = QueueLimits(maxMessages: 1, maxBytes: .max, maxAge: nil, policy: .dropOldest)
        try await test.appendLive(["telemetry/1"], priority: PriorityQueues.defaultClass, limits: limits)
        try await test.appendLive(["telemetry/2"], priority: PriorityQueues.defaultClass, limits: limits)
        let result = try await test.fetch([(0, 10)])
        let served = try await test.servedFromMemory()
        try await test.finish()
        #expect(result.answers == [["telemetry/2"]])  // not the dropped one from memory
        #expect(served == 0)
    }

    @Test func aFailedAppendEmptiesTheCache() async throws {
        let test = try QueuesUnderTest()
        _ = try await test.fetch([(nil, 10)])
        try await test.appendLive(["telemetry/1"], priority: PriorityQueues.defaultClass)
        test.queues.appendFailed()
        let result = try await test.fetch([(0, 10)])
        let served = try await test.servedFromMemory()
        try await test.finish()
        #expect(result.answers == [["telemetry/1"]])
        #expect(served == 0)
    }

    @Test func aNewConnectionReplaysFromTheStoreAndTheCacheTakesOverAfterIt() async throws {
        let test = try QueuesUnderTest()
        _ = try await test.fetch([(nil, 10)])
        try await test.appendLive(["telemetry/1", "telemetry/2"], priority: PriorityQueues.defaultClass)
        let sent = try await test.fetch([(0, 10)])
        // Reconnect: 1 and 2 go again from the store; the drained read lets 3 come from memory.
        let replay = try await test.fetch([(nil, 10)])
        try await test.appendLive(["telemetry/3"], priority: PriorityQueues.defaultClass)
        let live = try await test.fetch([(2, 10)])
        let served = try await test.servedFromMemory()
        try await test.finish()
        #expect(sent.answers == [["telemetry/1", "telemetry/2"]])
        #expect(replay.answers == [["telemetry/1", "telemetry/2"]])
        #expect(live.answers == [["telemetry/3"]])
        #expect(served == 3)
    }

    /// A message carrying MQTT 5 properties and a rule TTL, from the store or from memory: the one past its TTL is
    /// dropped and counted `expired`, the live one goes with its user property and what is left of its TTL.
    @Test(arguments: [false, true])
    func anExpiredMessageIsDroppedAndALiveOneKeepsItsProperties(fromMemory: Bool) async throws {
        let test = try QueuesUnderTest()
        let now = Store.wallClockMilliseconds()
        func message(_ topic: String, ttl: UInt32, age: UInt64) -> QueuedMessage {
            var properties = Properties()
            properties.userProperties = [UserProperty("k", "v")]
            properties.messageExpiryInterval = ttl
            return QueuedMessage(
                topic: topic,
                payload: Array(topic.utf8),
                properties: properties.storageBytes(),
                enqueuedAt: now - age
            )
        }
        let messages = [message("telemetry/old", ttl: 2, age: 5_000), message("telemetry/new", ttl: 60, age: 10_000)]
        let result: (answers: [[QueuedItem]], onLoop: Bool)
        if fromMemory {
            _ = try await test.fetch([(nil, 10)])  // empty: every class drained, so live records come from memory
            try await test.appendLive(messages: messages, priority: PriorityQueues.defaultClass)
            result = try await test.fetchItems([(0, 10)])
            #expect(try await test.servedFromMemory() == 2)
        } else {
            try await test.append(messages: messages, priority: PriorityQueues.defaultClass)
            result = try await test.fetchItems([(nil, 10)])
        }
        let elapsed = Int((Store.wallClockMilliseconds() - now) / 1000)  // seconds, on a loaded machine too
        var expired: UInt64 = 0
        for _ in 0..<200 where expired == 0 {  // up to 10 s: the drop commits on the writer thread
            expired = try test.store.stats(queue: "edge").dropped[.expired]
            if expired == 0 { try await Task.sleep(for: .milliseconds(50)) }
        }
        try await test.finish()
        let sent = try #require(result.answers.first?.first)
        #expect(result.answers.map { $0.map(\.message.topic) } == [["telemetry/new"]])
        #expect(sent.message.properties.userProperties == [UserProperty("k", "v")])
        #expect((49 - elapsed...50).contains(Int(sent.message.properties.messageExpiryInterval ?? 0)))
        #expect(expired == 1)
    }
}
