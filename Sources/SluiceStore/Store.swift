// Note on durability in SluiceStore.
//
// - One dedicated OS thread (the writer) runs every write transaction, start to commit, with a
//   synchronous body: LMDB write transactions belong to the thread that began them, and an event loop
//   must never block on fdatasync. Callers on any thread submit operations with a completion.
// - Group commit: the writer takes ALL pending operations (up to `maxBatchBytes` of payload), applies
//   them in one write transaction, commits (LMDB's default sync mode: fdatasync before returning), and
//   only then calls the completions, in submission order. A completion with `.success` therefore means
//   "on disk": the caller may send PUBACK. No completion ever runs before `mdb_txn_commit` succeeded.
// - Lazy operations (`remove(..., lazily: true)`: a bridge removing what the remote acknowledged) wait up
//   to `lazyDelay` (a second by default) for an ordinary operation to share their transaction, and commit
//   alone only when none comes. Every commit costs a few pages and two device flushes (fdatasync, then the
//   meta page through LMDB's O_DSYNC descriptor); at the rates gateways run at, removals riding the next
//   append halve both (issue 15). The caller decides what may wait: the bridge submits its removals eagerly
//   once they hold back half its window. Their completions still run only after their commit.
// - `commitWindow` (`queue_commit_window MILLISECONDS`): an ordinary operation waits up to that long for
//   others to share its commit, trading PUBACK latency for fewer flushes. Completions still follow the
//   commit, so the contract holds; a publisher's PUBACK latency grows by at most the window. Without it
//   (`queue_commit_window auto`, the default, and 0), an append may carry a `hold` chosen by the caller
//   (`CommitHoldEstimator`): the writer waits until the earliest held operation is due, an eager operation
//   without a hold arrives, or the batch is full.
// - Bounds (count, bytes, age) are enforced inside the transaction of the append itself, so the stored
//   queue never exceeds them, not even for a moment another process could observe.
// - A full map grows (doubling, `mdb_env_set_mapsize`) up to `maxMapSize` and the batch is retried.
//   At the ceiling LMDB needs free pages even to delete (copy-on-write), so the writer keeps a reserve
//   (1/32 of the map, at least 16 pages but at most 1/4 of it), counted from the free list after each
//   commit. Inside the reserve, appends apply their policy with reason `.storeFull` in the append's
//   transaction (drop_oldest drops at least as many bytes as it adds; reject_new rejects), table puts
//   fail with `.storeFull`, and removes, purges, deletes and expiry still run. If a transaction still
//   hits MDB_MAP_FULL (or ENOSPC), the batch is re-run one operation per transaction: drop_oldest
//   commits the deletion of the oldest records (freed pages are reusable only after their commit) and
//   retries, reject_new rejects.
//   Nothing traps.
// - Read transactions run on the caller's thread. MDB_NOTLS: without it LMDB ties reader slots to OS
//   threads, so a second read on one thread fails with MDB_BAD_RSLOT, and Swift concurrency moves tasks
//   between threads anyway. Growing the map needs all of this process's transactions to be finished;
//   a readers-writer lock in `LMDBEnvironment` provides that.
// - Another process (`sluice queue stats`) may open the same file and read or write: LMDB locks across
//   processes, counters and byte totals live in the `meta` database, and a map grown by the other
//   process is adopted on MDB_MAP_RESIZED. Within one process a file is opened once and shared.
//
// Record formats are versioned (a leading version byte; see `RecordCodec` and `QueueMeta`). The whole
// store carries its layout version under `"format"` in `meta` (see `Databases`): a layout 1 store is moved
// to layout 2 when opened (`migrateLayout1`), and a file with an unknown layout fails with `.corruptRecord`
// rather than being misread. Decoding a damaged record throws, it never traps; queue records carry a
// CRC32C, and `read` skips a record that fails it or does not decode and moves it to the quarantine
// (Quarantine.swift). A file that is truncated or has no valid meta page is refused before LMDB maps
// it (StoreFileCheck.swift).

import CLMDB

import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

/// The durable LMDB store of Sluice: bridge queues and key/value tables for broker persistence.
///
/// All writes go through one writer thread with group commit; completions run on that thread, after the
/// commit, and must be quick and must not wait for another write of this store. Reads (`read`, `stats`,
/// `scan`, `get`, `queueNames`) run on the calling thread.
public final class Store: Sendable {
    /// The layout version stored under `"format"` in the `meta` database (see `Databases`).
    public static let formatVersion: UInt8 = 2

    /// The file path of the LMDB environment (a single file, `MDB_NOSUBDIR`; LMDB adds `PATH-lock`).
    public let path: String
    let environment: LMDBEnvironment
    let dbs: Databases
    let writer: Writer
    /// Opened with `readOnly`: every write fails with `.closed`, damaged records are skipped, not moved.
    public let readOnly: Bool
    /// The file existed with zero length and was initialised as a new store: the caller should warn.
    public var startedFromEmptyFile: Bool { environment.verdict == .empty }

