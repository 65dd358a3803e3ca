#if canImport(Glibc)
    import Glibc
#endif

// Note on dead letters: a bridge message the remote can never take (a permanent PUBACK refusal, too
// large for it, a poison message that cut the connection `bridge_max_attempts` times, or an
// operator's `sluice queue drop`) moves from the bridge's queue to its dead-letter table in ONE write
// transaction: it is never in both and never in neither. Counts by reason live beside it and only grow
// (`sluice queue stats` and `/metrics` read the same numbers). `requeue` appends a dead letter to the
// TAIL of the queue under a new seq (the head has moved on; a seq below the link's cursor would not be
// sent until the next reconnect), again in one transaction with its deletion.
//
// The bridge control record (`paused`, and a generation the CLI bumps on every change) is how a second
// process steers a running gateway: LMDB serialises writers across processes, and the gateway polls
// the generation once a second with a read transaction (a few microseconds). A control socket would
// need a protocol and access rules of its own; the store already has both, and the CLI already opens it.

/// A message moved out of a bridge's queue.
public struct DeadLetter: Sendable, Hashable {
    /// Its seq in the queue it left.
    public var seq: UInt64
    /// Why (see `DeadLetterCodes` in SluiceBridge: a PUBACK reason code >= 0x80, or a small value).
    public var code: UInt8
    /// When it was moved, milliseconds since the epoch.
    public var deadAt: UInt64
    public var message: QueuedMessage
}

/// Dead-letter counts of one bridge.
public struct DeadLetterCounts: Sendable, Hashable {
    /// Dead letters in the table now.
    public var current: UInt64 = 0
    /// Messages ever moved there, by reason byte (never decreases).
    public var byReason: [UInt8: UInt64] = [:]

    public var total: UInt64 { byReason.values.reduce(0, +) }
}

/// What `dropMessage` did.
public enum OperatorDropOutcome: Sendable, Hashable {
    /// The message was in the queue: it is now a dead letter (reason `operatorDrop`).
    case movedToDeadLetters
    /// It was a dead letter: deleted for good.
    case deletedDeadLetter
    case notFound
}

extension Store {
    static let deadTable = "bridge.dead"
    static let deadCountTable = "bridge.deadcount"
    static let controlTable = "bridge.control"
    /// The reason byte under which the current dead-letter count is kept (0x00 is never a reason).
    static let currentCountCode: UInt8 = 0x00
    static let operatorDropCode: UInt8 = 0x03

    // MARK: Dead letters

