/// Bounds for one bridge queue, enforced in the same write transaction as each append.
public struct QueueLimits: Sendable, Hashable {
    /// What happens when a new message would exceed a bound.
    public enum Policy: Sendable, Hashable {
        /// Delete the oldest messages to make room (newest telemetry wins). The default.
        case dropOldest
        /// Refuse the new message (MQTT 5 publishers get PUBACK 0x97 Quota exceeded).
        case rejectNew
    }

    /// Most messages the queue holds.
    public var maxMessages: Int
    /// Most bytes the queue holds, counted as the sum of encoded record sizes.
    public var maxBytes: Int
    /// Messages whose `enqueuedAt` is more than this many milliseconds before now are dropped; nil = no limit.
    public var maxAge: UInt64?
    public var policy: Policy

    public init(maxMessages: Int = .max, maxBytes: Int = .max, maxAge: UInt64? = nil, policy: Policy = .dropOldest) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAge = maxAge
        self.policy = policy
    }

    /// No bounds other than the map's ceiling; `dropOldest` at the ceiling.
    public static let unlimited = QueueLimits()
}

/// The outcome of appending one message.
public enum AppendResult: Sendable, Hashable {
    /// Committed to disk under this sequence number.
    case stored(seq: UInt64)
    /// Not stored, for this reason (map to PUBACK 0x97 Quota exceeded for MQTT 5 publishers).
    case rejected(DropReason)

    /// The sequence number, if stored.
    public var seq: UInt64? {
        if case .stored(let seq) = self { return seq }
        return nil
    }
}

/// A queue's state as persisted: readable from any thread or process.
public struct QueueStats: Sendable, Hashable {
    /// Messages in the queue.
    public var depth: UInt64
    /// Sum of the encoded record sizes in the queue.
    public var bytes: UInt64
    /// `enqueuedAt` of the message at the head of the queue, nil when empty.
    public var oldestEnqueuedAt: UInt64?
    /// The sequence number the next append will get.
    public var nextSeq: UInt64
    /// Messages removed without delivery (drop_oldest, age, full store), by reason.
    public var dropped: DropCounts
    /// Messages refused at append (reject_new, oversize, already expired, full store), by reason.
    public var rejected: DropCounts
    /// Damaged records ever moved from this queue to its quarantine (see `Store.quarantined`).
    public var quarantined: UInt64 = 0
}

/// The LMDB databases of a store (layout 2).
///
/// - `meta`: `"format"` → `[2]` (store layout version); `"q/" + name` → empty, the list of queues (written
///   once, when a queue is first used).
/// - `queues` is LMDB's main (unnamed) database: `[name length: 1][name: UTF-8][seq: 8, big-endian]` → queue
///   record, big-endian sequence numbers making cursor order FIFO order within a queue; and
///   `[name length][name][0xFF × 9]` → the queue's `QueueMeta`, which sorts just after its last record. A
///   commit that appends to a short queue and removes from it therefore dirties one leaf page plus LMDB's
///   free list, where layout 1 (records in a named database, metadata in `meta`) dirtied four (the queue's
///   leaf, the meta leaf, the main database's leaf holding both named databases' roots, the free list):
///   issue 15, bytes written per message. The keys of named databases in the main database ("meta",
///   "tables") never look like a queue key: those have a length prefix and 8 or 9 more bytes.
/// - `tables`: `[table name length: 1][table name][key]` → caller-encoded value.
struct Databases: Sendable {
    var meta: LMDBDatabase
    var queues: LMDBDatabase
    var tables: LMDBDatabase
    /// Damaged queue records moved aside (see Quarantine.swift); nil only in a read-only store without one.
    var quarantine: LMDBDatabase?
}

enum Keys {
    static let format: [UInt8] = Array("format".utf8)
    static let metaPrefix: [UInt8] = Array("q/".utf8)
    /// LMDB's compile-time key limit (`mdb_env_get_maxkeysize`, 511 in Debian's build).
    static let maxKeySize = 511
    static let maxQueueName = 255
    static let maxTableName = 64

    static func queuePrefix(_ queue: String) -> [UInt8] {
        let name = Array(queue.utf8)
        return [UInt8(name.count)] + name
    }

