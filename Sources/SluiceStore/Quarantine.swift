// The quarantine: damaged queue records moved aside so that the queue moves on.
//
// A record that fails its checksum or does not decode would otherwise stop its bridge for good (every
// read stops at it) or, without a checksum, forward a corrupted payload. Reading skips it at once; a
// write operation then moves it, bytes unchanged, to the `quarantine` database of the same store, so the
// operator can list and export it (`sluice store quarantine`), and counts it per queue.
//
// Layout of the `quarantine` database:
// - `[name length: 1][name][seq: 8]` (the queue key it had) → `[1] version = 1, [8] quarantinedAt ms,
//   [2] reason length R, [R] reason (UTF-8), the original record bytes`.
// - `[0][name]` → `[8]` the number of records ever quarantined from that queue (big-endian). A queue name
//   is at least one byte, so these keys never collide with the record keys.

import CLMDB

/// A record held in the quarantine.
public struct QuarantinedRecord: Sendable, Hashable {
    public var queue: String
    public var seq: UInt64
    /// When it was moved, ms since the Unix epoch.
    public var quarantinedAt: UInt64
    /// Why (the decoder's message).
    public var reason: String
    /// The record exactly as it was found in the queue.
    public var bytes: [UInt8]
}

enum QuarantineCodec {
    static let version: UInt8 = 1

    static func encode(at: UInt64, reason: String, bytes: [UInt8]) -> [UInt8] {
        let reasonBytes = Array(reason.utf8.prefix(1000))
        var out: [UInt8] = [version]
        out.appendBigEndian(at)
        out.append(UInt8(reasonBytes.count >> 8))
        out.append(UInt8(reasonBytes.count & 0xFF))
        out.append(contentsOf: reasonBytes)
        out.append(contentsOf: bytes)
        return out
    }

    static func decode(queue: String, seq: UInt64, _ value: UnsafeRawBufferPointer) -> QuarantinedRecord {
        var reader = ByteReader(value)
        guard reader.readByte() == version, let at = reader.readUInt64(), let high = reader.readByte(),
            let low = reader.readByte(), Int(high) << 8 | Int(low) <= reader.remaining
        else {
            // The quarantine entry is itself damaged: hand back its raw bytes rather than nothing.
            return QuarantinedRecord(
                queue: queue,
                seq: seq,
                quarantinedAt: 0,
                reason: "damaged quarantine entry",
                bytes: Array(value)
            )
        }
        let length = Int(high) << 8 | Int(low)
        let reason = String(decoding: value[reader.index..<reader.index + length], as: UTF8.self)
        return QuarantinedRecord(
            queue: queue,
            seq: seq,
            quarantinedAt: at,
            reason: reason,
            bytes: Array(value[(reader.index + length)...])
        )
    }

    static func totalKey(_ queue: String) -> [UInt8] { [0] + Array(queue.utf8) }
}

extension Transaction {
    /// Records ever quarantined from `queue` (0 when the store has no quarantine yet).
    func quarantinedTotal(_ queue: String, _ dbs: Databases) throws(StoreError) -> UInt64 {
        guard let db = dbs.quarantine else { return 0 }
        return try withValue(db, QuarantineCodec.totalKey(queue)) { buffer in
            guard let buffer, buffer.count == 8 else { return 0 }
            var reader = ByteReader(buffer)
            return reader.readUInt64() ?? 0
        }
    }
}

extension WriteContext {
    /// Moves the record under `cursor` (a key of the queue with `prefix`) to the quarantine and deletes it;
    /// the cursor must then be re-positioned by the caller.
    func quarantineCurrent(_ cursor: Cursor, _ prefix: [UInt8], _ meta: inout QueueMeta, reason: String)
        throws(StoreError)
    {
        guard let current = try cursor.current() else { return }
        let key = Array(current.key)
        let value = Array(current.value)
        try cursor.deleteCurrent()
        try keep(prefix: prefix, key: key, value: value, meta: &meta, reason: reason)
    }