    /// Opens or creates the store at `path`.
    ///
    /// - Parameters:
    ///   - initialMapSize: the first map size; the file is sparse, so this costs nothing until used.
    ///   - maxMapSize: the ceiling for growth; beyond it appends follow their queue's policy.
    ///   - maxBatchBytes: a write transaction takes pending operations up to about this much payload.
    ///   - lazyDelay: how long lazy operations wait for an ordinary one to commit with.
    ///   - commitWindow: how long the first ordinary operation of a batch waits for others to share its commit.
    ///   - clock: milliseconds since the epoch, for `maxAge`; injectable for tests.
    ///   - onEvent: told, on the writer thread after the commit, about drops, rejections, map growth and the
    ///     free-page reserve (for metrics and rate-limited warnings). Must be quick.
    public init(
        path: String,
        initialMapSize: Int = 64 << 20,
        maxMapSize: Int = 1 << 30,
        maxBatchBytes: Int = 32 << 20,
        lazyDelay: Duration = .seconds(1),
        commitWindow: Duration = .zero,
        clock: @escaping @Sendable () -> UInt64 = Store.wallClockMilliseconds,
        freeSpaceGuard: FreeSpaceGuard = .none,
        readOnly: Bool = false,
        onEvent: (@Sendable (StoreEvent) -> Void)? = nil
    ) throws(StoreError) {
        self.path = path
        self.readOnly = readOnly
        // The ceiling is honoured as given: the first map is never larger than it.
        let environment = try LMDBEnvironment.shared(
            path: path,
            mapSize: min(initialMapSize, maxMapSize),
            maxMapSize: maxMapSize,
            readOnly: readOnly
        )
        do throws(StoreError) {
            let body = { (txn: Transaction) throws(StoreError) -> (Databases, [UInt8]) in
                func open(_ name: String?, required: Bool = true) throws(StoreError) -> LMDBDatabase? {
                    var dbi: MDB_dbi = 0
                    let rc = mdb_dbi_open(txn.txn, name, readOnly ? 0 : UInt32(MDB_CREATE), &dbi)
                    if rc == MDB_NOTFOUND && readOnly && !required { return nil }
                    try check(rc, "mdb_dbi_open(\(name ?? "main"))")
                    return LMDBDatabase(dbi: dbi)
                }
                let dbs = Databases(
                    meta: try open("meta")!,
                    queues: try open(nil)!,
                    tables: try open("tables")!,
                    quarantine: try open("quarantine", required: false)
                )
                if let format = try txn.get(dbs.meta, Keys.format) {
                    guard format == [1] || format == [Store.formatVersion] else {
                        throw StoreError.corrupt("\(path) has store format \(format), this build reads [1] and [2]")
                    }
                    return (dbs, format)
                }
                guard !readOnly else { throw StoreError.corrupt("\(path) has no store format: not a Sluice store") }
                try txn.put(dbs.meta, Keys.format, [Store.formatVersion])
                return (dbs, [Store.formatVersion])
            }
            let (dbs, format) = readOnly ? try environment.readCommitted(body) : try environment.write(body)
            if format == [1] {
                // Read-only tools cannot move a layout 1 store; the gateway does so at its next start.
                guard !readOnly else {
                    throw StoreError.invalid(
                        "\(path) has store layout 1: start `sluice run` once to move it to layout 2"
                    )
                }
                try Store.migrateLayout1(environment, dbs)
            }
            self.environment = environment
            self.dbs = dbs
            self.writer = Writer(
                environment: environment,
                dbs: dbs,
                maxBatchBytes: maxBatchBytes,
                lazyDelay: lazyDelay,
                commitWindow: commitWindow,
                clock: clock,
                freeSpaceGuard: freeSpaceGuard,
                onEvent: onEvent
            )
        } catch {
            environment.release()
            throw error
        }
        if readOnly {
            writer.close()
        } else {
            writer.start()
        }
    }

    deinit {
        writer.close()
        environment.release()
    }

    /// Layout 1 → 2 (see `Databases`): queue records move from the named database `queues` into the main one,
    /// in transactions of up to 10,000 records that each leave every record in exactly one place, so a crash
    /// midway resumes at the next start; the last transaction moves each queue's metadata beside its records
    /// and writes format 2. Runs before the writer starts.
    static func migrateLayout1(_ environment: LMDBEnvironment, _ dbs: Databases) throws(StoreError) {
        var finished = false
        while !finished {
            do {
                finished = try environment.write { txn throws(StoreError) -> Bool in
                    var old: MDB_dbi = 0
                    let opened = mdb_dbi_open(txn.txn, "queues", 0, &old)
                    if opened != MDB_NOTFOUND {
                        try check(opened, "mdb_dbi_open(queues)")
                        let moved = try txn.withCursor(LMDBDatabase(dbi: old)) { cursor throws(StoreError) -> Int in
                            var moved = 0
                            while moved < 10_000, let entry = try cursor.first() {
                                try txn.put(dbs.queues, Array(entry.key), Array(entry.value))
                                try cursor.deleteCurrent()
                                moved += 1
                            }
                            return moved
                        }
                        if moved == 10_000 { return false }
                        try check(mdb_drop(txn.txn, old, 1), "mdb_drop(queues)")
                    }
                    let registry = try txn.withCursor(dbs.meta) { cursor throws(StoreError) -> [([UInt8], [UInt8])] in
                        var found: [([UInt8], [UInt8])] = []
                        var entry = try cursor.seek(atLeast: Keys.metaPrefix)
                        while let current = entry, current.key.hasPrefix(Keys.metaPrefix) {
                            found.append((Array(current.key), Array(current.value)))
                            entry = try cursor.next()
                        }
                        return found
                    }
                    for (key, value) in registry where !value.isEmpty {
                        let name = Array(key[Keys.metaPrefix.count...])
                        try txn.put(dbs.queues, Keys.queueMetaKey([UInt8(name.count)] + name), value)
                        try txn.put(dbs.meta, key, [])
                    }
                    try txn.put(dbs.meta, Keys.format, [Store.formatVersion])
                    return true
                }
            } catch  where error.code == .lmdb(.mapFull) {
                guard try environment.grow() else { throw error }
            }
        }
    }

