import Foundation
import Testing

@testable import SluiceStore

/// A message whose payload is unique in the file, so a test can find and damage it on disk.
private func marked(_ i: Int) -> QueuedMessage {
    QueuedMessage(
        topic: "t/\(i)",
        payload: Array("PAYLOAD-\(String(format: "%05d", i))-abcdefgh".utf8),
        enqueuedAt: 1_000
    )
}

/// Builds a closed store at `path` holding `count` marked messages in queue "q" and one table entry.
private func makeStore(_ path: String, count: Int) async throws {
    let store = try Store(path: path)
    _ = try await store.append(queue: "q", messages: (1...count).map(marked), limits: .unlimited)
    try await store.put(table: "retained", key: Array("a/b".utf8), value: Array("kept".utf8))
    store.close()
}

/// Flips one byte inside every occurrence of `needle` in the file (LMDB leaves stale copies of old pages
/// on its free list: only one of them is live).
private func flipByte(in path: String, after needle: String, offset: Int = 10) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let pattern = Array(needle.utf8)
    let starts = (0...(bytes.count - pattern.count)).filter { Array(bytes[$0..<$0 + pattern.count]) == pattern }
    guard !starts.isEmpty else { throw StoreError.invalid("pattern \(needle) not in \(path)") }
    for start in starts { bytes[start + offset] ^= 0x5A }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func truncate(_ path: String, to size: Int) throws {
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try handle.truncate(atOffset: UInt64(size))
    try handle.close()
}

/// Records store events (quarantine reports) for assertions.
private final class QuarantineEventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [StoreEvent] = []
    func add(_ event: StoreEvent) { lock.withLock { events.append(event) } }
    var quarantined: [StoreEvent] {
        lock.withLock { events.filter { if case .quarantined = $0 { return true } else { return false } } }
    }
}

@Suite struct QuarantineTests {
    @Test func checksumMismatchOnDiskIsQuarantinedAndTheQueueMovesOn() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try await makeStore(dir.storePath, count: 5)
        // Flash rot inside the payload of message 3: still decodes structurally, only the checksum knows.
        try flipByte(in: dir.storePath, after: "PAYLOAD-00003", offset: 14)
        let log = QuarantineEventLog()
        let store = try Store(path: dir.storePath, onEvent: { log.add($0) })
        defer { store.close() }
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 2, 4, 5])
        _ = try await store.remove(queue: "q", seqs: [])  // the writer is FIFO: the quarantine has committed
        let stats = try store.stats(queue: "q")
        #expect(stats.depth == 4)
        #expect(stats.quarantined == 1)
        let held = try store.quarantined()
        #expect(held.count == 1)
        #expect(held.first?.seq == 3)
        #expect(held.first?.queue == "q")
        #expect(held.first?.reason.contains("checksum mismatch") == true)
        #expect(throws: StoreError.self) { try RecordCodec.decode(held.first?.bytes ?? []) }
        #expect(log.quarantined == [.quarantined(queue: "q", count: 1, reason: held.first!.reason)])
        // Reading again neither returns nor re-counts it.
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 2, 4, 5])
        _ = try await store.remove(queue: "q", seqs: [])
        #expect(try store.stats(queue: "q").quarantined == 1)
        #expect(log.quarantined.count == 1)
    }

    @Test func undecodableRecordIsQuarantined() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: (1...3).map { message($0) }, limits: .unlimited)
        let queues = store.dbs.queues
        try store.environment.write { txn throws(StoreError) in
            try txn.put(queues, Keys.queueKey(Keys.queuePrefix("q"), 2), [1, 0, 1, 0, 0])  // version 1, truncated
        }
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 3])
        _ = try await store.remove(queue: "q", seqs: [])
        #expect(try store.stats(queue: "q").quarantined == 1)
        #expect(try store.quarantined(queue: "q").map(\.bytes) == [[1, 0, 1, 0, 0]])
        #expect(try store.quarantined(queue: "other").isEmpty)
        // A limit counts good records only: the damaged one does not shorten a batch.
        #expect(try store.read(queue: "q", after: nil, limit: 2).map(\.seq) == [1, 3])
    }

    @Test func recordUnderABentKeyIsQuarantinedOnce() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: (1...2).map { message($0) }, limits: .unlimited)
        let queues = store.dbs.queues
        let bent = Keys.queuePrefix("q") + [0, 0, 0, 0, 0, 1]  // 6 bytes of sequence number, not 8
        try store.environment.write { txn throws(StoreError) in
            try txn.put(queues, bent, RecordCodec.encode(message(9)))
        }
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 2])
        _ = try await store.remove(queue: "q", seqs: [])
        #expect(try store.stats(queue: "q").quarantined == 1)
        #expect(try store.quarantined(queue: "q").map(\.reason) == ["damaged key (6 bytes of sequence number)"])
        let transactions = store.transactionsCommitted
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 2])
        #expect(store.transactionsCommitted == transactions)  // nothing left to move: no write per read
    }

    @Test func damagedHeadDoesNotStopAppendsWithAMaxAge() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: [message(1, enqueuedAt: .max / 2)], limits: .unlimited)
        let queues = store.dbs.queues
        try store.environment.write { txn throws(StoreError) in
            try txn.put(queues, Keys.queueKey(Keys.queuePrefix("q"), 1), [9, 9])
        }
        let results = try await store.append(
            queue: "q",
            messages: [message(2, enqueuedAt: .max / 2)],
            limits: QueueLimits(maxAge: 60_000)
        )
        #expect(results == [.stored(seq: 2)])
        let stats = try store.stats(queue: "q")
        #expect(stats.quarantined == 1)
        #expect(stats.depth == 1)
    }

    @Test func readOnlyStoreSkipsDamageWithoutWriting() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try await makeStore(dir.storePath, count: 3)
        try flipByte(in: dir.storePath, after: "PAYLOAD-00002")
        let store = try Store(path: dir.storePath, readOnly: true)
        #expect(try store.read(queue: "q", after: nil, limit: 10).map(\.seq) == [1, 3])
        #expect(try store.stats(queue: "q").quarantined == 0)  // nothing moved: read-only
        do {
            _ = try await store.append(queue: "q", messages: [message(9)], limits: .unlimited)
            Issue.record("a read-only store accepted a write")
        } catch {
            #expect(error.code == .closed)
        }
    }
}