    /// Moves `seqs` from `queue` to its dead letters with reason `code`, in one transaction. Seqs no
    /// longer queued are skipped; the completion gets how many moved.
    public func deadLetter(
        queue: String,
        seqs: [UInt64],
        code: UInt8,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<Int>(weight: 64 * seqs.count, completion: completion) { context throws(StoreError) in
                try context.moveToDeadLetters(queue, seqs, code: code)
            }
        )
    }

    /// Waits for the commit. See `deadLetter(queue:seqs:code:completion:)`.
    @discardableResult
    public func deadLetter(queue: String, seqs: [UInt64], code: UInt8) async throws(StoreError) -> Int {
        try await awaitWrite { deadLetter(queue: queue, seqs: seqs, code: code, completion: $0) }
    }

    /// Up to `limit` dead letters of `queue`, oldest seq first.
    public func deadLetters(queue: String, limit: Int = .max) throws(StoreError) -> [DeadLetter] {
        try Keys.validate(queue: queue)
        let prefix = Keys.tablePrefix(Self.deadTable) + Keys.queuePrefix(queue)
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            try txn.withCursor(dbs.tables) { cursor throws(StoreError) in
                var out: [DeadLetter] = []
                var entry = try cursor.seek(atLeast: prefix)
                while out.count < limit, let current = entry, current.key.hasPrefix(prefix),
                    current.key.count == prefix.count + 8
                {
                    let seq = current.key.trailingSequence
                    out.append(try Self.decodeDeadLetter(seq: seq, Array(current.value), queue: queue))
                    entry = try cursor.next()
                }
                return out
            }
        }
    }

    /// Current and cumulative dead-letter counts of `queue` (zero for a queue that has none).
    public func deadLetterCounts(queue: String) throws(StoreError) -> DeadLetterCounts {
        try Keys.validate(queue: queue)
        let prefix = Keys.tablePrefix(Self.deadCountTable) + Keys.queuePrefix(queue)
        let dbs = self.dbs
        return try environment.read { txn throws(StoreError) in
            try txn.withCursor(dbs.tables) { cursor throws(StoreError) in
                var counts = DeadLetterCounts()
                var entry = try cursor.seek(atLeast: prefix)
                while let current = entry, current.key.hasPrefix(prefix), current.key.count == prefix.count + 1 {
                    let code = current.key[current.key.count - 1]
                    let value = Array(current.value).bigEndianUInt64
                    if code == Self.currentCountCode { counts.current = value } else { counts.byReason[code] = value }
                    entry = try cursor.next()
                }
                return counts
            }
        }
    }

    /// Appends dead letters back to the tail of `queue` (all of them when `seqs` is nil) and deletes
    /// them from the dead letters, in one transaction. Returns the new queue seqs, in the old order.
    public func requeueDeadLetters(
        queue: String,
        seqs: [UInt64]?,
        completion: @escaping @Sendable (Result<[UInt64], StoreError>) -> Void
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<[UInt64]>(weight: 1024, completion: completion) { context throws(StoreError) in
                try context.requeueDeadLetters(queue, seqs)
            }
        )
    }

    public func requeueDeadLetters(queue: String, seqs: [UInt64]?) async throws(StoreError) -> [UInt64] {
        try await awaitWrite { requeueDeadLetters(queue: queue, seqs: seqs, completion: $0) }
    }

    /// The operator's drop: a queued message becomes a dead letter (reason `operatorDrop`, so it stays
    /// counted and recoverable); a dead letter is deleted for good.
    public func dropMessage(
        queue: String,
        seq: UInt64,
        completion: @escaping @Sendable (Result<OperatorDropOutcome, StoreError>) -> Void
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<OperatorDropOutcome>(weight: 64, completion: completion) { context throws(StoreError) in
                if try context.moveToDeadLetters(queue, [seq], code: Self.operatorDropCode) == 1 {
                    return .movedToDeadLetters
                }
                return try context.deleteDeadLetter(queue, seq) ? .deletedDeadLetter : .notFound
            }
        )
    }

    public func dropMessage(queue: String, seq: UInt64) async throws(StoreError) -> OperatorDropOutcome {
        try await awaitWrite { dropMessage(queue: queue, seq: seq, completion: $0) }
    }

    // MARK: Bridge control

    /// The bridge's control state: paused, and a generation that changes with every control write.
    public func bridgeControl(queue: String) throws(StoreError) -> (paused: Bool, generation: UInt64) {
        try Keys.validate(queue: queue)
        let key = Keys.tablePrefix(Self.controlTable) + Keys.queuePrefix(queue)
        let dbs = self.dbs
        let value = try environment.read { txn throws(StoreError) in try txn.get(dbs.tables, key) }
        guard let value, value.count == 9 else { return (false, 0) }
        return (value[0] == 1, Array(value[1...]).bigEndianUInt64)
    }

    /// Sets `paused` (nil: unchanged) and bumps the generation, so a running gateway looks again
    /// (at its pause flag and at its queue, e.g. after a requeue).
    public func updateBridgeControl(
        queue: String,
        paused: Bool?,
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        writer.submit(
            WriteOperation<Void>(weight: 16, completion: completion) { context throws(StoreError) in
                try context.updateBridgeControl(queue, paused: paused)
            }
        )
    }

    public func updateBridgeControl(queue: String, paused: Bool?) async throws(StoreError) {
        try await awaitWrite { updateBridgeControl(queue: queue, paused: paused, completion: $0) }
    }

    // MARK: Helpers

    static func decodeDeadLetter(seq: UInt64, _ value: [UInt8], queue: String) throws(StoreError) -> DeadLetter {
        guard value.count > 9 else { throw StoreError.corrupt("dead letter \(queue) seq \(seq): too short") }
        let message: QueuedMessage
        do throws(StoreError) {
            message = try RecordCodec.decode(Array(value[9...]))
        } catch {
            throw StoreError.corrupt("dead letter \(queue) seq \(seq): \(error.message)")
        }
        return DeadLetter(seq: seq, code: value[0], deadAt: Array(value[1..<9]).bigEndianUInt64, message: message)
    }

    private func awaitWrite<R: Sendable>(
        _ submit: (@escaping @Sendable (Result<R, StoreError>) -> Void) -> Void
    ) async throws(StoreError) -> R {
        let result: Result<R, StoreError> = await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: $0) }
        }
        return try result.get()
    }
}