    /// Finishes every pending write, then stops the writer thread. Later writes fail with `.closed`.
    /// Idempotent. Reads keep working until the store is deallocated.
    public func close() {
        writer.close()
    }

    /// The wall clock in milliseconds since the Unix epoch.
    @Sendable public static func wallClockMilliseconds() -> UInt64 {
        UInt64(max(0, WallClock.secondsSince1970() * 1000))
    }

    /// Whether the last write committed, and if not, why (for `/healthz` and a gauge).
    public var writeHealth: StoreWriteHealth { writer.currentHealth() }

    /// The current LMDB map size in bytes (grows by doubling up to the ceiling).
    public var mapSize: Int { environment.mapSize }

    /// Write transactions committed by this store's writer (for tests and metrics: compare with
    /// `operationsCommitted` to see group commit at work).
    public var transactionsCommitted: Int { writer.counters().transactions }
    /// Write operations whose completion reported success.
    public var operationsCommitted: Int { writer.counters().operations }

    // MARK: - Queues

    /// Appends `messages` to `queue` in order, applying `limits` in the same transaction. The completion runs
    /// after the commit, with one result per message: `.stored(seq:)` or `.rejected(reason)`. `hold`: how long
    /// it may wait for others to share its commit when the store has no fixed `commitWindow` (see
    /// `CommitHoldEstimator`); the completion still follows the commit.
    public func append(
        queue: String,
        messages: [QueuedMessage],
        limits: QueueLimits,
        hold: Duration? = nil,
        completion: @escaping @Sendable (Result<[AppendResult], StoreError>) -> Void
    ) {
        do {
            try Keys.validate(queue: queue)
            for message in messages { try Keys.validate(message: message) }
        } catch {
            return completion(.failure(error))
        }
        let weight = messages.reduce(0) {
            $0 + 64 + $1.payload.readableBytes + $1.topic.utf8.count + $1.properties.count
        }
        let operation = WriteOperation<[AppendResult]>(weight: weight, completion: completion) {
            context throws(StoreError) in
            try context.append(queue, messages, limits)
        }
        operation.alone = { writer in writer.appendAtCeiling(queue, messages, limits) }
        operation.hold = hold
        writer.submit(operation)
    }

    /// Appends and waits for the commit. See `append(queue:messages:limits:completion:)`.
    public func append(
        queue: String,
        messages: [QueuedMessage],
        limits: QueueLimits,
        hold: Duration? = nil
    ) async throws(StoreError) -> [AppendResult] {
        try await awaitResult { append(queue: queue, messages: messages, limits: limits, hold: hold, completion: $0) }
    }

    /// Up to `limit` messages of `queue` in FIFO order, starting after sequence number `after` (from the head
    /// when nil). Runs a read transaction on the calling thread. Throws `.corruptRecord` naming the sequence
    /// number if a record does not decode.
    public func read(queue: String, after: UInt64?, limit: Int) throws(StoreError) -> [StoredMessage] {
        try Keys.validate(queue: queue)
        guard limit > 0 else { return [] }
        let start: UInt64
        if let after {
            guard after < .max else { return [] }
            start = after + 1
        } else {
            start = 0
        }
        let prefix = Keys.queuePrefix(queue)
        let dbs = self.dbs
        var damaged: [[UInt8]] = []
        let messages = try environment.read { txn throws(StoreError) in
            try txn.withCursor(dbs.queues) { cursor throws(StoreError) in
                var out: [StoredMessage] = []
                var entry = try cursor.seek(atLeast: Keys.queueKey(prefix, start))
                // Every key of the queue up to its metadata: a bent key is damage to skip, not the end.
                let metaKey = Keys.queueMetaKey(prefix)
                while out.count < limit, let current = entry, current.key.hasPrefix(prefix),
                    !current.key.elementsEqual(metaKey)
                {
                    let seq = current.key.trailingSequence
                    if current.key.count == prefix.count + 8, let message = try? RecordCodec.decode(current.value) {
                        out.append(StoredMessage(seq: seq, message: message))
                    } else {
                        // Damaged: skipped so the queue moves on; moved to the quarantine below (by key: a
                        // bent key, not 8 bytes of sequence number, must move too or every read would meet it).
                        damaged.append(Array(current.key))
                    }
                    entry = try cursor.next()
                }
                return out
            }
        }
        if !damaged.isEmpty && !readOnly { quarantine(queue: queue, keys: damaged) }
        return messages
    }

