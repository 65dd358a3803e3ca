// `sluice store check` (`verify`) and `sluice store salvage` (`salvage`).
//
// `verify` walks every record of every database through LMDB, read-only, decoding and checksumming the
// queue records. It relies on LMDB's own checks for the tree (MDB_CORRUPTED for a page of the wrong
// kind, MDB_PAGE_NOTFOUND for a page number past the end); when LMDB stops a walk with an error, the
// walk starts a new transaction just past the last good key, so one broken page costs the records it
// held, not the rest of the table. Damage LMDB does not check (a node offset pointing outside its page)
// would crash the reader: the CLI runs `PageWalk` first and this walk only on sound pages, both in a
// child process (Sources/sluice/StoreCommand.swift).
//
// `salvage` never opens the damaged store with LMDB: it copies what `PageWalk` reads from sound pages.

import CLMDB

/// What a walk of one part of the store found.
public struct StoreTableReport: Sendable, Hashable {
    /// "meta", "queue NAME", "table NAME", "quarantine".
    public var name: String
    public var records = 0
    public var damaged = 0
    /// Up to 20 descriptions of what was wrong.
    public var problems: [String] = []

    mutating func note(_ problem: String) {
        if problems.count < 20 { problems.append(problem) }
    }
}

public struct StoreReport: Sendable, Hashable {
    public var tables: [StoreTableReport] = []
    /// Records held in the quarantine (already contained: not counted as damage).
    public var quarantined = 0
    /// True when no live record is damaged and every tree walked to its end.
    public var isClean: Bool { tables.allSatisfy { $0.damaged == 0 && $0.problems.isEmpty } }
}

/// Where a walk is: the tables seen so far, keyed by name, in order of first appearance.
private struct Tally {
    var order: [String] = []
    var tables: [String: StoreTableReport] = [:]

    mutating func update(_ name: String, _ change: (inout StoreTableReport) -> Void) {
        if tables[name] == nil {
            order.append(name)
            tables[name] = StoreTableReport(name: name)
        }
        change(&tables[name]!)
    }

    var reports: [StoreTableReport] { order.map { tables[$0]! } }
}

extension Store {
    /// Visits every entry of `db` in key order; on an LMDB error, notes it and resumes just past the last
    /// key read (a new read transaction). Returns the errors met.
    func walk(
        _ db: LMDBDatabase,
        _ visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) -> [String] {
        var errors: [String] = []
        var resumeAfter: [UInt8]? = nil
        var finished = false
        var attempts = 0
        while !finished && attempts < 1000 {
            attempts += 1
            do throws(StoreError) {
                try environment.read { txn throws(StoreError) in
                    try txn.withCursor(db) { cursor throws(StoreError) in
                        var entry: Cursor.Entry?
                        if let after = resumeAfter {
                            entry = try cursor.seek(atLeast: after + [0])
                        } else {
                            entry = try cursor.first()
                        }
                        while let current = entry {
                            visit(current.key, current.value)
                            resumeAfter = Array(current.key)
                            entry = try cursor.next()
                        }
                    }
                }
                finished = true
            } catch {
                let position = resumeAfter.map { "after key \(hex($0))" } ?? "at the start"
                if let last = errors.last, last.hasPrefix(position) {
                    // Stuck at the same place: skip ahead one key byte and stop if that fails too.
                    guard var key = resumeAfter, !key.isEmpty else { break }
                    while let lastByte = key.last, lastByte == 0xFF { key.removeLast() }
                    guard !key.isEmpty else { break }
                    key[key.count - 1] += 1
                    resumeAfter = key
                }
                errors.append("\(position): \(error.message)")
            }
        }
        return errors
    }