    /// Moves the given records (by their keys) of `queue` to the quarantine if they are still there and
    /// still damaged.
    func quarantine(_ queue: String, keys: [[UInt8]]) throws(StoreError) -> Int {
        var meta = try meta(queue)
        let prefix = Keys.queuePrefix(queue)
        var moved = 0
        for key in keys where key.starts(with: prefix) && key != Keys.queueMetaKey(prefix) {
            guard let value = try txn.get(dbs.queues, key) else { continue }
            let reason: String
            if key.count != prefix.count + 8 {
                reason = "damaged key (\(key.count - prefix.count) bytes of sequence number)"
            } else {
                do {
                    _ = try RecordCodec.decode(value)
                    continue  // decodes now: not ours to move
                } catch {
                    reason = error.message
                }
            }
            try txn.delete(dbs.queues, key)
            try keep(prefix: prefix, key: key, value: value, meta: &meta, reason: reason)
            moved += 1
        }
        setMeta(queue, meta)
        return moved
    }

    private func keep(prefix: [UInt8], key: [UInt8], value: [UInt8], meta: inout QueueMeta, reason: String)
        throws(StoreError)
    {
        guard let db = dbs.quarantine else { throw StoreError.invalid("the store has no quarantine (read-only)") }
        meta.count = meta.count > 0 ? meta.count - 1 : 0
        meta.bytes = meta.bytes >= UInt64(value.count) ? meta.bytes - UInt64(value.count) : 0
        try txn.put(db, key, QuarantineCodec.encode(at: now, reason: reason, bytes: value))
        let name = String(decoding: prefix.dropFirst(), as: UTF8.self)
        let totalKey = QuarantineCodec.totalKey(name)
        var total = try txn.quarantinedTotal(name, dbs)
        total += 1
        var encoded: [UInt8] = []
        encoded.appendBigEndian(total)
        try txn.put(db, totalKey, encoded)
        if let index = quarantineEvents.lastIndex(where: {
            if case .quarantined(let queue, _, let last) = $0 { return queue == name && last == reason }
            return false
        }), case .quarantined(_, let count, _) = quarantineEvents[index] {
            quarantineEvents[index] = .quarantined(queue: name, count: count + 1, reason: reason)
        } else {
            quarantineEvents.append(.quarantined(queue: name, count: 1, reason: reason))
        }
    }
}

extension Store {
    /// Moves damaged records of `queue` aside (submitted by `read` when it skipped them). Best effort: a
    /// failure leaves them where they are, and the next read skips them again.
    func quarantine(queue: String, keys: [[UInt8]]) {
        let operation = WriteOperation<Int>(weight: 0, completion: { _ in }) { context throws(StoreError) in
            try context.quarantine(queue, keys: keys)
        }
        submitOperation(operation)
    }

    /// Every record in the quarantine, optionally of one queue only, in key order.
    public func quarantined(queue: String? = nil) throws(StoreError) -> [QuarantinedRecord] {
        let dbs = self.dbs
        guard let db = dbs.quarantine else { return [] }
        let prefix = queue.map { Keys.queuePrefix($0) } ?? []
        return try environment.read { txn throws(StoreError) in
            try txn.withCursor(db) { cursor throws(StoreError) in
                var out: [QuarantinedRecord] = []
                var entry = try cursor.seek(atLeast: prefix.isEmpty ? [1] : prefix)
                while let current = entry, current.key.hasPrefix(prefix) {
                    let key = current.key
                    let nameLength = Int(key[0])
                    if nameLength > 0, key.count >= 1 + nameLength {
                        let name = String(decoding: key[1..<1 + nameLength], as: UTF8.self)
                        let seq = key.count == 1 + nameLength + 8 ? key.trailingSequence : 0  // 0: a bent key
                        out.append(QuarantineCodec.decode(queue: name, seq: seq, current.value))
                    }
                    entry = try cursor.next()
                }
                return out
            }
        }
    }
}
