// Note on the priority feed (issue 14, per-rule priority classes):
// - A bridge keeps one FIFO queue per priority class (0 first … 9 last), each with its own sequence
//   numbers. The link wants one stream of ascending seqs (its cursor, replays and poison counts are keyed
//   by seq), so the feed hands out *link seqs*: assigned in the order messages are handed to the link,
//   and mapped back to (class, queue seq) for removal and dead-lettering.
// - A fetch first replays the messages already handed out and not yet removed whose link seq is above
//   `after` (a new connection asks from the head, `after == nil`: whatever was in flight goes again, in
//   its old order; a transient refusal's replay asks from before the refused one), then reads new
//   messages class by class, highest priority first, each class from where the last read stopped. So a
//   backlog drains class 0 before class 9, a live class-0 message goes out at the next free slot however
//   deep the lower classes are, and order within a class is kept.
// - A link seq stays mapped to the same message until its removal commits (`forget`), so the link's
//   per-seq state (resend ids, poison attempts) follows the message across reconnects.
// - TTL: a message whose time is up when read (new, or replayed on a new connection) is never handed to
//   the link; the caller drops it from the store and counts it `expired`.

/// Where a message handed to the link lives in the store.
public struct PriorityLocation: Sendable, Hashable {
    public var priority: Int
    public var seq: UInt64

    public init(priority: Int, seq: UInt64) {
        self.priority = priority
        self.seq = seq
    }
}

/// Merges a bridge's per-class queues into the one ascending stream the link reads (see the note above).
/// Pure: the caller passes the store reads as closures.
public struct PriorityFeed: Sendable {
    /// Classes read for new messages, highest priority (lowest number) first.
    public private(set) var classes: [Int]
    /// Per class: the last queue seq read (handed out, or found expired).
    private var frontier: [Int: UInt64] = [:]
    /// Handed out and not yet forgotten.
    private var handed: [UInt64: PriorityLocation] = [:]
    /// Link seqs in ascending order, as handed out; forgotten ones are compacted away lazily.
    private var order: [UInt64] = []
    private var nextLinkSeq: UInt64 = 1
    /// Link seqs a fetch let go of (gone from the store, or expired on a replay), until `takeReleased`.
    private var released: [UInt64] = []

    public init(classes: some Sequence<Int>) {
        self.classes = Self.readingOrder(classes, [])
    }

    /// Also read these classes from now on (a reloaded rule set may name new ones).
    public mutating func addClasses(_ more: some Sequence<Int>) {
        classes = Self.readingOrder(classes, more)
    }

    /// The classes of both, once each, in the order a feed reads them (highest priority first): for a caller
    /// that keeps its own copy of `classes` in step with `addClasses`.
    public static func readingOrder(_ classes: some Sequence<Int>, _ more: some Sequence<Int>) -> [Int] {
        Array(Set(classes).union(more)).sorted()
    }

    /// Messages handed out and not yet forgotten.
    public var handedCount: Int { handed.count }

    public func location(of linkSeq: UInt64) -> PriorityLocation? { handed[linkSeq] }

    /// The last queue seq read of class `priority` (nil: none yet): a fetch reads that class after it.
    public func frontier(of priority: Int) -> UInt64? { frontier[priority] }

    /// A read from the head found class `priority` empty and the next append to it gets queue seq `next`:
    /// later reads start there (so a cache of what is appended next can tell it holds what comes next).
    public mutating func noteEmpty(priority: Int, next: UInt64) {
        guard frontier[priority] == nil, next > 0 else { return }
        frontier[priority] = next - 1
    }

    /// Whether a fetch after `after` would hand out a message again (the replay part of `fetch`).
    public func replays(after: UInt64?, skip: (UInt64) -> Bool) -> Bool {
        order[firstIndex(above: after ?? 0)...].contains { handed[$0] != nil && !skip($0) }
    }

    /// The message left the queue (removed, dead-lettered, gone): its link seq is not replayed again.
    public mutating func forget(_ linkSeqs: some Sequence<UInt64>) {
        for seq in linkSeqs { handed[seq] = nil }
        if order.count > 64 && handed.count * 2 < order.count {
            order.removeAll { handed[$0] == nil }
        }
    }

    /// The link seqs fetches have let go of since the last call (their messages left the store outside the
    /// link's removals), so a caller keeping its own map of handed-out seqs can drop them too.
    public mutating func takeReleased() -> [UInt64] {
        defer { released = [] }
        return released
    }

    /// The link's `.fetch(after:limit:)`: up to `limit` messages with link seqs above `after`, ascending.
    ///
    /// - `skip`: link seqs not to hand out now (acknowledged or dead-lettered, removal not committed yet).
    /// - `reread`: a handed-out message again, nil if it has left the store (dropped by a bound, purged).
    /// - `read`: up to `limit` messages of a class after a queue seq (nil: from the head), ascending.
    /// - `isExpired`: the message's TTL has passed.
    /// Returns the messages and the locations found expired (no longer mapped: drop them from the store).
    public mutating func fetch<Message, Failure: Error>(
        after: UInt64?,
        limit: Int,
        skip: (UInt64) -> Bool,
        reread: (PriorityLocation) throws(Failure) -> Message?,
        read: (_ priority: Int, _ after: UInt64?, _ limit: Int) throws(Failure) -> [(seq: UInt64, message: Message)],
        isExpired: (Message) -> Bool
    ) throws(Failure) -> (items: [(seq: UInt64, message: Message)], expired: [PriorityLocation]) {
        var items: [(seq: UInt64, message: Message)] = []
        var expired: [PriorityLocation] = []
        guard limit > 0 else { return (items, expired) }
        // Replay: handed out, still mapped, above `after`.
        var gone: [UInt64] = []
        var index = firstIndex(above: after ?? 0)
        while index < order.count, items.count < limit {
            let linkSeq = order[index]
            index += 1
            guard let location = handed[linkSeq], !skip(linkSeq) else { continue }
            guard let message = try reread(location) else {
                gone.append(linkSeq)
                continue
            }
            // Only on a new connection: a replay within a connection may pass messages still in flight.
            if after == nil && isExpired(message) {
                expired.append(location)
                gone.append(linkSeq)
                continue
            }
            items.append((linkSeq, message))
        }
        forget(gone)
        released += gone
        // New messages, class by class.
        for priority in classes where items.count < limit {
            while items.count < limit {
                let wanted = limit - items.count
                let batch = try read(priority, frontier[priority], wanted)
                for (seq, message) in batch {
                    frontier[priority] = seq
                    let location = PriorityLocation(priority: priority, seq: seq)
                    if isExpired(message) {
                        expired.append(location)
                        continue
                    }
                    let linkSeq = nextLinkSeq
                    nextLinkSeq += 1
                    handed[linkSeq] = location
                    order.append(linkSeq)
                    items.append((linkSeq, message))
                }
                if batch.count < wanted { break }  // this class is drained
            }
        }
        return (items, expired)
    }

    /// The index in `order` of the first link seq above `seq`.
    private func firstIndex(above seq: UInt64) -> Int {
        var low = 0
        var high = order.count
        while low < high {
            let middle = (low + high) / 2
            if order[middle] <= seq { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
