import CLMDB
import Foundation
import Testing

@testable import SluiceStore

@Suite struct QueueTests {
    @Test func appendReadRemoveKeepsFIFOOrder() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        let messages = (1...5).map { message($0) }
        let results = try await store.append(queue: "cloud", messages: messages, limits: .unlimited)
        #expect(results == (1...5).map { .stored(seq: UInt64($0)) })

        let all = try store.read(queue: "cloud", after: nil, limit: 100)
        #expect(all.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(all.map(\.message) == messages)

        let page = try store.read(queue: "cloud", after: 2, limit: 2)
        #expect(page.map(\.seq) == [3, 4])

        #expect(try await store.remove(queue: "cloud", seqs: [1, 3, 99]) == 2)
        #expect(try store.read(queue: "cloud", after: nil, limit: 100).map(\.seq) == [2, 4, 5])
        // Removing again is harmless (at-least-once: a PUBACK may be processed twice).
        #expect(try await store.remove(queue: "cloud", seqs: [1, 3]) == 0)

        let stats = try store.stats(queue: "cloud")
        #expect(stats.depth == 3)
        #expect(stats.bytes == UInt64([2, 4, 5].map { RecordCodec.encode(message($0)).count }.reduce(0, +)))
        #expect(stats.nextSeq == 6)

        // Queues are independent, including names that are prefixes of each other.
        _ = try await store.append(queue: "cloud2", messages: [message(9)], limits: .unlimited)
        _ = try await store.append(queue: "c", messages: [message(8)], limits: .unlimited)
        #expect(try store.read(queue: "cloud", after: nil, limit: 100).map(\.seq) == [2, 4, 5])
        #expect(try store.read(queue: "cloud2", after: nil, limit: 100).map(\.message) == [message(9)])
        #expect(try store.queueNames() == ["c", "cloud", "cloud2"])

        #expect(try await store.purge(queue: "cloud") == 3)
        #expect(try store.read(queue: "cloud", after: nil, limit: 100).isEmpty)
        #expect(try store.stats(queue: "cloud").depth == 0)
        #expect(try store.read(queue: "cloud2", after: nil, limit: 100).count == 1)
        store.close()
    }

    @Test func sequenceAndDataSurviveReopen() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        do {
            let store = try Store(path: dir.storePath)
            _ = try await store.append(queue: "q", messages: (1...3).map { message($0) }, limits: .unlimited)
            try await store.remove(queue: "q", seqs: [1, 2, 3])
            _ = try await store.append(queue: "q", messages: [message(4)], limits: .unlimited)
            try await store.put(table: "retained", key: Array("a/b".utf8), value: [1, 2, 3])
            store.close()
        }
        let reopened = try Store(path: dir.storePath)
        defer { reopened.close() }
        let kept = try reopened.read(queue: "q", after: nil, limit: 10)
        #expect(kept.map(\.seq) == [4])
        #expect(kept.first?.message == message(4))
        let next = try await reopened.append(queue: "q", messages: [message(5)], limits: .unlimited)
        #expect(next == [.stored(seq: 5)])
        #expect(try reopened.get(table: "retained", key: Array("a/b".utf8)) == [1, 2, 3])
        #expect(try reopened.stats(queue: "q").depth == 2)
    }

    @Test func sequenceNeverGoesBackEvenWhenQueueIsEmptied() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        do {
            let store = try Store(path: dir.storePath)
            _ = try await store.append(queue: "q", messages: (1...3).map { message($0) }, limits: .unlimited)
            #expect(try await store.purge(queue: "q") == 3)
            store.close()
        }
        let reopened = try Store(path: dir.storePath)
        defer { reopened.close() }
        #expect(try await reopened.append(queue: "q", messages: [message(1)], limits: .unlimited) == [.stored(seq: 4)])
    }

    /// A completion means "committed": another process (mdb_dump from lmdb-utils) sees the record while the
    /// store is still open, with nothing flushed on close.
    @Test func completionMeansCommittedVisibleToAnotherProcess() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: (1...3).map { message($0) }, limits: .unlimited)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mdb_dump") else { return }
        let dump = try runTool("/usr/bin/mdb_dump", ["-n", dir.storePath])  // the main database holds the queues
        #expect(dump.status == 0)
        // Key = [len 0x01]["q" 0x71][seq big-endian]: the three records are on disk.
        for seq in 1...3 {
            #expect(dump.output.contains(" 0171000000000000000\(seq)\n"))
        }
        // Three records, the queue's metadata after them, and the named databases `meta`, `tables` and
        // `quarantine`.
        #expect(dump.output.contains(" 0171ffffffffffffffffff\n"))
        let stat = try runTool("/usr/bin/mdb_stat", ["-n", dir.storePath])
        #expect(stat.status == 0)
        #expect(stat.output.contains("Entries: 7"))
    }

    @Test func twoStoresOnOneFileSeeEachOthersWrites() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let gateway = try Store(path: dir.storePath)
        defer { gateway.close() }
        let cli = try Store(path: dir.storePath)  // `sluice queue stats` while the gateway runs
        _ = try await gateway.append(
            queue: "bridge",
            messages: (1...4).map { message($0, enqueuedAt: UInt64(100 + $0)) },
            limits: QueueLimits(maxMessages: 3)
        )
        let stats = try cli.stats(queue: "bridge")
        #expect(stats.depth == 3)
        #expect(stats.dropped[.maxMessages] == 1)
        #expect(stats.oldestEnqueuedAt == 102)
        #expect(try cli.queueNames() == ["bridge"])
        // The second instance writes too (the CLI's purge), and the first sees it.
        #expect(try await cli.purge(queue: "bridge") == 3)
        cli.close()
        #expect(try gateway.stats(queue: "bridge").depth == 0)
        #expect(
            try await gateway.append(queue: "bridge", messages: [message(5)], limits: .unlimited) == [
                .stored(seq: 5)
            ]
        )
    }

    @Test func writesAfterCloseFailWithClosed() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        store.close()
        await #expect(throws: StoreError.self) {
            _ = try await store.append(queue: "q", messages: [message(1)], limits: .unlimited)
        }
        do {
            _ = try await store.append(queue: "q", messages: [message(1)], limits: .unlimited)
        } catch {
            #expect(error.code == .closed)
        }
    }

    @Test func invalidArgumentsAreRejectedBeforeTheWriter() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath)
        defer { store.close() }
        var bad = message(1)
        bad.qos = 3
        for (queue, messages) in [("", [message(1)]), (String(repeating: "x", count: 256), [message(1)]), ("q", [bad])]
        {
            do {
                _ = try await store.append(queue: queue, messages: messages, limits: .unlimited)
                Issue.record("expected invalidArgument")
            } catch {
                #expect(error.code == .invalidArgument)
            }
        }
    }
}