@Suite struct FileCheckTests {
    /// A real store file, closed, to damage.
    private func realStore(_ dir: TempDir) async throws -> String {
        try await makeStore(dir.storePath, count: 2_000)
        return dir.storePath
    }

    @Test(arguments: ["half", "8KiB", "onePage"]) func truncatedFileIsRefusedBeforeMapping(_ cut: String) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await realStore(dir)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        try truncate(path, to: cut == "half" ? size / 2 : cut == "8KiB" ? 8_192 : 4_096)
        do {
            _ = try StoreFileCheck.inspect(path: path)
            Issue.record("a truncated file passed the check")
        } catch {
            #expect(error.code == .damagedFile)
            #expect(error.message.contains(path))
            #expect(error.message.contains("salvage"))
        }
        // Store.init refuses too (without the check, LMDB maps it and the first read is SIGBUS).
        #expect(throws: StoreError.self) { _ = try Store(path: path) }
    }

    @Test func zeroLengthFileIsANewStoreWithAWarningFlag() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try #require(FileManager.default.createFile(atPath: dir.storePath, contents: Data()))
        #expect(try StoreFileCheck.inspect(path: dir.storePath) == .empty)
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        #expect(store.startedFromEmptyFile)
    }

    @Test func missingFileIsNotDamage() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        #expect(try StoreFileCheck.inspect(path: dir.storePath) == .missing)
    }

    @Test func validFileNamesItsNewerMeta() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await realStore(dir)
        guard case .valid(let meta, let size) = try StoreFileCheck.inspect(path: path) else {
            Issue.record("a good store did not pass")
            return
        }
        #expect(meta.pageSize == 4096)
        #expect(meta.requiredSize <= size)
        #expect(meta.lastPage > 2)
        #expect(meta.transactionID >= 2)
    }

    @Test(arguments: [0, 1]) func brokenMetaPageIsRefused(page: Int) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await realStore(dir)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[page * 4096 + 16] ^= 0xFF  // the magic
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try StoreFileCheck.inspect(path: path)
            Issue.record("a broken meta page passed")
        } catch {
            #expect(error.code == .damagedFile)
            #expect(error.message.contains("meta page \(page)"))
        }
        #expect(throws: StoreError.self) { _ = try Store(path: path) }
    }

    @Test func craftedMetaPages() throws {
        func page(
            magic: UInt32 = 0xBEEF_C0DE,
            version: UInt32 = 1,
            flags: UInt16 = 0x08,
            pageSize: UInt32 = 4096,
            lastPage: UInt64,
            txn: UInt64
        ) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 4096)
            func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
                withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
            }
            store(flags, at: 10)
            store(magic, at: 16)
            store(version, at: 20)
            store(pageSize, at: 40)
            store(lastPage, at: 136)
            store(txn, at: 144)
            return bytes
        }
        func inspect(_ file: [UInt8], size: Int? = nil) throws(StoreError) -> StoreFileCheck.Verdict {
            try StoreFileCheck.inspect(
                read: { offset, count in
                    let start = min(Int(offset), file.count)
                    return Array(file[start..<min(start + count, file.count)])
                },
                fileSize: UInt64(size ?? file.count),
                path: "/x/sluice.db"
            )
        }
        // The newer meta (txn 7, 10 pages) decides the required size.
        let good = page(lastPage: 3, txn: 6) + page(lastPage: 9, txn: 7) + [UInt8](repeating: 0, count: 8 * 4096)
        guard case .valid(let meta, _) = try inspect(good) else { Issue.record("valid file refused"); return }
        #expect(meta.lastPage == 9 && meta.transactionID == 7)
        #expect(throws: StoreError.self) { try inspect(Array(good.prefix(9 * 4096))) }
        let cases: [[UInt8]] = [
            page(magic: 0xDEAD_BEEF, lastPage: 1, txn: 1) + page(lastPage: 1, txn: 2),
            page(version: 2, lastPage: 1, txn: 1) + page(lastPage: 1, txn: 2),
            page(flags: 0x02, lastPage: 1, txn: 1) + page(lastPage: 1, txn: 2),
            page(pageSize: 1000, lastPage: 1, txn: 1) + page(lastPage: 1, txn: 2),
            page(lastPage: 1, txn: 1) + page(pageSize: 8192, lastPage: 1, txn: 2),
            page(lastPage: 1, txn: 1),  // second meta missing
            Array(page(lastPage: 1, txn: 1).prefix(100)),
            [UInt8](repeating: 0xAB, count: 20_000),
        ]
        for file in cases {
            #expect(throws: StoreError.self) { try inspect(file) }
        }
    }
}

