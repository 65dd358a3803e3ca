import SluiceStore

// Note on the committed-record cache (issue 17, "the bridge sends what it appended from memory"):
// - The records a bridge's class queues just committed are handed to the bridge with the commit's
//   `queueHasMore`; a fetch that needs exactly those seqs next takes them from here instead of reading
//   LMDB on the bridge's reader thread (two thread hops and a read transaction per live batch).
// - A class's lane *vouches* for every stored record of its class from seq `coveredFrom` on: each one is
//   either in the lane or not delivered yet (its commit's notification is on its way). Only then may a
//   fetch be served from the lane; otherwise it reads the store, as before. A lane starts vouching when a
//   store read finds its class drained (nothing more after what it read) and nothing delivered since
//   then was lost; it stops when anything may have changed the store outside the normal append and
//   acknowledgement path (`invalidateAll`), when a delivery does not continue its seqs (a record appended
//   out of band), and, for the evicted seqs, when the bound evicts unread records.
// - Bounded in records and bytes: while the remote is down the lane keeps only the newest records up to
//   the bound (the store is the buffer); the backlog before them drains from the store, in order, and the
//   lane takes over once the reads reach its first seq.
// - `generation` changes with every invalidation: a store read asked before it must not make a lane vouch.

/// The committed records of one bridge's class queues, kept for the next fetch (see the note above). Pure; not
/// generic, so that it compiles to specialized code (a generic type from another module costs a metadata lookup
/// per record copy).
struct CommittedRecordCache: Sendable {
    typealias Message = QueuedMessage

    struct Record: Sendable {
        var seq: UInt64
        var message: Message
        /// What the record counts against the byte bound.
        var bytes: Int

        init(seq: UInt64, message: Message, bytes: Int) {
            self.seq = seq
            self.message = message
            self.bytes = bytes
        }
    }

    /// What the cache did, for metrics and the bridge's status.
    struct Counters: Sendable, Equatable {
        /// Records handed to the link from memory.
        var served: UInt64 = 0
        /// Unread records dropped to keep the bound (they are read from the store instead).
        var evicted: UInt64 = 0
        /// `invalidateAll` calls and out-of-order deliveries.
        var invalidations: UInt64 = 0

        init() {}
    }

    private struct Lane: Sendable {
        /// Ascending, contiguous seqs from `head` on (the ones before `head` are spent).
        var records: [Record] = []
        var head = 0
        /// The lane vouches for every stored record of its class with a seq at or above this; nil: none.
        var coveredFrom: UInt64?
        /// The highest seq ever delivered: a drained store read below it may have missed a lost record.
        var lastDelivered: UInt64?

        var isEmpty: Bool { head == records.count }
        var first: Record? { isEmpty ? nil : records[head] }
        var last: Record? { isEmpty ? nil : records[records.count - 1] }

        mutating func popFirst() -> Record {
            let record = records[head]
            head += 1
            if head == records.count {
                records.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 && head * 2 >= records.count {
                records.removeFirst(head)
                head = 0
            }
            return record
        }

        /// Drops every record and stops vouching; returns what was dropped.
        mutating func clear() -> (count: Int, bytes: Int) {
            let dropped = records[head...].reduce(0) { $0 + $1.bytes }
            let count = records.count - head
            records.removeAll(keepingCapacity: true)
            head = 0
            coveredFrom = nil
            return (count, dropped)
        }

        /// Drops the records below `next` (read from the store already); returns what was dropped.
        mutating func discard(below next: UInt64) -> (count: Int, bytes: Int) {
            var dropped = (count: 0, bytes: 0)
            while let first, first.seq < next {
                _ = popFirst()
                dropped.count += 1
                dropped.bytes += first.bytes
            }
            return dropped
        }
    }

    let maxRecords: Int
    let maxBytes: Int
    private var lanes: [Int: Lane] = [:]
    /// Records held and their bytes, over every class.
    private(set) var count = 0
    private(set) var bytes = 0
    private(set) var counters = Counters()
    /// Changes with every invalidation (see the note above).
    private(set) var generation: UInt64 = 0

    init(maxRecords: Int, maxBytes: Int) {
        self.maxRecords = max(1, maxRecords)
        self.maxBytes = max(1, maxBytes)
    }

    /// Records just committed to class `priority`, ascending, in commit order.
    mutating func committed(priority: Int, _ delivered: some Sequence<Record>) {
        // In place (`lanes[_, default:]`): a copy of the lane would copy its records on every change.
        let (added, addedBytes, restarts) = Self.deliver(delivered, into: &lanes[priority, default: Lane()])
        count += added
        bytes += addedBytes
        if restarts > 0 {
            counters.invalidations += UInt64(restarts)
            generation &+= 1
        }
        evictOverBound()
    }

