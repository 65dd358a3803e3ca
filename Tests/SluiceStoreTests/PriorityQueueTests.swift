import Foundation
import Testing

@testable import SluiceStore

private func message(_ n: Int) -> QueuedMessage {
    QueuedMessage(topic: "t/\(n)", payload: Array("\(n)".utf8), qos: 1, retain: false, properties: [], enqueuedAt: 1000)
}

@Suite struct PriorityQueueTests {
    private func withStore(_ body: (Store) async throws -> Void) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, clock: ManualClock(50_000).function)
        defer { store.close() }
        try await body(store)
    }

    @Test func classQueueNamesRoundTripAndTheDefaultClassIsTheBridgesOwnQueue() {
        #expect(PriorityQueues.queueName(bridge: "central", priority: 9) == "central")
        #expect(PriorityQueues.queueName(bridge: "central", priority: 0) == "central:p0")
        for priority in PriorityQueues.classes {
            let name = PriorityQueues.queueName(bridge: "a.b-c_d", priority: priority)
            #expect(PriorityQueues.parse(queue: name) == ("a.b-c_d", priority))
        }
        // Names that only look like class queues are bridges of the default class.
        for name in ["central:p9", "central:p10", "central:px", "central:", "central:p", "central:p0x"] {
            #expect(PriorityQueues.parse(queue: name) == (name, 9), "\(name)")
        }
    }

    @Test func bridgeStatsSumTheClassesAndDroppedExpiredIsCounted() async throws {
        try await withStore { store in
            _ = try await store.append(queue: "central", messages: (1...5).map(message), limits: .unlimited)
            _ = try await store.append(queue: "central:p0", messages: (1...3).map(message), limits: .unlimited)
            _ = try await store.append(queue: "other", messages: [message(1)], limits: .unlimited)
            #expect(try store.priorityClasses(bridge: "central") == [0, 9])
            #expect(try store.priorityClasses(bridge: "nothing") == [9])
            #expect(try store.bridgeNames() == ["central", "other"])
            // Seqs 2 and 3 expired; 7 is not queued: skipped, not counted.
            #expect(try await store.dropExpired(queue: "central:p0", seqs: [2, 3, 7]) == 2)
            let byClass = try store.classStats(bridge: "central")
            #expect(byClass.map(\.priority) == [0, 9])
            #expect(byClass.map(\.stats.depth) == [1, 5])
            #expect(byClass[0].stats.dropped[.expired] == 2)
            let whole = try store.bridgeStats(bridge: "central")
            #expect(whole.depth == 6)
            #expect(whole.dropped[.expired] == 2)
            #expect(whole.dropped.total == 2)
            try await store.deadLetter(queue: "central:p0", seqs: [1], code: 0x87)
            try await store.deadLetter(queue: "central", seqs: [1], code: 0x87)
            let dead = try store.bridgeDeadLetterCounts(bridge: "central")
            #expect(dead.current == 2 && dead.byReason == [0x87: 2])
        }
    }

    @Test func aVersion1MetaRecordIsStillReadAndItsCountersKept() throws {
        var meta = QueueMeta()
        meta.nextSeq = 42
        meta.count = 7
        meta.bytes = 700
        meta.dropped[.maxMessages] = 3
        meta.rejected[.storeFull] = 2
        // Version 1: the same layout with four reasons each (before `expired`).
        var old: [UInt8] = [1]
        for value in [meta.nextSeq, meta.count, meta.bytes] { old.appendBigEndian(value) }
        for value in meta.dropped.counts.prefix(4) { old.appendBigEndian(value) }
        for value in meta.rejected.counts.prefix(4) { old.appendBigEndian(value) }
        #expect(old.count == QueueMeta.version1Size)
        let decoded = try old.withUnsafeBytes { bytes throws(StoreError) in try QueueMeta.decode(bytes) }
        #expect(decoded == meta)
        let current = meta.encode()
        #expect(current.count == QueueMeta.encodedSize && current[0] == 2)
        #expect(try current.withUnsafeBytes { bytes throws(StoreError) in try QueueMeta.decode(bytes) } == meta)
        // A version-1 byte with the version-2 length (or the reverse) is damage, not a guess.
        var mixed = current
        mixed[0] = 1
        #expect(throws: StoreError.self) {
            try mixed.withUnsafeBytes { bytes throws(StoreError) in try QueueMeta.decode(bytes) }
        }
    }
}