@Suite struct VerifyAndSalvageTests {
    @Test func verifyFindsDamageAndSalvageCopiesTheRest() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try await makeStore(dir.storePath, count: 300)
        do {
            let clean = try Store(path: dir.storePath, readOnly: true)
            let report = clean.verify()
            #expect(report.isClean)
            #expect(report.tables.first { $0.name == "queue q" }?.records == 300)
            #expect(report.tables.first { $0.name == "table retained" }?.records == 1)
        }
        try flipByte(in: dir.storePath, after: "PAYLOAD-00100")
        try flipByte(in: dir.storePath, after: "PAYLOAD-00200")
        let source = try Store(path: dir.storePath, readOnly: true)
        let report = source.verify()
        #expect(!report.isClean)
        let queue = report.tables.first { $0.name == "queue q" }
        #expect(queue?.records == 300)
        #expect(queue?.damaged == 2)
        #expect(queue?.problems.contains { $0.hasPrefix("seq 100:") } == true)

        let target = dir.url.appendingPathComponent("salvaged.db").path
        let salvage = try Store.salvage(from: dir.storePath, to: target)
        #expect(salvage.tables.first { $0.name == "queue q" }?.records == 298)
        #expect(salvage.tables.first { $0.name == "queue q" }?.damaged == 2)
        let copy = try Store(path: target)
        defer { copy.close() }
        #expect(copy.verify().isClean)
        let stats = try copy.stats(queue: "q")
        #expect(stats.depth == 298)
        #expect(stats.nextSeq == 301)
        #expect(stats.quarantined == 2)
        #expect(try copy.quarantined(queue: "q").map(\.seq) == [100, 200])
        #expect(try copy.read(queue: "q", after: nil, limit: 1_000).count == 298)
        #expect(try copy.get(table: "retained", key: Array("a/b".utf8)) == Array("kept".utf8))
        // New appends continue the sequence.
        #expect(try await copy.append(queue: "q", messages: [message(1)], limits: .unlimited) == [.stored(seq: 301)])
    }
}