    /// Appends `delivered` to `lane`; returns the change in records and bytes and how often the lane restarted.
    private static func deliver(
        _ delivered: some Sequence<Record>,
        into lane: inout Lane
    ) -> (count: Int, bytes: Int, restarts: Int) {
        var change = (count: 0, bytes: 0, restarts: 0)
        for record in delivered {
            lane.lastDelivered = max(lane.lastDelivered ?? record.seq, record.seq)
            if let from = lane.coveredFrom, record.seq < from { continue }  // already read from the store
            if let expected = lane.last.map({ $0.seq + 1 }) ?? lane.coveredFrom, record.seq != expected {
                // Not the next seq: something appended out of band. Restart from this record, vouching for nothing.
                let dropped = lane.clear()
                change.count -= dropped.count
                change.bytes -= dropped.bytes
                change.restarts += 1
            }
            lane.records.append(record)
            change.count += 1
            change.bytes += record.bytes
        }
        return change
    }

    /// A store read of class `priority` found nothing after what it read: `next` is the first seq it did not
    /// see. The lane vouches from `next` on if it holds every record delivered since (see the note above).
    mutating func storeDrained(priority: Int, next: UInt64) {
        let dropped = lanes[priority, default: Lane()].discard(below: next)
        count -= dropped.count
        bytes -= dropped.bytes
        let lane = lanes[priority]!
        let vouches = lane.first.map { $0.seq == next } ?? lane.lastDelivered.map { $0 < next } ?? true
        lanes[priority]!.coveredFrom = vouches ? next : nil
    }

    /// Whether the next read of class `priority` after `after` (nil: from the head) can come from memory.
    func canServe(priority: Int, after: UInt64?) -> Bool {
        guard let from = lanes[priority]?.coveredFrom else { return false }
        return from <= after.map { $0 &+ 1 } ?? 0
    }

    /// Up to `limit` records of class `priority` after `after`, ascending; nil when `canServe` is false. The
    /// records returned (and any before them) leave the cache.
    mutating func read(priority: Int, after: UInt64?, limit: Int) -> [Record]? {
        guard canServe(priority: priority, after: after) else { return nil }
        let next = after.map { $0 &+ 1 } ?? 0
        let (out, dropped) = Self.take(from: &lanes[priority, default: Lane()], next: next, limit: limit)
        count -= dropped.count + out.count
        bytes -= dropped.bytes + out.reduce(0) { $0 + $1.bytes }
        counters.served += UInt64(out.count)
        return out
    }

    private static func take(
        from lane: inout Lane,
        next: UInt64,
        limit: Int
    ) -> (records: [Record], dropped: (count: Int, bytes: Int)) {
        let dropped = lane.discard(below: next)
        var out: [Record] = []
        while out.count < limit, !lane.isEmpty { out.append(lane.popFirst()) }
        lane.coveredFrom = max(lane.coveredFrom ?? next, (out.last?.seq).map { $0 + 1 } ?? next)
        return (out, dropped)
    }

    /// The store may have lost or reordered records outside the normal path: every lane stops vouching
    /// and lets its records go; fetches read the store until a drained read makes a lane vouch again.
    mutating func invalidateAll() {
        for priority in Array(lanes.keys) {
            let dropped = lanes[priority, default: Lane()].clear()
            count -= dropped.count
            bytes -= dropped.bytes
        }
        counters.invalidations += 1
        generation &+= 1
    }

    /// Evicts the oldest unread records, lowest priority class first, until within the bound; a lane no longer
    /// vouches for the seqs it evicted.
    private mutating func evictOverBound() {
        guard count > maxRecords || bytes > maxBytes else { return }
        for key in lanes.keys.sorted(by: >) {
            let evicted = Self.evict(
                from: &lanes[key, default: Lane()],
                records: count - maxRecords,
                bytes: bytes - maxBytes
            )
            count -= evicted.count
            bytes -= evicted.bytes
            counters.evicted += UInt64(evicted.count)
            if count <= maxRecords && bytes <= maxBytes { return }
        }
    }

    /// Evicts from the front of `lane` until at least `records` records and `bytes` bytes are gone (or it is empty).
    private static func evict(from lane: inout Lane, records: Int, bytes: Int) -> (count: Int, bytes: Int) {
        var evicted = (count: 0, bytes: 0)
        while evicted.count < records || evicted.bytes < bytes, !lane.isEmpty {
            let record = lane.popFirst()
            evicted.count += 1
            evicted.bytes += record.bytes
            lane.coveredFrom = lane.coveredFrom.map { max($0, record.seq + 1) }
        }
        return evicted
    }
}