    static func queueKey(_ prefix: [UInt8], _ seq: UInt64) -> [UInt8] {
        var key = prefix
        key.appendBigEndian(seq)
        return key
    }

    /// The queue's entry in the list of queues (in `meta`).
    static func registryKey(_ queue: String) -> [UInt8] { metaPrefix + Array(queue.utf8) }

    /// Where the queue's `QueueMeta` lives (in `queues`): just after its last possible record.
    static func queueMetaKey(_ prefix: [UInt8]) -> [UInt8] { prefix + [UInt8](repeating: 0xFF, count: 9) }

    /// A record of the queue with this prefix (not its metadata, not another queue's key).
    @inline(__always)
    static func isRecord<Key: Collection<UInt8>>(_ key: Key, _ prefix: [UInt8]) -> Bool {
        key.count == prefix.count + 8 && key.starts(with: prefix)
    }

    static func tablePrefix(_ table: String) -> [UInt8] {
        let name = Array(table.utf8)
        return [UInt8(name.count)] + name
    }

    static func validate(queue: String) throws(StoreError) {
        let count = queue.utf8.count
        guard count >= 1, count <= maxQueueName else {
            throw StoreError.invalid("queue name must be 1…\(maxQueueName) bytes of UTF-8, got \(count)")
        }
    }

    static func validate(table: String) throws(StoreError) {
        let count = table.utf8.count
        guard count >= 1, count <= maxTableName else {
            throw StoreError.invalid("table name must be 1…\(maxTableName) bytes of UTF-8, got \(count)")
        }
    }

    static func validate(table: String, key: [UInt8]) throws(StoreError) {
        try validate(table: table)
        let limit = maxKeySize - 1 - table.utf8.count
        guard key.count <= limit else {
            throw StoreError.invalid("key of \(key.count) bytes is longer than \(limit), the limit for table \(table)")
        }
    }

    static func validate(message: QueuedMessage) throws(StoreError) {
        guard message.qos <= 2 else { throw StoreError.invalid("qos \(message.qos) is not 0, 1 or 2") }
        let limit = Int(UInt32.max)
        guard message.topic.utf8.count <= limit, message.payload.readableBytes <= limit,
            message.properties.count <= limit
        else { throw StoreError.invalid("message field longer than 4 GiB") }
    }
}

// MARK: - Queue bookkeeping shared by read and write transactions

extension Transaction {
    /// The queue's metadata; rebuilt from its records if absent or damaged. `nextSeq` is never below
    /// the last key + 1, so sequence numbers stay monotonic even if the metadata was lost.
    func queueMeta(_ queue: String, _ dbs: Databases) throws(StoreError) -> QueueMeta {
        let prefix = Keys.queuePrefix(queue)
        let stored: QueueMeta? = try withValue(dbs.queues, Keys.queueMetaKey(prefix)) { buffer in
            guard let buffer else { return nil }
            return try? QueueMeta.decode(buffer)
        }
        var meta: QueueMeta
        if let stored {
            meta = stored
        } else {
            // Absent or damaged: recount the records.
            meta = QueueMeta()
            try withCursor(dbs.queues) { cursor throws(StoreError) in
                var entry = try cursor.seek(atLeast: prefix)
                while let current = entry, Keys.isRecord(current.key, prefix) {
                    meta.count += 1
                    meta.bytes += UInt64(current.value.count)
                    entry = try cursor.next()
                }
            }
        }
        if let last = try lastSeq(prefix, dbs), last >= meta.nextSeq {
            meta.nextSeq = last + 1
        }
        return meta
    }

    /// The highest sequence number in the queue, from its last key.
    func lastSeq(_ prefix: [UInt8], _ dbs: Databases) throws(StoreError) -> UInt64? {
        try withCursor(dbs.queues) { cursor throws(StoreError) -> UInt64? in
            let end = prefix + [UInt8](repeating: 0xFF, count: 8)
            var entry = try cursor.seek(atLeast: end)
            if let found = entry, found.key.count == end.count, found.key.hasPrefix(end) {
                return UInt64.max
            }
            entry = entry == nil ? try cursor.last() : try cursor.previous()
            guard let found = entry, found.key.count == prefix.count + 8, found.key.hasPrefix(prefix) else {
                return nil
            }
            return found.key.trailingSequence
        }
    }