    /// Reads every record of every database and reports what it found. Read-only; safe beside a gateway.
    public func verify() -> StoreReport {
        var tally = Tally()
        let dbs = self.dbs
        let metaErrors = walk(dbs.meta) { key, value in
            tally.update("meta") { report in
                report.records += 1
                // Layout 2 lists queues here with an empty value; layout 1 kept their metadata here.
                if key.hasPrefix(Keys.metaPrefix), !value.isEmpty, (try? QueueMeta.decode(value)) == nil {
                    report.damaged += 1
                    report.note(
                        "queue metadata \(String(decoding: key, as: UTF8.self)) is damaged (rebuilt on next write)"
                    )
                }
            }
        }
        tally.update("meta") { $0.problems += metaErrors }
        let queueErrors = walk(dbs.queues) { key, value in
            switch MainKey(key, valueCount: value.count) {
            case .database:
                return
            case .bent:
                tally.update("queues") { report in
                    report.damaged += 1
                    report.note("a key of \(key.count) bytes that names no queue: \(hex(Array(key.prefix(32))))")
                }
            case .queueMeta(let name):
                if (try? QueueMeta.decode(value)) == nil {
                    tally.update("queue \(name)") { $0.note("its metadata is damaged (rebuilt on the next write)") }
                }
            case .record(let name, let seq):
                tally.update("queue \(name)") { report in
                    report.records += 1
                    do throws(StoreError) {
                        _ = try RecordCodec.decode(value)
                    } catch {
                        report.damaged += 1
                        report.note("seq \(seq): \(error.message)")
                    }
                }
            }
        }
        if !queueErrors.isEmpty { tally.update("queues") { $0.problems += queueErrors } }
        let tableErrors = walk(dbs.tables) { key, value in
            let nameLength = Int(key.first ?? 0)
            let name = key.count > nameLength ? String(decoding: key[1..<1 + nameLength], as: UTF8.self) : "?"
            // The values are the broker's own encodings, without a checksum: reading them touches every page.
            _ = CRC32C.checksum(value)
            tally.update("table \(name)") { $0.records += 1 }
        }
        if !tableErrors.isEmpty { tally.update("tables") { $0.problems += tableErrors } }
        var report = StoreReport()
        if let quarantine = dbs.quarantine {
            let errors = walk(quarantine) { key, _ in
                if key.first != 0 { report.quarantined += 1 }
            }
            if !errors.isEmpty { tally.update("quarantine") { $0.problems += errors } }
        }
        report.tables = tally.reports
        return report
    }