    /// Removes the given sequence numbers (after the central broker's PUBACK). Unknown ones are ignored, so
    /// removing twice is harmless. The completion gets the number actually removed, after the commit.
    ///
    /// `lazily`: nobody waits for this removal but the caller's bookkeeping, so it may wait up to the
    /// store's `lazyDelay` for another operation to share its transaction (and its fdatasyncs).
    public func remove(
        queue: String,
        seqs: [UInt64],
        lazily: Bool = false,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) {
        submit(weight: 16 * seqs.count, queue: queue, lazy: lazily, completion: completion) {
            context throws(StoreError) in
            try context.remove(queue, seqs)
        }
    }

    /// Removes and waits for the commit; returns the number removed.
    @discardableResult
    public func remove(queue: String, seqs: [UInt64]) async throws(StoreError) -> Int {
        try await awaitResult { remove(queue: queue, seqs: seqs, completion: $0) }
    }

    /// Deletes every message of `queue` (counters and the sequence number are kept).
    public func purge(queue: String, completion: @escaping @Sendable (Result<Int, StoreError>) -> Void) {
        submit(weight: 0, queue: queue, completion: completion) { context throws(StoreError) in
            try context.purge(queue)
        }
    }

    /// Purges and waits for the commit; returns the number of messages deleted.
    @discardableResult
    public func purge(queue: String) async throws(StoreError) -> Int {
        try await awaitResult { purge(queue: queue, completion: $0) }
    }

    /// Drops messages at the head of `queue` whose `enqueuedAt` is more than `maxAge` ms before `now`
    /// (counted as dropped `.maxAge`). `now` defaults to the store's clock.
    public func expire(
        queue: String,
        maxAge: UInt64,
        now: UInt64? = nil,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) {
        submit(weight: 0, queue: queue, completion: completion) { context throws(StoreError) in
            try context.expire(queue, maxAge: maxAge, now: now)
        }
    }

    /// Expires and waits for the commit; returns the number of messages dropped.
    @discardableResult
    public func expire(queue: String, maxAge: UInt64, now: UInt64? = nil) async throws(StoreError) -> Int {
        try await awaitResult { expire(queue: queue, maxAge: maxAge, now: now, completion: $0) }
    }

