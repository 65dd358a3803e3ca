import Testing

@testable import SluiceBridge

/// Per-class FIFO queues in memory: class → (queue seq, payload), ascending; and the clock for TTLs.
private struct FakeQueues {
    var queues: [Int: [(seq: UInt64, message: String)]] = [:]
    var nextSeq: [Int: UInt64] = [:]
    var expired: Set<String> = []

    mutating func append(_ priority: Int, _ messages: String...) {
        for message in messages {
            let seq = nextSeq[priority, default: 1]
            nextSeq[priority] = seq + 1
            queues[priority, default: []].append((seq, message))
        }
    }

    mutating func remove(_ location: PriorityLocation) {
        queues[location.priority]?.removeAll { $0.seq == location.seq }
    }

    func fetch(_ feed: inout PriorityFeed, after: UInt64?, limit: Int, skip: Set<UInt64> = [])
        -> (items: [(seq: UInt64, message: String)], expired: [PriorityLocation])
    {
        feed.fetch(
            after: after,
            limit: limit,
            skip: { skip.contains($0) },
            reread: { location in queues[location.priority]?.first { $0.seq == location.seq }?.message },
            read: { priority, after, limit in
                Array((queues[priority] ?? []).filter { $0.seq > (after ?? 0) }.prefix(limit))
            },
            isExpired: { expired.contains($0) }
        )
    }
}

@Test func aBacklogDrainsTheHighestClassFirstInOrderWithinEach() {
    var store = FakeQueues()
    store.append(9, "t1", "t2", "t3")
    store.append(0, "a1", "a2")
    store.append(5, "m1")
    var feed = PriorityFeed(classes: [9, 0, 5])
    #expect(feed.classes == [0, 5, 9])
    let first = store.fetch(&feed, after: nil, limit: 4)
    #expect(first.items.map(\.message) == ["a1", "a2", "m1", "t1"])
    #expect(first.items.map(\.seq) == [1, 2, 3, 4])  // one ascending stream for the link
    let second = store.fetch(&feed, after: 4, limit: 10)
    #expect(second.items.map(\.message) == ["t2", "t3"])
}

@Test func aLiveHigherClassMessageGoesNextHoweverDeepTheBacklog() {
    var store = FakeQueues()
    for index in 1...100 { store.append(9, "t\(index)") }
    var feed = PriorityFeed(classes: [0, 9])
    let first = store.fetch(&feed, after: nil, limit: 10)
    #expect(first.items.map(\.message) == (1...10).map { "t\($0)" })
    store.append(0, "alarm")
    let next = store.fetch(&feed, after: 10, limit: 2)
    #expect(next.items.map(\.message) == ["alarm", "t11"])
    #expect(next.items.map(\.seq) == [11, 12])
}

@Test func aNewConnectionReplaysWhatWasInFlightInItsOldOrderThenFollowsPriority() {
    var store = FakeQueues()
    store.append(9, "t1", "t2", "t3")
    var feed = PriorityFeed(classes: [0, 9])
    let sent = store.fetch(&feed, after: nil, limit: 2)  // t1, t2 in flight
    store.remove(feed.location(of: sent.items[0].seq)!)  // t1 acknowledged and removed
    feed.forget([sent.items[0].seq])
    store.append(0, "a1")
    let again = store.fetch(&feed, after: nil, limit: 10)  // reconnect: from the head
    #expect(again.items.map(\.message) == ["t2", "a1", "t3"])
    #expect(again.items.map(\.seq) == [2, 3, 4])  // t2 keeps its link seq (poison counts follow it)
}

@Test func skippedSeqsAreNotHandedOutAndDoNotUseTheLimit() {
    var store = FakeQueues()
    store.append(9, "t1", "t2", "t3")
    var feed = PriorityFeed(classes: [9])
    _ = store.fetch(&feed, after: nil, limit: 2)
    let again = store.fetch(&feed, after: nil, limit: 2, skip: [1])  // t1's removal not committed yet
    #expect(again.items.map(\.message) == ["t2", "t3"])
}

@Test func aReplayFromBeforeARefusalResendsFromThere() {
    var store = FakeQueues()
    store.append(9, "t1", "t2", "t3")
    var feed = PriorityFeed(classes: [0, 9])
    _ = store.fetch(&feed, after: nil, limit: 3)
    store.append(0, "a1")
    let replay = store.fetch(&feed, after: 1, limit: 10)
    #expect(replay.items.map(\.message) == ["t2", "t3", "a1"])
}