    /// Copies every readable record of the store file at `source` into a new store at `path` (which must
    /// not exist or be empty), reading the source with `PageWalk` (plain `pread`, every page checked), so
    /// broken pages cost their own records and never crash the salvage: queue records that decode keep
    /// their sequence numbers, damaged ones go to the new store's quarantine, table entries and the
    /// quarantine are copied as they are, queue counters are rebuilt.
    public static func salvage(from source: String, to path: String) throws(StoreError) -> StoreReport {
        var tally = Tally()
        var entries: [(db: String, key: [UInt8], value: [UInt8])] = []
        let walk = try PageWalk.stableWalk(path: source) { entries.append(($0, $1, $2)) }
        if !walk.problems.isEmpty {
            tally.update("pages") { $0.problems = walk.problems.map { "lost records of \($0)" } }
        }
        var size = 64 << 20
        if case .valid(let meta, _) = try StoreFileCheck.inspect(path: source) {
            size = max(size, Int(meta.requiredSize) * 2)
        }
        let destination = try Store(path: path, initialMapSize: size, maxMapSize: max(1 << 30, size * 2))
        defer { destination.close() }
        let to = destination.dbs
        let now = Store.wallClockMilliseconds()
        var metas: [String: QueueMeta] = [:]
        var oldMetas: [String: QueueMeta] = [:]
        var quarantined = 0
        var puts: [(LMDBDatabase, [UInt8], [UInt8])] = []
        for entry in entries {
            switch entry.db {
            case "meta":
                if entry.key.starts(with: Keys.metaPrefix), !entry.value.isEmpty {  // layout 1 metadata
                    let decoded = entry.value.withUnsafeBytes { try? QueueMeta.decode($0) }
                    if let decoded {
                        oldMetas[String(decoding: entry.key.dropFirst(Keys.metaPrefix.count), as: UTF8.self)] = decoded
                    }
                }
            case "queues":
                let key = entry.key
                let name: String
                let seq: UInt64
                switch MainKey(key, valueCount: entry.value.count) {
                case .database:
                    continue
                case .bent:
                    tally.update("queues") { report in
                        report.damaged += 1
                        report.note("lost a key of \(key.count) bytes that names no queue")
                    }
                    continue
                case .queueMeta(let queue):
                    if let decoded = entry.value.withUnsafeBytes({ try? QueueMeta.decode($0) }) {
                        oldMetas[queue] = decoded
                    }
                    continue
                case .record(let queue, let number):
                    name = queue
                    seq = number
                }
                var meta = metas[name] ?? QueueMeta()
                meta.nextSeq = max(meta.nextSeq, seq + 1)
                do throws(StoreError) {
                    _ = try RecordCodec.decode(entry.value)
                    puts.append((to.queues, key, entry.value))
                    meta.count += 1
                    meta.bytes += UInt64(entry.value.count)
                    tally.update("queue \(name)") { $0.records += 1 }
                } catch {
                    puts.append(
                        (
                            to.quarantine!, key,
                            QuarantineCodec.encode(at: now, reason: error.message, bytes: entry.value)
                        )
                    )
                    tally.update("queue \(name)") { report in
                        report.damaged += 1
                        report.note("seq \(seq) moved to the quarantine: \(error.message)")
                    }
                }
                metas[name] = meta
            case "tables":
                let nameLength = Int(entry.key.first ?? 0)
                let name =
                    entry.key.count > nameLength ? String(decoding: entry.key[1..<1 + nameLength], as: UTF8.self) : "?"
                puts.append((to.tables, entry.key, entry.value))
                tally.update("table \(name)") { $0.records += 1 }
            case "quarantine":
                if entry.key.first != 0 { quarantined += 1 }
                puts.append((to.quarantine!, entry.key, entry.value))
            default:
                break
            }
        }
        let added = tally.reports.filter { $0.name.hasPrefix("queue ") && $0.damaged > 0 }
            .map { (String($0.name.dropFirst(6)), UInt64($0.damaged)) }
        let finalMetas = metas
        let copied = puts
        try destination.environment.write { txn throws(StoreError) in
            for (db, key, value) in copied { try txn.put(db, key, value) }
            for (name, var meta) in finalMetas {
                if let old = oldMetas[name] {
                    meta.nextSeq = max(meta.nextSeq, old.nextSeq)
                    meta.dropped = old.dropped
                    meta.rejected = old.rejected
                }
                try txn.put(to.queues, Keys.queueMetaKey(Keys.queuePrefix(name)), meta.encode())
                try txn.put(to.meta, Keys.registryKey(name), [])
            }
            // Records moved to the quarantine by this salvage count like any other quarantined record.
            for (name, count) in added {
                var total = try txn.quarantinedTotal(name, to)
                total += count
                var encoded: [UInt8] = []
                encoded.appendBigEndian(total)
                try txn.put(to.quarantine!, QuarantineCodec.totalKey(name), encoded)
            }
        }
        var report = StoreReport()
        report.tables = tally.reports
        report.quarantined = quarantined
        return report
    }
}

/// What a key of the main database is (layout 2; layout 1's `queues` database holds records only).
enum MainKey: Equatable {
    case record(queue: String, seq: UInt64)
    case queueMeta(queue: String)
    /// The entry of a named database ("meta", "tables", "quarantine").
    case database
    case bent

    init<Key: Collection<UInt8>>(_ key: Key, valueCount: Int) where Key.Index == Int {
        let bytes = Array(key)
        if valueCount == 48,
            ["meta", "tables", "quarantine", "queues"].contains(String(decoding: bytes, as: UTF8.self))
        {
            self = .database
            return
        }
        guard let length = bytes.first.map(Int.init), length >= 1, bytes.count >= 1 + length + 8 else {
            self = .bent
            return
        }
        let queue = String(decoding: bytes[1..<1 + length], as: UTF8.self)
        if bytes.count == 1 + length + 8 {
            self = .record(queue: queue, seq: bytes.withUnsafeBytes { $0.trailingSequence })
        } else if bytes.count == 1 + length + 9, bytes[(1 + length)...].allSatisfy({ $0 == 0xFF }) {
            self = .queueMeta(queue: queue)
        } else {
            self = .bent
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}