    /// The `enqueuedAt` of the queue's head.
    func oldestEnqueuedAt(_ queue: String, _ dbs: Databases) throws(StoreError) -> UInt64? {
        let prefix = Keys.queuePrefix(queue)
        return try withCursor(dbs.queues) { cursor throws(StoreError) -> UInt64? in
            guard let entry = try cursor.seek(atLeast: prefix), Keys.isRecord(entry.key, prefix) else { return nil }
            return try? RecordCodec.enqueuedAt(entry.value)  // a damaged head is quarantined when read
        }
    }
}

// MARK: - Write context: one per write transaction

/// Everything an operation may touch inside the writer's current transaction. Queue metadata is cached
/// here and written back once, just before the commit; an aborted transaction simply drops the context.
final class WriteContext {
    let txn: Transaction
    let dbs: Databases
    /// Milliseconds since the epoch, sampled once per transaction.
    var now: UInt64
    /// The map is at its ceiling and free pages are down to the reserve: appends apply their policy with
    /// reason `.storeFull`, table puts fail, and operations that free space still run.
    let lowSpace: Bool
    private var metas: [String: QueueMeta] = [:]
    /// `.quarantined` events of this transaction (see Quarantine.swift).
    var quarantineEvents: [StoreEvent] = []
    /// Metadata as loaded, to report what this transaction dropped and rejected.
    private var loaded: [String: QueueMeta] = [:]

    init(txn: Transaction, dbs: Databases, now: UInt64, lowSpace: Bool = false) {
        self.txn = txn
        self.dbs = dbs
        self.now = now
        self.lowSpace = lowSpace
    }

    func meta(_ queue: String) throws(StoreError) -> QueueMeta {
        if let cached = metas[queue] { return cached }
        let meta = try txn.queueMeta(queue, dbs)
        metas[queue] = meta
        loaded[queue] = meta
        return meta
    }

    func setMeta(_ queue: String, _ meta: QueueMeta) { metas[queue] = meta }

    /// Writes the cached metadata back, beside the queue's records. Called once, just before the commit.
    func flush() throws(StoreError) {
        for (queue, meta) in metas where meta != loaded[queue] {
            let key = Keys.queueMetaKey(Keys.queuePrefix(queue))
            if try txn.withValue(dbs.queues, key, { $0 == nil }) {
                try txn.put(dbs.meta, Keys.registryKey(queue), [])  // a new queue: listed once
            }
            try txn.put(dbs.queues, key, meta.encode())
        }
    }

    /// Drops and rejections made in this transaction, to report once it has committed.
    func events() -> [StoreEvent] {
        var events: [StoreEvent] = quarantineEvents
        for (queue, meta) in metas.sorted(by: { $0.key < $1.key }) {
            let before = loaded[queue] ?? QueueMeta()
            for reason in DropReason.allCases {
                if meta.dropped[reason] > before.dropped[reason] {
                    events.append(
                        .dropped(queue: queue, reason: reason, count: meta.dropped[reason] - before.dropped[reason])
                    )
                }
                if meta.rejected[reason] > before.rejected[reason] {
                    events.append(
                        .rejected(queue: queue, reason: reason, count: meta.rejected[reason] - before.rejected[reason])
                    )
                }
            }
        }
        return events
    }