    /// The persisted state of `queue` (all zero for a queue never used). Works from another process.
    public func stats(queue: String) throws(StoreError) -> QueueStats {
        try Keys.validate(queue: queue)
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            let meta = try txn.queueMeta(queue, dbs)
            return QueueStats(
                depth: meta.count,
                bytes: meta.bytes,
                oldestEnqueuedAt: try txn.oldestEnqueuedAt(queue, dbs),
                nextSeq: meta.nextSeq,
                dropped: meta.dropped,
                rejected: meta.rejected,
                quarantined: try txn.quarantinedTotal(queue, dbs)
            )
        }
    }

    /// Names of every queue that has ever been written, sorted by their UTF-8 bytes.
    public func queueNames() throws(StoreError) -> [String] {
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            try txn.withCursor(dbs.meta) { cursor throws(StoreError) in
                var names: [String] = []
                var entry = try cursor.seek(atLeast: Keys.metaPrefix)
                while let current = entry, current.key.hasPrefix(Keys.metaPrefix) {
                    let name = current.key[Keys.metaPrefix.count...]
                    guard let string = String(validating: name, as: UTF8.self) else {
                        throw StoreError.corrupt("queue name in metadata is not UTF-8")
                    }
                    names.append(string)
                    entry = try cursor.next()
                }
                return names
            }
        }
    }

    // MARK: - Key/value tables (retained messages, sessions)

    /// Longest key accepted by `table` (LMDB's 511-byte key limit minus the table prefix).
    public static func maxKeyLength(table: String) -> Int { Keys.maxKeySize - 1 - table.utf8.count }

    /// Stores `value` under `key` in `table`, replacing any previous value.
    public func put(
        table: String,
        key: [UInt8],
        value: [UInt8],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        do { try Keys.validate(table: table, key: key) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<Void>(weight: key.count + value.count + 16, completion: completion) {
                context throws(StoreError) in
                try context.put(table, key, value)
            }
        )
    }

    /// Puts and waits for the commit.
    public func put(table: String, key: [UInt8], value: [UInt8]) async throws(StoreError) {
        try await awaitResult { put(table: table, key: key, value: value, completion: $0) }
    }

    /// Deletes `key` from `table`; the completion says whether it existed.
    public func delete(table: String, key: [UInt8], completion: @escaping @Sendable (Result<Bool, StoreError>) -> Void)
    {
        do { try Keys.validate(table: table, key: key) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<Bool>(weight: key.count + 16, completion: completion) { context throws(StoreError) in
                try context.delete(table, key)
            }
        )
    }

    /// Deletes and waits for the commit; returns whether the key existed.
    @discardableResult
    public func delete(table: String, key: [UInt8]) async throws(StoreError) -> Bool {
        try await awaitResult { delete(table: table, key: key, completion: $0) }
    }

    /// Deletes every entry of `table`; the completion gets how many.
    public func deleteAll(table: String, completion: @escaping @Sendable (Result<Int, StoreError>) -> Void) {
        do { try Keys.validate(table: table) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<Int>(weight: 0, completion: completion) { context throws(StoreError) in
                try context.deleteAll(table)
            }
        )
    }

    /// Deletes every entry of `table` and waits for the commit; returns how many.
    @discardableResult
    public func deleteAll(table: String) async throws(StoreError) -> Int {
        try await awaitResult { deleteAll(table: table, completion: $0) }
    }

    /// Applies `writes` in order in one transaction: all of them commit, or (completion failure) none.
    public func apply(_ writes: [TableWrite], completion: @escaping @Sendable (Result<Void, StoreError>) -> Void) {
        var weight = 0
        do {
            for write in writes {
                switch write {
                case .put(let table, let key, let value):
                    try Keys.validate(table: table, key: key)
                    weight += key.count + value.count + 16
                case .delete(let table, let key):
                    try Keys.validate(table: table, key: key)
                    weight += key.count + 16
                case .deletePrefix(let table, let prefix):
                    try Keys.validate(table: table, key: prefix)
                    weight += prefix.count + 16
                }
            }
        } catch {
            return completion(.failure(error))
        }
        writer.submit(
            WriteOperation<Void>(weight: weight, completion: completion) { context throws(StoreError) in
                for write in writes {
                    switch write {
                    case .put(let table, let key, let value): try context.put(table, key, value)
                    case .delete(let table, let key): _ = try context.delete(table, key)
                    case .deletePrefix(let table, let prefix): _ = try context.deleteAll(table, keyPrefix: prefix)
                    }
                }
            }
        )
    }

    /// Applies and waits for the commit.
    public func apply(_ writes: [TableWrite]) async throws(StoreError) {
        try await awaitResult { apply(writes, completion: $0) }
    }

    /// Every entry of `table`, ordered by key bytes, copied out of the map.
    public func scan(table: String) throws(StoreError) -> [(key: [UInt8], value: [UInt8])] {
        try Keys.validate(table: table)
        let prefix = Keys.tablePrefix(table)
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            try txn.withCursor(dbs.tables) { cursor throws(StoreError) in
                var out: [(key: [UInt8], value: [UInt8])] = []
                var entry = try cursor.seek(atLeast: prefix)
                while let current = entry, current.key.hasPrefix(prefix) {
                    out.append((Array(current.key[prefix.count...]), Array(current.value)))
                    entry = try cursor.next()
                }
                return out
            }
        }
    }

    /// The value of `key` in `table`, or nil.
    public func get(table: String, key: [UInt8]) throws(StoreError) -> [UInt8]? {
        try Keys.validate(table: table, key: key)
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            try txn.get(dbs.tables, Keys.tablePrefix(table) + key)
        }
    }

    // MARK: - Helpers

    private func submit<R: Sendable>(
        weight: Int,
        queue: String,
        lazy: Bool = false,
        completion: @escaping @Sendable (Result<R, StoreError>) -> Void,
        _ body: @escaping (WriteContext) throws(StoreError) -> R
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        let operation = WriteOperation<R>(weight: weight, completion: completion, body)
        operation.lazy = lazy
        writer.submit(operation)
    }

    func submitOperation(_ operation: PendingWrite) { writer.submit(operation) }

    private func awaitResult<R: Sendable>(
        _ submit: (@escaping @Sendable (Result<R, StoreError>) -> Void) -> Void
    ) async throws(StoreError) -> R {
        let result: Result<R, StoreError> = await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: $0) }
        }
        return try result.get()
    }
}

extension WriteContext {
    func expire(_ queue: String, maxAge: UInt64, now: UInt64?) throws(StoreError) -> Int {
        guard let now else { return try expire(queue, maxAge: maxAge) }
        // An explicit `now` (tests, or a caller with its own clock) applies to this operation only.
        let saved = self.now
        self.now = now
        defer { self.now = saved }
        return try expire(queue, maxAge: maxAge)
    }
}

/// Something the gateway should count or log (at a rate-limited warning), reported after the commit.
public enum StoreEvent: Sendable, Hashable {
    /// Messages removed from `queue` without delivery.
    case dropped(queue: String, reason: DropReason, count: UInt64)
    /// Messages refused at append.
    case rejected(queue: String, reason: DropReason, count: UInt64)
    /// The map was enlarged (bytes).
    case mapGrew(from: Int, to: Int)
    /// The map is at its ceiling and free pages fell to the reserve, or the filesystem's free space
    /// fell below the free-space guard (true), or there is room again (false).
    case lowSpace(Bool)
    /// Writes stopped committing, or commit again (`.writable`); reported on every change.
    case health(StoreWriteHealth)
    /// Damaged records (checksum mismatch, undecodable) moved from `queue` to its quarantine.
    case quarantined(queue: String, count: UInt64, reason: String)
}

