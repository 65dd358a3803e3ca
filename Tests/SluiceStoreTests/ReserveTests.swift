import NIOCore
import Testing

@testable import SluiceStore

/// The record encoder as it was before records were written into LMDB's reserved space (a verbatim copy):
/// the reference the in-place encoder must match byte for byte, so records written before read after and
/// vice versa.
private func legacyEncode(_ message: QueuedMessage) -> [UInt8] {
    let topic = Array(message.topic.utf8)
    let payload = Array(message.payload.readableBytesView)
    var out: [UInt8] = []
    out.reserveCapacity(27 + topic.count + message.properties.count + payload.count)
    out.append(RecordCodec.version)
    out.append(message.retain ? 1 : 0)
    out.append(message.qos)
    out.appendBigEndian(message.enqueuedAt)
    out.appendBigEndian(UInt32(topic.count))
    out.append(contentsOf: topic)
    out.appendBigEndian(UInt32(message.properties.count))
    out.append(contentsOf: message.properties)
    out.appendBigEndian(UInt32(payload.count))
    out.append(contentsOf: payload)
    out.appendBigEndian(CRC32C.checksum(out))
    return out
}

/// Edge cases the codec allows: empty topic and payload, no properties, a payload that is a slice in the middle
/// of a larger buffer, a long multi-byte topic, a large payload, extreme field values.
private func edgeMessages() -> [QueuedMessage] {
    var received = ByteBuffer(bytes: Array(0..<200).map { UInt8($0) })
    received.moveReaderIndex(forwardBy: 37)
    let slice = received.readSlice(length: 64)!  // as the broker's decoder hands payloads over
    return [
        QueuedMessage(topic: "", payload: [], qos: 0, retain: false, properties: [], enqueuedAt: 0),
        QueuedMessage(topic: "a", payload: [0], qos: 1, enqueuedAt: 1),
        message(1),
        message(2, payloadSize: 0),
        QueuedMessage(topic: "bench/x", payload: slice, qos: 1, enqueuedAt: 1_733_000_000_000),
        QueuedMessage(
            topic: String(repeating: "ü/∑/😀/", count: 60),
            payload: Array(repeating: 0xFF, count: 70_000),
            qos: 2,
            retain: true,
            properties: Array(repeating: 0x26, count: 300),
            enqueuedAt: .max
        ),
        QueuedMessage(topic: "big", payload: (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 * 7) }, enqueuedAt: 5),
    ]
}

@Suite struct ReservedRecordTests {
    /// One record written out by hand from the format note in Records.swift: the layout on disk is fixed.
    @Test func theRecordLayoutIsUnchanged() {
        let m = QueuedMessage(
            topic: "t/1",
            payload: [0xAA, 0xBB],
            qos: 1,
            retain: true,
            properties: [0x01, 0x00],
            enqueuedAt: 0x0102_0304_0506_0708
        )
        var expected: [UInt8] = [2, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8]
        expected += [0, 0, 0, 3] + Array("t/1".utf8)
        expected += [0, 0, 0, 2, 0x01, 0x00]
        expected += [0, 0, 0, 2, 0xAA, 0xBB]
        expected.appendBigEndian(CRC32C.checksum(expected))
        #expect(RecordCodec.encodedSize(m) == expected.count)
        #expect(RecordCodec.encode(m) == expected)
        #expect(legacyEncode(m) == expected)
    }

    @Test func theInPlaceEncoderMatchesTheOldOne() throws {
        for m in edgeMessages() {
            let bytes = RecordCodec.encode(m)
            #expect(bytes.count == RecordCodec.encodedSize(m))
            #expect(bytes == legacyEncode(m))
            #expect(try RecordCodec.decode(bytes) == m)
            #expect(try RecordCodec.decode(legacyEncode(m)) == m)
        }
    }

