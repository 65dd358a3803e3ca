import Foundation
import Testing

@testable import SluiceStore

private struct Control: Equatable {
    var paused: Bool
    var generation: UInt64
}

private func control(_ store: Store, _ queue: String) throws -> Control {
    let value = try store.bridgeControl(queue: queue)
    return Control(paused: value.paused, generation: value.generation)
}

@Suite struct DeadLetterTests {
    private func withStore(_ body: (Store) async throws -> Void) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, clock: ManualClock(50_000).function)
        defer { store.close() }
        try await body(store)
    }

    @Test func movingIsOneTransactionAndCounted() async throws {
        try await withStore { store in
            _ = try await store.append(queue: "q", messages: (1...5).map { message($0) }, limits: .unlimited)
            // 9 is not queued: skipped, not counted.
            #expect(try await store.deadLetter(queue: "q", seqs: [2, 4, 9], code: 0x87) == 2)
            #expect(try await store.deadLetter(queue: "q", seqs: [5], code: 0x02) == 1)
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 3])
            let stats = try store.stats(queue: "q")
            #expect(stats.depth == 2)
            #expect(stats.dropped.total == 0)
            let letters = try store.deadLetters(queue: "q")
            #expect(letters.map(\.seq) == [2, 4, 5])
            #expect(letters.map(\.code) == [0x87, 0x87, 0x02])
            #expect(letters[0].message == message(2))
            #expect(letters[0].deadAt == 50_000)
            let counts = try store.deadLetterCounts(queue: "q")
            #expect(counts.current == 3)
            #expect(counts.byReason == [0x87: 2, 0x02: 1])
            #expect(try store.deadLetterCounts(queue: "other") == DeadLetterCounts())
            #expect(try store.deadLetters(queue: "other").isEmpty)
        }
    }

    @Test func requeueAppendsAtTheTailAndDropMovesThenDeletes() async throws {
        try await withStore { store in
            _ = try await store.append(queue: "q", messages: (1...3).map { message($0) }, limits: .unlimited)
            try await store.deadLetter(queue: "q", seqs: [1, 2], code: 0x87)
            #expect(try await store.requeueDeadLetters(queue: "q", seqs: [2, 7]) == [4])
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [3, 4])
            #expect(try store.read(queue: "q", after: 3, limit: 1).first?.message == message(2))
            #expect(try await store.requeueDeadLetters(queue: "q", seqs: nil) == [5])
            #expect(try store.deadLetterCounts(queue: "q").current == 0)
            #expect(try store.deadLetterCounts(queue: "q").byReason == [0x87: 2])  // history stays
            // The operator's drop: queued → dead letter (counted); dead letter → gone.
            #expect(try await store.dropMessage(queue: "q", seq: 3) == .movedToDeadLetters)
            #expect(try store.deadLetters(queue: "q").map(\.code) == [0x03])
            #expect(try await store.dropMessage(queue: "q", seq: 3) == .deletedDeadLetter)
            #expect(try await store.dropMessage(queue: "q", seq: 3) == .notFound)
            #expect(try store.deadLetterCounts(queue: "q").current == 0)
            #expect(try store.stats(queue: "q").depth == 2)
        }
    }

    @Test func controlRecordBumpsItsGeneration() async throws {
        try await withStore { store in
            #expect(try control(store, "q") == Control(paused: false, generation: 0))
            try await store.updateBridgeControl(queue: "q", paused: true)
            #expect(try control(store, "q") == Control(paused: true, generation: 1))
            try await store.updateBridgeControl(queue: "q", paused: nil)
            #expect(try control(store, "q") == Control(paused: true, generation: 2))
            try await store.updateBridgeControl(queue: "q", paused: false)
            #expect(try control(store, "q") == Control(paused: false, generation: 3))
            #expect(try control(store, "other") == Control(paused: false, generation: 0))
        }
    }

    @Test func badNamesAreRefused() async throws {
        try await withStore { store in
            await #expect(throws: StoreError.self) { try await store.deadLetter(queue: "", seqs: [1], code: 0x87) }
            #expect(throws: StoreError.self) { try store.deadLetters(queue: String(repeating: "x", count: 300)) }
        }
    }
}