// MARK: - The writer thread

/// A write operation waiting for the writer. `apply` runs inside the shared batch transaction and stages
/// its result; `finish` hands it to the caller after the commit. `runAlone` is the fallback when the
/// batch could not commit: the operation runs in a transaction of its own.
protocol PendingWrite: AnyObject {
    var weight: Int { get }
    /// May wait (up to the writer's `lazyDelay`) for an ordinary operation to share its transaction.
    var lazy: Bool { get }
    /// How long an eager operation may wait for others when the writer has no fixed `commitWindow`
    /// (`queue_commit_window auto`); nil or zero: commit at once. See `CommitHoldEstimator`.
    var hold: Duration? { get }
    /// When it was submitted (monotonic nanoseconds), for its hold.
    var submittedAt: UInt64 { get set }
    func apply(_ context: WriteContext) throws(StoreError)
    func finish()
    func fail(_ error: StoreError)
    func runAlone(_ writer: Writer) -> Bool
}

final class WriteOperation<R: Sendable>: PendingWrite {
    let weight: Int
    var lazy = false
    var hold: Duration?
    var submittedAt: UInt64 = 0
    let completion: @Sendable (Result<R, StoreError>) -> Void
    let body: (WriteContext) throws(StoreError) -> R
    /// A custom fallback (appends apply their policy at the map's ceiling).
    var alone: ((Writer) -> Result<R, StoreError>)?
    private var staged: Result<R, StoreError>?

    init(
        weight: Int,
        completion: @escaping @Sendable (Result<R, StoreError>) -> Void,
        _ body: @escaping (WriteContext) throws(StoreError) -> R
    ) {
        self.weight = weight
        self.completion = completion
        self.body = body
    }

    func apply(_ context: WriteContext) throws(StoreError) {
        do {
            staged = .success(try body(context))
        } catch {
            // `.storeFull` is refused by the store's own rules before touching LMDB: the transaction is still
            // good. Anything else came from LMDB and aborts the transaction.
            guard error.code == .storeFull else { throw error }
            staged = .failure(error)
        }
    }

    func finish() {
        completion(staged ?? .failure(StoreError.invalid("operation finished unapplied")))
    }

    func fail(_ error: StoreError) {
        completion(.failure(error))
    }

    func runAlone(_ writer: Writer) -> Bool {
        let result = alone?(writer) ?? writer.runSingle(body)
        completion(result)
        if case .success = result { return true }
        return false
    }
}

/// Owns the writer thread, the queue of pending operations, and every write transaction.
final class Writer: @unchecked Sendable {
    let environment: LMDBEnvironment
    let dbs: Databases
    private let maxBatchBytes: Int
    private let lazyDelay: Duration
    private let commitWindow: Duration
    private let clock: @Sendable () -> UInt64
    private let onEvent: (@Sendable (StoreEvent) -> Void)?
    private let freeSpaceGuard: FreeSpaceGuard
    /// The directory holding the store's file (statvfs).
    private let directory: String

    // Guarded by `condition`.
    private var health = StoreWriteHealth.writable
    private let condition = ConditionMutex()
    private var pending: [PendingWrite] = []
    /// Operations in `pending` that are not lazy.
    private var eager = 0
    /// The summed weight of `pending`.
    private var pendingWeight = 0
    /// When the eager operations in `pending` may commit, by their holds (without a fixed `commitWindow`).
    private var holds = HoldDeadline()
    private var closing = false
    private var running = false
    private let thread = NamedThread()
    private var transactions = 0
    private var operations = 0
    /// Writer-thread only: see `WriteContext.lowSpace`. Updated before every transaction.
    private var lowSpace = false
    /// Writer-thread only: why `lowSpace` is set.
    private var lowSpaceReason: String?
    /// Writer-thread only: a commit failed for want of room on the filesystem. Until the filesystem
    /// has room again the writer works under low space (appends apply their policy in their own
    /// transaction, puts wait) instead of failing commit after commit.
    private var filesystemFull = false

    init(
        environment: LMDBEnvironment,
        dbs: Databases,
        maxBatchBytes: Int,
        lazyDelay: Duration = .zero,
        commitWindow: Duration = .zero,
        clock: @escaping @Sendable () -> UInt64,
        freeSpaceGuard: FreeSpaceGuard = .none,
        onEvent: (@Sendable (StoreEvent) -> Void)?
    ) {
        self.environment = environment
        self.dbs = dbs
        self.maxBatchBytes = maxBatchBytes
        self.lazyDelay = lazyDelay
        self.commitWindow = commitWindow
        self.clock = clock
        self.freeSpaceGuard = freeSpaceGuard
        self.directory = StorageSpace.directory(of: environment.path)
        self.onEvent = onEvent
    }

    func currentHealth() -> StoreWriteHealth {
        condition.withLock { health }
    }