    /// What `append` leaves in the page (written through MDB_RESERVE) is what the old encoder wrote; records
    /// the old encoder wrote (put by hand) read back through the store alike.
    @Test func appendWritesTheOldEncodersBytesIntoThePage() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        let messages = edgeMessages()
        let results = try await store.append(queue: "q", messages: messages, limits: .unlimited)
        #expect(results == (1...messages.count).map { .stored(seq: UInt64($0)) })
        let environment = try LMDBEnvironment.shared(path: dir.storePath, mapSize: 1 << 20, maxMapSize: 1 << 20)
        defer { environment.release() }
        let queues = try environment.openDatabase(nil)
        let prefix = Keys.queuePrefix("q")
        for (offset, m) in messages.enumerated() {
            let stored = try environment.read { txn throws(StoreError) in
                try txn.get(queues, Keys.queueKey(prefix, UInt64(offset + 1)))
            }
            #expect(stored == legacyEncode(m), "record \(offset + 1)")
        }
        #expect(try store.stats(queue: "q").bytes == UInt64(messages.map { legacyEncode($0).count }.reduce(0, +)))
        #expect(try store.read(queue: "q", after: nil, limit: 100).map(\.message) == messages)

        // The other way: records from the old encoder, read by this build.
        try environment.write { txn throws(StoreError) in
            for (offset, m) in messages.enumerated() {
                try txn.put(queues, Keys.queueKey(Keys.queuePrefix("old"), UInt64(offset + 1)), legacyEncode(m))
            }
        }
        #expect(try store.read(queue: "old", after: nil, limit: 100).map(\.message) == messages)
    }

    /// A payload read back from the store is its own buffer: still whole after the read transaction ended and
    /// the page was reused.
    @Test func aPayloadReadBackOutlivesItsPage() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: [message(7, payloadSize: 3_000)], limits: .unlimited)
        let read = try store.read(queue: "q", after: nil, limit: 1)
        try await store.remove(queue: "q", seqs: [1])
        _ = try await store.append(
            queue: "q",
            messages: (8...40).map { message($0, payloadSize: 3_000) },
            limits: .unlimited
        )
        #expect(read.first?.message.payload == ByteBuffer(bytes: Array(repeating: UInt8(7), count: 3_000)))
    }

    @Test func reserveStoresWhatTheBodyWrites() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let environment = try LMDBEnvironment(path: dir.storePath, mapSize: 1 << 20, maxMapSize: 1 << 20)
        let db = try environment.openDatabase(nil)
        let sizes = try environment.write { txn throws(StoreError) in
            let first = try txn.reserve(db, [1], size: 5) { space in
                for i in 0..<space.count { space[i] = UInt8(10 + i) }
                return space.count
            }
            // A later write in the same transaction does not disturb what was written.
            try txn.put(db, [0], Array(repeating: 9, count: 2_000))
            let second = try txn.reserve(db, [2], size: 10_000) { space in
                space.initializeMemory(as: UInt8.self, repeating: 0x5A)
                return space.count
            }
            return [first, second]
        }
        #expect(sizes == [5, 10_000])
        try environment.read { txn throws(StoreError) in
            #expect(try txn.get(db, [1]) == [10, 11, 12, 13, 14])
            #expect(try txn.get(db, [2]) == Array(repeating: 0x5A, count: 10_000))
            #expect(try txn.get(db, [0])?.count == 2_000)
        }
    }

    /// A full map refuses the reservation before the body runs: nothing half-written, the usual error.
    @Test func reserveOnAFullMapFailsWithoutCallingTheBody() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let environment = try LMDBEnvironment(path: dir.storePath, mapSize: 64 << 10, maxMapSize: 64 << 10)
        let db = try environment.openDatabase(nil)
        var called = false
        do {
            try environment.write { txn throws(StoreError) in
                try txn.reserve(db, [1], size: 1 << 20) { _ in called = true }
            }
            Issue.record("reserved 1 MiB in a 64 KiB map")
        } catch {
            #expect(error.code == .lmdb(.mapFull))
            #expect(error.message.contains("mdb_put"))
        }
        #expect(!called)
        try environment.read { txn throws(StoreError) in #expect(try txn.get(db, [1]) == nil) }
    }
}
