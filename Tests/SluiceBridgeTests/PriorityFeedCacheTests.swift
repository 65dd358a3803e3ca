import SluiceBridge
import Testing

/// A fetch of new messages only (nothing handed out is reread, nothing expires), reading with `read`.
private func fetchNew(
    _ feed: inout PriorityFeed,
    limit: Int,
    read: (_ priority: Int, _ after: UInt64?, _ limit: Int) -> [(seq: UInt64, message: String)]
) {
    _ = feed.fetch(
        after: nil,
        limit: limit,
        skip: { _ in false },
        reread: { _ in nil as String? },
        read: read,
        isExpired: { _ in false }
    )
}

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
        fetchNew(&feed, limit: 10) { priority, after, _ in
            if priority == 9 { asked.append(after) }
            return []
        }
        #expect(asked == [6])
    }

    @Test func replaysTellsWhetherAFetchWouldSendAgain() {
        var feed = PriorityFeed(classes: [9])
        fetchNew(&feed, limit: 3) { _, after, limit in
            let start = (after ?? 0) + 1
            return (start..<start + UInt64(limit)).map { ($0, "m\($0)") }
        }
        #expect(feed.replays(after: nil, skip: { _ in false }))
        #expect(feed.replays(after: 2, skip: { _ in false }))
        #expect(!feed.replays(after: 3, skip: { _ in false }))
        #expect(!feed.replays(after: 1, skip: { $0 > 1 }))  // 2 and 3 acknowledged, removal pending
        feed.forget([1, 2, 3])
        #expect(!feed.replays(after: nil, skip: { _ in false }))
    }
}
