import Foundation
import Testing

@testable import SluiceStore

@Suite struct BoundsTests {
    private func withStore(
        clock: ManualClock = ManualClock(10_000),
        _ body: (Store) async throws -> Void
    ) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, clock: clock.function)
        defer { store.close() }
        try await body(store)
    }

    @Test func maxMessagesDropOldest() async throws {
        try await withStore { store in
            let limits = QueueLimits(maxMessages: 3, policy: .dropOldest)
            let results = try await store.append(queue: "q", messages: (1...5).map { message($0) }, limits: limits)
            #expect(results == (1...5).map { .stored(seq: UInt64($0)) })
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [3, 4, 5])
            let stats = try store.stats(queue: "q")
            #expect(stats.depth == 3)
            #expect(stats.dropped[.maxMessages] == 2)
            #expect(stats.dropped.total == 2)
            #expect(stats.rejected.total == 0)
            // One more, in a later transaction: one more drop.
            _ = try await store.append(queue: "q", messages: [message(6)], limits: limits)
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [4, 5, 6])
            #expect(try store.stats(queue: "q").dropped[.maxMessages] == 3)
        }
    }

    @Test func maxMessagesRejectNew() async throws {
        try await withStore { store in
            let limits = QueueLimits(maxMessages: 3, policy: .rejectNew)
            let results = try await store.append(queue: "q", messages: (1...5).map { message($0) }, limits: limits)
            #expect(
                results == [
                    .stored(seq: 1), .stored(seq: 2), .stored(seq: 3), .rejected(.maxMessages), .rejected(.maxMessages),
                ]
            )
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 2, 3])
            // After the broker acks one, there is room for exactly one.
            try await store.remove(queue: "q", seqs: [1])
            let more = try await store.append(queue: "q", messages: [message(6), message(7)], limits: limits)
            #expect(more == [.stored(seq: 4), .rejected(.maxMessages)])
            let stats = try store.stats(queue: "q")
            #expect(stats.depth == 3)
            #expect(stats.rejected[.maxMessages] == 3)
            #expect(stats.dropped.total == 0)
        }
    }

    @Test func maxBytesDropOldest() async throws {
        try await withStore { store in
            let size = RecordCodec.encode(message(1)).count  // every message(i) for i < 10 has this size
            let limits = QueueLimits(maxBytes: 3 * size + size / 2, policy: .dropOldest)
            let results = try await store.append(queue: "q", messages: (1...5).map { message($0) }, limits: limits)
            #expect(results.compactMap(\.seq) == [1, 2, 3, 4, 5])
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [3, 4, 5])
            var stats = try store.stats(queue: "q")
            #expect(stats.bytes == UInt64(3 * size))
            #expect(stats.dropped[.maxBytes] == 2)
            // A message larger than the whole bound can never fit: rejected even under drop_oldest,
            // and nothing is dropped for it.
            let huge = message(6, payloadSize: 4 * size)
            #expect(try await store.append(queue: "q", messages: [huge], limits: limits) == [.rejected(.maxBytes)])
            stats = try store.stats(queue: "q")
            #expect(stats.depth == 3)
            #expect(stats.dropped[.maxBytes] == 2)
            #expect(stats.rejected[.maxBytes] == 1)
        }
    }

    @Test func maxBytesRejectNew() async throws {
        try await withStore { store in
            let size = RecordCodec.encode(message(1)).count
            let limits = QueueLimits(maxBytes: 3 * size + size / 2, policy: .rejectNew)
            let results = try await store.append(queue: "q", messages: (1...5).map { message($0) }, limits: limits)
            #expect(
                results == [
                    .stored(seq: 1), .stored(seq: 2), .stored(seq: 3), .rejected(.maxBytes), .rejected(.maxBytes),
                ]
            )
            let stats = try store.stats(queue: "q")
            #expect(stats.depth == 3)
            #expect(stats.bytes == UInt64(3 * size))
            #expect(stats.rejected[.maxBytes] == 2)
            #expect(stats.dropped.total == 0)
        }
    }

    @Test(arguments: [QueueLimits.Policy.dropOldest, .rejectNew])
    func maxAge(policy: QueueLimits.Policy) async throws {
        let clock = ManualClock(10_000)
        try await withStore(clock: clock) { store in
            let limits = QueueLimits(maxAge: 1_000, policy: policy)
            let first = try await store.append(
                queue: "q",
                messages: [
                    message(1, enqueuedAt: 9_500), message(2, enqueuedAt: 9_800), message(3, enqueuedAt: 8_000),
                ],
                limits: limits
            )
            // Already older than maxAge when it arrives: refused under either policy.
            #expect(first == [.stored(seq: 1), .stored(seq: 2), .rejected(.maxAge)])

            // 600 ms later, the next append drops message 1 (9_500 < 10_600 − 1_000) in its transaction.
            clock.now = 10_600
            let second = try await store.append(queue: "q", messages: [message(4, enqueuedAt: 10_600)], limits: limits)
            #expect(second == [.stored(seq: 3)])
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.message.enqueuedAt) == [9_800, 10_600])
            var stats = try store.stats(queue: "q")
            #expect(stats.dropped[.maxAge] == 1)
            #expect(stats.rejected[.maxAge] == 1)
            #expect(stats.oldestEnqueuedAt == 9_800)

            // An explicit expire with its own `now` drops message 2 only.
            #expect(try await store.expire(queue: "q", maxAge: 1_000, now: 11_000) == 1)
            #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [3])
            // With the store's clock: nothing is old enough yet, then everything is.
            #expect(try await store.expire(queue: "q", maxAge: 1_000) == 0)
            clock.now = 20_000
            #expect(try await store.expire(queue: "q", maxAge: 1_000) == 1)
            stats = try store.stats(queue: "q")
            #expect(stats.depth == 0)
            #expect(stats.oldestEnqueuedAt == nil)
            #expect(stats.dropped[.maxAge] == 3)
        }
    }

    @Test func countersSurviveReopen() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        do {
            let store = try Store(path: dir.storePath)
            _ = try await store.append(
                queue: "q",
                messages: (1...5).map { message($0) },
                limits: QueueLimits(maxMessages: 2, policy: .dropOldest)
            )
            _ = try await store.append(
                queue: "q",
                messages: [message(6)],
                limits: QueueLimits(maxMessages: 2, policy: .rejectNew)
            )
            store.close()
        }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        let stats = try store.stats(queue: "q")
        #expect(stats.depth == 2)
        #expect(stats.dropped[.maxMessages] == 3)
        #expect(stats.rejected[.maxMessages] == 1)
        #expect(stats.nextSeq == 6)
    }
}