extension WriteContext {
    private func deadKey(_ queue: String, _ seq: UInt64) -> [UInt8] {
        Keys.queueKey(Keys.tablePrefix(Store.deadTable) + Keys.queuePrefix(queue), seq)
    }

    private func countKey(_ queue: String, _ code: UInt8) -> [UInt8] {
        Keys.tablePrefix(Store.deadCountTable) + Keys.queuePrefix(queue) + [code]
    }

    private func addCount(_ queue: String, _ code: UInt8, _ delta: Int64) throws(StoreError) {
        let key = countKey(queue, code)
        let old = (try txn.get(dbs.tables, key)).map(\.bigEndianUInt64) ?? 0
        let new = delta >= 0 ? old &+ UInt64(delta) : (old >= UInt64(-delta) ? old - UInt64(-delta) : 0)
        var value: [UInt8] = []
        value.appendBigEndian(new)
        try txn.put(dbs.tables, key, value)
    }

    /// Queue → dead letters, counted; returns how many moved. Works at the map's ceiling too (it
    /// frees the queue record as it writes the dead letter, so it must not be refused for space).
    @discardableResult
    func moveToDeadLetters(_ queue: String, _ seqs: [UInt64], code: UInt8) throws(StoreError) -> Int {
        let prefix = Keys.queuePrefix(queue)
        var moved = 0
        for seq in seqs {
            guard let record = try txn.get(dbs.queues, Keys.queueKey(prefix, seq)) else { continue }
            guard try remove(queue, [seq]) == 1 else { continue }
            var value: [UInt8] = [code]
            value.appendBigEndian(now)
            value += record
            try txn.put(dbs.tables, deadKey(queue, seq), value)
            moved += 1
        }
        if moved > 0 {
            try addCount(queue, code, Int64(moved))
            try addCount(queue, Store.currentCountCode, Int64(moved))
        }
        return moved
    }

    func deleteDeadLetter(_ queue: String, _ seq: UInt64) throws(StoreError) -> Bool {
        guard try txn.delete(dbs.tables, deadKey(queue, seq)) else { return false }
        try addCount(queue, Store.currentCountCode, -1)
        return true
    }

    func requeueDeadLetters(_ queue: String, _ seqs: [UInt64]?) throws(StoreError) -> [UInt64] {
        let wanted: [UInt64]
        if let seqs {
            wanted = seqs
        } else {
            let prefix = Keys.tablePrefix(Store.deadTable) + Keys.queuePrefix(queue)
            wanted = try txn.withCursor(dbs.tables) { cursor throws(StoreError) in
                var found: [UInt64] = []
                var entry = try cursor.seek(atLeast: prefix)
                while let current = entry, current.key.hasPrefix(prefix), current.key.count == prefix.count + 8 {
                    found.append(current.key.trailingSequence)
                    entry = try cursor.next()
                }
                return found
            }
        }
        var newSeqs: [UInt64] = []
        for seq in wanted {
            guard let value = try txn.get(dbs.tables, deadKey(queue, seq)) else { continue }
            let letter = try Store.decodeDeadLetter(seq: seq, value, queue: queue)
            let results = try append(queue, [letter.message], .unlimited)
            guard let newSeq = results.first?.seq else { continue }
            _ = try deleteDeadLetter(queue, seq)
            newSeqs.append(newSeq)
        }
        return newSeqs
    }

    func updateBridgeControl(_ queue: String, paused: Bool?) throws(StoreError) {
        let key = Keys.tablePrefix(Store.controlTable) + Keys.queuePrefix(queue)
        let old = try txn.get(dbs.tables, key)
        let oldPaused = old.map { $0.count == 9 && $0[0] == 1 } ?? false
        let generation = old.flatMap { $0.count == 9 ? Array($0[1...]).bigEndianUInt64 : nil } ?? 0
        var value: [UInt8] = [(paused ?? oldPaused) ? 1 : 0]
        value.appendBigEndian(generation &+ 1)
        try txn.put(dbs.tables, key, value)
    }
}

extension Array where Element == UInt8 {
    /// The first 8 bytes as a big-endian UInt64 (0 when shorter).
    var bigEndianUInt64: UInt64 {
        guard count >= 8 else { return 0 }
        var value: UInt64 = 0
        for byte in self[startIndex..<startIndex + 8] { value = value << 8 | UInt64(byte) }
        return value
    }
}