    /// Records how the last write ended; reports a change of state (not of the reason's wording:
    /// free bytes change with every write).
    private func noteHealth(_ new: StoreWriteHealth) {
        let changed = condition.withLock {
            defer { health = new }
            return health.state != new.state
        }
        if changed { emit([.health(new)]) }
    }

    /// After a commit: writable, or full while the store works under low space.
    private func noteCommitted() {
        noteHealth(lowSpaceReason.map { .full($0) } ?? .writable)
    }

    private func emit(_ events: [StoreEvent]) {
        guard let onEvent else { return }
        for event in events { onEvent(event) }
    }

    /// Grows the map, reporting it. False at the ceiling.
    private func grow() -> Bool {
        let before = environment.mapSize
        guard (try? environment.grow()) == true else { return false }
        emit([.mapGrew(from: before, to: environment.mapSize)])
        return true
    }

    func start() {
        condition.withLock { running = true }
        thread.start(name: "sluice-store-writer") { [self] in self.run() }
    }

    func counters() -> (transactions: Int, operations: Int) {
        condition.withLock { (transactions, operations) }
    }

    /// Queues an operation; completes it at once with `.closed` after `close()`.
    func submit(_ operation: PendingWrite) {
        condition.lock()
        if closing {
            condition.unlock()
            operation.fail(StoreError.closedError)
            return
        }
        pending.append(operation)
        pendingWeight += operation.weight
        if !operation.lazy {
            eager += 1
            if commitWindow == .zero {
                operation.submittedAt = monotonicNanoseconds()
                holds.add(hold: operation.hold, at: operation.submittedAt)
            }
        }
        // A lazy operation behind others changes nothing the writer waits on (it waits for a first operation,
        // an eager one, or a full batch): no wake-up, which a bridge at a window of one would pay per message.
        if !operation.lazy || pending.count == 1 || pendingWeight >= maxBatchBytes { condition.signal() }
        condition.unlock()
    }