@Suite struct StoreLockTests {
    @Test func secondLockRefusesNamingThePID() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let first = try StoreLock(directory: dir.url.path)
        let recorded = try String(contentsOfFile: first.path, encoding: .utf8)
        #expect(recorded == "\(getpid())\n")
        do {
            _ = try StoreLock(directory: dir.url.path)
            Issue.record("a second lock was granted")
        } catch {
            #expect(error.code == .locked)
            #expect(error.message.contains("PID \(getpid())"))
            #expect(error.message.contains("sluice.db"))
        }
        withExtendedLifetime(first) {}
    }

    @Test func lockIsFreedWithItsHolder() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        do { _ = try StoreLock(directory: dir.url.path) }
        let again = try StoreLock(directory: dir.url.path)  // the stale file with an old PID is no obstacle
        withExtendedLifetime(again) {}
    }
}

@Suite struct PageWalkTests {
    /// Page numbers of the leaf pages holding queue records, found by the walk itself.
    private func queueLeaves(_ path: String) throws -> [Int] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        return (2..<bytes.count / 4096).filter { page in
            let base = page * 4096
            return bytes[base + 10] & 0x02 != 0 && PageWalk.load(bytes, base, UInt64.self) == UInt64(page)
                && String(decoding: bytes[base..<base + 4096], as: UTF8.self).contains("PAYLOAD-")
        }
    }

    @Test func cleanStoreWalksEveryRecord() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try await makeStore(dir.storePath, count: 1_000)
        var queueRecords = 0
        var tableRecords = 0
        let result = try PageWalk.walk(path: dir.storePath) { db, key, _ in
            if db == "queues" && key.count == 10 { queueRecords += 1 }  // not the queue's metadata (11 bytes)
            if db == "tables" { tableRecords += 1 }
        }
        #expect(result.problems.isEmpty)
        #expect(queueRecords == 1_000)
        #expect(tableRecords == 1)
    }

    @Test(arguments: ["node-pointer", "lower", "flags", "pgno"]) func brokenLeafPagesAreFoundAndSalvageKeepsTheRest(
        _ damage: String
    ) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try await makeStore(dir.storePath, count: 1_000)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.storePath)))
        // The live leaves: stale copies of old pages are not reachable and would not count.
        let candidates = try queueLeaves(dir.storePath)
        #expect(candidates.count > 4)
        let victim = candidates[candidates.count / 2]
        let base = victim * 4096
        switch damage {
        case "node-pointer": bytes[base + 16] = 0xFF; bytes[base + 17] = 0xFF
        case "lower": bytes[base + 12] = 0xF0; bytes[base + 13] = 0xFF
        case "flags": bytes[base + 10] = 0x01
        default: bytes[base] ^= 0x40
        }
        try Data(bytes).write(to: URL(fileURLWithPath: dir.storePath))
        var queueRecords = 0
        let result = try PageWalk.walk(path: dir.storePath) { db, key, _ in
            if db == "queues" && key.count == 10 { queueRecords += 1 }
        }
        // A stale copy might have been picked; then the walk is rightly clean and complete.
        if result.problems.isEmpty {
            #expect(queueRecords == 1_000)
            return
        }
        // A leaf posing as a branch sends the walk to "children" that are not pages: reported there.
        // Layout 2: queue records live in LMDB's main database.
        #expect(result.problems.allSatisfy { $0.hasPrefix("main: page ") })
        #expect(damage == "flags" || result.problems.allSatisfy { $0.hasPrefix("main: page \(victim):") })
        #expect(queueRecords < 1_000 && queueRecords > 500)
        let target = dir.url.appendingPathComponent("salvaged.db").path
        let report = try Store.salvage(from: dir.storePath, to: target)
        #expect(!report.isClean)
        #expect(report.tables.first { $0.name == "queue q" }?.records == queueRecords)
        let copy = try Store(path: target)
        defer { copy.close() }
        #expect(copy.verify().isClean)
        #expect(try copy.stats(queue: "q").depth == UInt64(queueRecords))
        #expect(try copy.get(table: "retained", key: Array("a/b".utf8)) == Array("kept".utf8))
    }
}