@Test func expiredMessagesAreReportedNotHandedOut() {
    var store = FakeQueues()
    store.append(9, "t1", "old", "t2")
    store.append(0, "stale-alarm", "a1")
    store.expired = ["old", "stale-alarm"]
    var feed = PriorityFeed(classes: [0, 9])
    let result = store.fetch(&feed, after: nil, limit: 3)
    #expect(result.items.map(\.message) == ["a1", "t1", "t2"])  // the limit counts only what is handed out
    #expect(Set(result.expired) == [PriorityLocation(priority: 0, seq: 1), PriorityLocation(priority: 9, seq: 2)])
    #expect(feed.handedCount == 3)
}

@Test func aMessageThatExpiresWhileInFlightIsDroppedOnlyOnANewConnection() {
    var store = FakeQueues()
    store.append(9, "t1", "t2")
    var feed = PriorityFeed(classes: [9])
    _ = store.fetch(&feed, after: nil, limit: 2)
    store.expired = ["t1"]
    // Within the connection (a replay after a refusal) t1 may be in flight: not dropped here.
    #expect(store.fetch(&feed, after: 0, limit: 5).items.map(\.message) == ["t1", "t2"])
    // On a new connection it is.
    let reconnect = store.fetch(&feed, after: nil, limit: 5)
    #expect(reconnect.items.map(\.message) == ["t2"])
    #expect(reconnect.expired == [PriorityLocation(priority: 9, seq: 1)])
    #expect(feed.location(of: 1) == nil)
}

@Test func messagesGoneFromTheStoreAreForgottenOnReplay() {
    var store = FakeQueues()
    store.append(9, "t1", "t2")
    var feed = PriorityFeed(classes: [9])
    _ = store.fetch(&feed, after: nil, limit: 2)
    store.remove(PriorityLocation(priority: 9, seq: 1))  // dropped by a bound, or purged
    #expect(store.fetch(&feed, after: nil, limit: 5).items.map(\.message) == ["t2"])
    #expect(feed.location(of: 1) == nil && feed.handedCount == 1)
    // Told once to a caller mirroring the handed-out seqs (BridgeQueues' loop-side map).
    #expect(feed.takeReleased() == [1])
    #expect(feed.takeReleased() == [])
}

@Test func linkSeqsForgottenByTheLinkAreNotReleasedAgain() {
    var store = FakeQueues()
    store.append(9, "t1", "t2")
    var feed = PriorityFeed(classes: [9])
    _ = store.fetch(&feed, after: nil, limit: 2)
    feed.forget([1])  // removed after the central's PUBACK: the caller forgets it itself
    store.remove(PriorityLocation(priority: 9, seq: 1))
    store.expired = ["t2"]
    let reconnect = store.fetch(&feed, after: nil, limit: 5)
    #expect(reconnect.items.isEmpty && reconnect.expired == [PriorityLocation(priority: 9, seq: 2)])
    #expect(feed.takeReleased() == [2])
}

@Test func classesAddedLaterAreRead() {
    var store = FakeQueues()
    store.append(3, "x")
    var feed = PriorityFeed(classes: [9])
    #expect(store.fetch(&feed, after: nil, limit: 5).items.isEmpty)
    feed.addClasses([3, 9])
    #expect(feed.classes == [3, 9])
    #expect(store.fetch(&feed, after: nil, limit: 5).items.map(\.message) == ["x"])
}

@Test func readingOrderIsTheUnionHighestPriorityFirst() {
    #expect(PriorityFeed.readingOrder([9, 3], [3, 0, 9]) == [0, 3, 9])
    #expect(PriorityFeed(classes: [9, 0, 9]).classes == PriorityFeed.readingOrder([9, 0], []))
}

@Test func forgettingCompactsTheOrderAndKeepsTheRest() {
    var store = FakeQueues()
    for index in 1...200 { store.append(9, "t\(index)") }
    var feed = PriorityFeed(classes: [9])
    let all = store.fetch(&feed, after: nil, limit: 200)
    feed.forget(all.items.prefix(150).map(\.seq))
    #expect(feed.handedCount == 50)
    let replay = store.fetch(&feed, after: nil, limit: 100)
    #expect(replay.items.map(\.message) == (151...200).map { "t\($0)" })
}