    func append(_ queue: String, _ messages: [QueuedMessage], _ limits: QueueLimits) throws(StoreError)
        -> [AppendResult]
    {
        var meta = try meta(queue)
        defer { metas[queue] = meta }
        let prefix = Keys.queuePrefix(queue)
        if let maxAge = limits.maxAge {
            _ = try expire(prefix, &meta, maxAge: maxAge)
        }
        let maxMessages = UInt64(max(0, limits.maxMessages))
        let maxBytes = UInt64(max(0, limits.maxBytes))
        var results: [AppendResult] = []
        results.reserveCapacity(messages.count)
        for message in messages {
            let size = UInt64(RecordCodec.encodedSize(message))
            var refusal: DropReason?
            if let maxAge = limits.maxAge, isExpired(message.enqueuedAt, maxAge: maxAge) {
                refusal = .maxAge
            } else if maxMessages == 0 {
                refusal = .maxMessages
            } else if size > maxBytes {
                refusal = .maxBytes  // could never fit, whatever the policy
            } else if lowSpace && limits.policy == .rejectNew {
                refusal = .storeFull
            } else {
                if lowSpace {
                    // Make room at the page level: drop at least as many bytes as the new record adds.
                    var freed: UInt64 = 0
                    while freed < size, let dropped = try dropHead(prefix, &meta, reason: .storeFull) {
                        freed += dropped
                    }
                }
                while meta.count + 1 > maxMessages || meta.bytes + size > maxBytes {
                    let reason: DropReason = meta.count + 1 > maxMessages ? .maxMessages : .maxBytes
                    if limits.policy == .rejectNew {
                        refusal = reason
                        break
                    }
                    if try dropHead(prefix, &meta, reason: reason) == nil {
                        refusal = reason  // bookkeeping says full but nothing to drop: refuse, don't loop
                        break
                    }
                }
            }
            if let refusal {
                meta.rejected[refusal] += 1
                results.append(.rejected(refusal))
                continue
            }
            let seq = meta.nextSeq
            // Encoded straight into the page: no record array, no copy by mdb_put.
            try txn.reserve(dbs.queues, Keys.queueKey(prefix, seq), size: Int(size)) { record in
                RecordCodec.encode(message, into: record)
            }
            meta.nextSeq += 1
            meta.count += 1
            meta.bytes += size
            results.append(.stored(seq: seq))
        }
        return results
    }

    private func isExpired(_ enqueuedAt: UInt64, maxAge: UInt64) -> Bool {
        now > maxAge && enqueuedAt < now - maxAge
    }

    /// Deletes the record at the head of the queue; returns its size, or nil if the queue is empty.
    func dropHead(_ prefix: [UInt8], _ meta: inout QueueMeta, reason: DropReason) throws(StoreError) -> UInt64? {
        let size = try txn.withCursor(dbs.queues) { cursor throws(StoreError) -> UInt64? in
            guard let head = try cursor.seek(atLeast: prefix), Keys.isRecord(head.key, prefix) else { return nil }
            let size = UInt64(head.value.count)
            try cursor.deleteCurrent()
            return size
        }
        guard let size else { return nil }
        meta.count = meta.count > 0 ? meta.count - 1 : 0
        meta.bytes = meta.bytes >= size ? meta.bytes - size : 0
        meta.dropped[reason] += 1
        return size
    }

    /// Deletes up to `count` records from the head of the queue; returns how many were deleted.
    func dropOldest(_ prefix: [UInt8], _ meta: inout QueueMeta, count: Int, reason: DropReason) throws(StoreError)
        -> Int
    {
        var dropped = 0
        try txn.withCursor(dbs.queues) { cursor throws(StoreError) in
            var entry = try cursor.seek(atLeast: prefix)
            while dropped < count, let current = entry, Keys.isRecord(current.key, prefix) {
                let size = UInt64(current.value.count)
                try cursor.deleteCurrent()
                meta.count = meta.count > 0 ? meta.count - 1 : 0
                meta.bytes = meta.bytes >= size ? meta.bytes - size : 0
                dropped += 1
                entry = try cursor.seek(atLeast: prefix)  // re-seek the head: well-defined after a delete
            }
        }
        meta.dropped[reason] += UInt64(dropped)
        return dropped
    }

    func dropOldest(_ queue: String, count: Int, reason: DropReason) throws(StoreError) -> Int {
        var meta = try meta(queue)
        defer { metas[queue] = meta }
        return try dropOldest(Keys.queuePrefix(queue), &meta, count: count, reason: reason)
    }

    func countRejected(_ queue: String, _ reason: DropReason) throws(StoreError) {
        var meta = try meta(queue)
        meta.rejected[reason] += 1
        metas[queue] = meta
    }