    /// Lets the writer drain what is pending, then stops it; every caller but the writer itself (a completion
    /// may close the store) waits until it has stopped.
    func close() {
        condition.lock()
        defer { condition.unlock() }
        closing = true
        condition.broadcast()
        guard !thread.isCurrent else { return }
        while running { condition.wait() }
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && !closing { condition.wait() }
            if eager == 0 && !closing && lazyDelay > .zero {
                // Only lazy operations: they ride the next ordinary commit, or commit alone once idle.
                let deadline = ConditionMutex.deadline(after: lazyDelay)
                while eager == 0 && !closing && condition.wait(until: deadline) {}
            }
            if eager > 0 && !closing && commitWindow > .zero {
                // The commit window: let more operations share this commit (bounded by the batch size).
                let deadline = ConditionMutex.deadline(after: commitWindow)
                while !closing && pendingWeight < maxBatchBytes && condition.wait(until: deadline) {}
            } else if eager > 0 {
                // `auto`: wait until the earliest held operation is due, an operation without a hold arrives,
                // or the batch is full.
                while !closing && pendingWeight < maxBatchBytes, let commitBy = holds.commitBy {
                    let now = monotonicNanoseconds()
                    guard now < commitBy else { break }
                    _ = condition.wait(until: ConditionMutex.deadline(after: .nanoseconds(commitBy - now)))
                }
            }
            if pending.isEmpty && closing {
                running = false
                condition.broadcast()
                condition.unlock()
                return
            }
            // Group commit: everything pending, up to about maxBatchBytes of payload (always at least one).
            var take = 0
            var bytes = 0
            while take < pending.count && (take == 0 || bytes + pending[take].weight <= maxBatchBytes) {
                bytes += pending[take].weight
                take += 1
            }
            let batch = Array(pending.prefix(take))
            pending.removeFirst(take)
            pendingWeight -= bytes
            eager -= batch.count(where: { !$0.lazy })
            if commitWindow == .zero {
                holds = HoldDeadline()
                for operation in pending where !operation.lazy {
                    holds.add(hold: operation.hold, at: operation.submittedAt)
                }
            }
            condition.unlock()
            runBatch(batch)
        }
    }

    private func count(transactions: Int, operations: Int) {
        condition.withLock {
            self.transactions += transactions
            self.operations += operations
        }
    }

    private func runBatch(_ batch: [PendingWrite]) {
        var failure: StoreError
        updateLowSpace()
        while true {
            do {
                let now = clock()
                let dbs = self.dbs
                let events = try environment.write { txn throws(StoreError) in
                    let context = WriteContext(txn: txn, dbs: dbs, now: now, lowSpace: lowSpace)
                    for operation in batch { try operation.apply(context) }
                    try context.flush()
                    return context.events()
                }
                count(transactions: 1, operations: batch.count)
                noteCommitted()
                // Before the completions: a bridge serving appends from memory must see a commit's drops
                // no later than the appends it committed with them (StoreChangeSignal).
                emit(events)
                for operation in batch { operation.finish() }
                return
            } catch {
                failure = error
            }
            if failure.code == .lmdb(.mapFull), grow() { continue }
            break
        }
        // The batch could not commit: the map is at its ceiling, the disk is full, or one operation failed.
        // Run each operation in a transaction of its own so that one failure does not fail the others.
        _ = failure
        for operation in batch where operation.runAlone(self) {
            count(transactions: 1, operations: 1)
        }
    }

    /// Once the map is at its ceiling, keeps a reserve of free pages (1/32 of the map, at least 16 pages, at
    /// most 1/4 of the map) for
    /// the operations that free space: LMDB copies pages on write, so even a delete needs free pages, and a
    /// map filled to the last page could not be emptied. The free-space guard works the same way: below
    /// it (the filesystem's free bytes plus the store's own free pages), the store stops growing.
    private func updateLowSpace() {
        var reason: String? = nil
        if environment.mapSize >= environment.maxMapSize, let space = try? environment.spacePages(),
            space.available < min(space.total / 4, max(16, space.total / 32))
        {
            reason = "the store reached store_max_size (\(environment.maxMapSize) bytes)"
        }
        if filesystemFull, let filesystem = FilesystemSpace.of(directory) {
            if filesystem.available >= StorageSpace.nearlyFull {
                filesystemFull = false
            } else if reason == nil {
                reason = "the filesystem of \(directory) is full (\(filesystem.available) bytes free)"
            }
        }
        if reason == nil, let filesystem = FilesystemSpace.of(directory),
            let threshold = freeSpaceGuard.threshold(total: filesystem.total), filesystem.available < threshold
        {
            // Only pay for counting the free list when the filesystem is below the guard.
            let reusable = (try? environment.freeListBytes()) ?? 0
            if filesystem.available + reusable < threshold {
                reason =
                    "\(filesystem.available) bytes free on the filesystem of \(directory), below store_min_free (\(threshold) bytes)"
            }
        }
        let now = reason != nil
        if now != lowSpace { emit([.lowSpace(now)]) }
        lowSpace = now
        lowSpaceReason = reason
        if now, currentHealth().isWritable, let reason { noteHealth(.full(reason)) }
    }

    /// Runs `body` in its own write transaction, growing the map as needed. At the ceiling it fails with
    /// `.storeFull`.
    func runSingle<R>(_ body: (WriteContext) throws(StoreError) -> R) -> Result<R, StoreError> {
        updateLowSpace()
        while true {
            do {
                let now = clock()
                let dbs = self.dbs
                let lowSpace = self.lowSpace
                let (value, events) = try environment.write { txn throws(StoreError) -> (R, [StoreEvent]) in
                    let context = WriteContext(txn: txn, dbs: dbs, now: now, lowSpace: lowSpace)
                    let value = try body(context)
                    try context.flush()
                    return (value, context.events())
                }
                noteCommitted()
                emit(events)
                return .success(value)
            } catch {
                if error.code == .lmdb(.mapFull), grow() { continue }
                if error.code == .storeFull {
                    // Refused by the store's own rules (low space), before LMDB: nothing failed.
                    return .failure(error)
                }
                if StorageSpace.isOutOfSpace(error, directory: directory) {
                    if error.code != .lmdb(.mapFull) { filesystemFull = true }
                    let full = StoreError(
                        code: .storeFull,
                        message:
                            "store full at \(environment.mapSize) bytes (ceiling \(environment.maxMapSize)), or its filesystem is: \(error.message)"
                    )
                    noteHealth(.full(full.message))
                    return .failure(full)
                }
                noteHealth(.failing(error.message))
                return .failure(error)
            }
        }
    }

    /// An append that could not commit with its batch: message by message, each in its own transaction,
    /// applying the queue's policy to a full store. drop_oldest commits the deletion of the oldest records
    /// (doubling how many each round) and retries; reject_new, or an empty queue, rejects with `.storeFull`.
    func appendAtCeiling(_ queue: String, _ messages: [QueuedMessage], _ limits: QueueLimits) -> Result<
        [AppendResult], StoreError
    > {
        var results: [AppendResult] = []
        for message in messages {
            var round = 0
            while true {
                switch runSingle({ context throws(StoreError) in try context.append(queue, [message], limits) }) {
                case .success(let result):
                    results.append(contentsOf: result)
                case .failure(let error) where error.code == .storeFull:
                    var made = 0
                    if limits.policy == .dropOldest, round < 40 {
                        let count = 1 << min(round, 16)
                        made =
                            (try? runSingle({ context throws(StoreError) in
                                try context.dropOldest(queue, count: count, reason: .storeFull)
                            }).get()) ?? 0
                    }
                    if made > 0 {
                        round += 1
                        continue
                    }
                    // Best effort: counting may itself fail on a full map.
                    _ = runSingle { context throws(StoreError) in try context.countRejected(queue, .storeFull) }
                    results.append(.rejected(.storeFull))
                case .failure(let error):
                    return .failure(error)
                }
                break
            }
        }
        return .success(results)
    }
}

/// One write of `Store.apply(_:completion:)`.
public enum TableWrite: Sendable, Equatable {
    case put(table: String, key: [UInt8], value: [UInt8])
    case delete(table: String, key: [UInt8])
    /// Deletes every key of the table that starts with `prefix`.
    case deletePrefix(table: String, prefix: [UInt8])
}