@Suite struct SecondProcessTests {
    /// Another process (mdb_load from lmdb-utils) writes more than this process's map holds; the store
    /// adopts the grown map (MDB_MAP_RESIZED) and keeps reading and writing.
    @Test func adoptsAMapGrownByAnotherProcess() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mdb_load") else { return }
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, initialMapSize: 64 << 10, maxMapSize: 128 << 10)
        defer { store.close() }
        _ = try await store.append(queue: "q", messages: [message(1)], limits: .unlimited)
        let before = store.mapSize

        // A dump of 600 entries of 1 KB for table "bulk" (keys carry the store's table prefix), loaded
        // by another process with a 4 MiB map.
        let prefix = [UInt8(4)] + Array("bulk".utf8)
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        var dump = "VERSION=3\nformat=bytevalue\ntype=btree\nmapsize=4194304\nHEADER=END\n"
        for i in 0..<600 {
            dump += " \(hex(prefix + Array(String(format: "k%04d", i).utf8)))\n"
            dump += " \(hex(Array(repeating: UInt8(i & 0xFF), count: 1_000)))\n"
        }
        dump += "DATA=END\n"
        let dumpPath = dir.url.appendingPathComponent("bulk.dump").path
        try dump.write(toFile: dumpPath, atomically: true, encoding: .utf8)
        let load = try runTool("/usr/bin/mdb_load", ["-n", "-s", "tables", "-f", dumpPath, dir.storePath])
        #expect(load.status == 0, "\(load.output)")

        let rows = try store.scan(table: "bulk")
        #expect(rows.count == 600)
        #expect(rows.last?.value == Array(repeating: UInt8(599 & 0xFF), count: 1_000))
        #expect(store.mapSize > before)
        #expect(try await store.append(queue: "q", messages: [message(2)], limits: .unlimited) == [.stored(seq: 2)])
        let stats = try store.stats(queue: "q")
        let seqs = try store.read(queue: "q", after: nil, limit: 10).map(\.seq)
        #expect(stats.depth == 2, "\(stats) \(seqs)")
    }
}