    /// Drops records from the head while they are older than `maxAge`. The scan stops at the first record
    /// that is young enough: age is checked in FIFO order, so a message enqueued with an older timestamp
    /// behind a newer one waits for it.
    private func expire(_ prefix: [UInt8], _ meta: inout QueueMeta, maxAge: UInt64) throws(StoreError) -> Int {
        guard now > maxAge else { return 0 }
        var dropped = 0
        try txn.withCursor(dbs.queues) { cursor throws(StoreError) in
            var entry = try cursor.seek(atLeast: prefix)
            while let current = entry, Keys.isRecord(current.key, prefix) {
                guard let enqueuedAt = try? RecordCodec.enqueuedAt(current.value) else {
                    // A damaged head must not stop every append: move it aside and go on.
                    try quarantineCurrent(cursor, prefix, &meta, reason: "damaged record header")
                    entry = try cursor.seek(atLeast: prefix)
                    continue
                }
                guard isExpired(enqueuedAt, maxAge: maxAge) else { break }
                let size = UInt64(current.value.count)
                try cursor.deleteCurrent()
                meta.count = meta.count > 0 ? meta.count - 1 : 0
                meta.bytes = meta.bytes >= size ? meta.bytes - size : 0
                dropped += 1
                entry = try cursor.seek(atLeast: prefix)  // re-seek the head: well-defined after a delete
            }
        }
        meta.dropped[.maxAge] += UInt64(dropped)
        return dropped
    }

    func expire(_ queue: String, maxAge: UInt64) throws(StoreError) -> Int {
        var meta = try meta(queue)
        defer { metas[queue] = meta }
        return try expire(Keys.queuePrefix(queue), &meta, maxAge: maxAge)
    }

    func remove(_ queue: String, _ seqs: [UInt64]) throws(StoreError) -> Int {
        var meta = try meta(queue)
        defer { metas[queue] = meta }
        let prefix = Keys.queuePrefix(queue)
        var removed = 0
        for seq in seqs {
            let key = Keys.queueKey(prefix, seq)
            guard let size = try txn.withValue(dbs.queues, key, { $0?.count }) else { continue }
            try txn.delete(dbs.queues, key)
            meta.count = meta.count > 0 ? meta.count - 1 : 0
            meta.bytes = meta.bytes >= UInt64(size) ? meta.bytes - UInt64(size) : 0
            removed += 1
        }
        return removed
    }

    func purge(_ queue: String) throws(StoreError) -> Int {
        var meta = try meta(queue)
        defer { metas[queue] = meta }
        let prefix = Keys.queuePrefix(queue)
        var removed = 0
        try txn.withCursor(dbs.queues) { cursor throws(StoreError) in
            var entry = try cursor.seek(atLeast: prefix)
            while let current = entry, Keys.isRecord(current.key, prefix) {
                try cursor.deleteCurrent()
                removed += 1
                entry = try cursor.seek(atLeast: prefix)  // re-seek the head: well-defined after a delete
            }
        }
        meta.count = 0
        meta.bytes = 0
        return removed
    }

    // MARK: Tables

    func put(_ table: String, _ key: [UInt8], _ value: [UInt8]) throws(StoreError) {
        guard !lowSpace else {
            throw StoreError(code: .storeFull, message: "store full: the map is at its ceiling, only deletions run")
        }
        try txn.put(dbs.tables, Keys.tablePrefix(table) + key, value)
    }

    func delete(_ table: String, _ key: [UInt8]) throws(StoreError) -> Bool {
        try txn.delete(dbs.tables, Keys.tablePrefix(table) + key)
    }

    /// Deletes every entry of `table` whose key starts with `keyPrefix` (all of them by default).
    func deleteAll(_ table: String, keyPrefix: [UInt8] = []) throws(StoreError) -> Int {
        let prefix = Keys.tablePrefix(table) + keyPrefix
        var removed = 0
        try txn.withCursor(dbs.tables) { cursor throws(StoreError) in
            var entry = try cursor.seek(atLeast: prefix)
            while let current = entry, current.key.hasPrefix(prefix) {
                try cursor.deleteCurrent()
                removed += 1
                entry = try cursor.seek(atLeast: prefix)  // re-seek the head: well-defined after a delete
            }
        }
        return removed
    }
}
