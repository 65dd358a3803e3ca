import SluiceBridge
import Testing

@Suite("Priority feed: what the cache needs to know")
struct PriorityFeedCacheTests {
    @Test func noteEmptyMovesAnUnreadClassToTheNextAppend() throws {
        var feed = PriorityFeed(classes: [0, 9])
        feed.noteEmpty(priority: 9, next: 7)
        #expect(feed.frontier(of: 9) == 6)
        #expect(feed.frontier(of: 0) == nil)
        // Only for a class not read yet.
        feed.noteEmpty(priority: 9, next: 3)
        #expect(feed.frontier(of: 9) == 6)
        var asked: [UInt64?] = []
        _ = feed.fetch(
            after: nil,
            limit: 10,
            skip: { _ in false },
            reread: { _ in nil as String? },
            read: { priority, after, _ in
                if priority == 9 { asked.append(after) }
                return []
            },
            isExpired: { _ in false }
        )
        #expect(asked == [6])
    }

    @Test func replaysTellsWhetherAFetchWouldSendAgain() {
        var feed = PriorityFeed(classes: [9])
        _ = feed.fetch(
            after: nil,
            limit: 3,
            skip: { _ in false },
            reread: { _ in nil as String? },
            read: { _, after, limit in
                let start = (after ?? 0) + 1
                return (start..<start + UInt64(limit)).map { ($0, "m\($0)") }
            },
            isExpired: { _ in false }
        )
        #expect(feed.replays(after: nil, skip: { _ in false }))
        #expect(feed.replays(after: 2, skip: { _ in false }))
        #expect(!feed.replays(after: 3, skip: { _ in false }))
        #expect(!feed.replays(after: 1, skip: { $0 > 1 }))  // 2 and 3 acknowledged, removal pending
        feed.forget([1, 2, 3])
        #expect(!feed.replays(after: nil, skip: { _ in false }))
    }
}
