import Foundation
import Testing

@testable import SluiceStore

@Suite struct StorageSpaceTests {
    @Test func freeSpaceGuardThresholds() {
        #expect(FreeSpaceGuard.none.threshold(total: 8 << 30) == nil)
        #expect(FreeSpaceGuard(bytes: 0).threshold(total: 8 << 30) == nil)
        #expect(FreeSpaceGuard(percent: 5).threshold(total: 1000) == 50)
        // The default: 64 MiB, but at most 5% of the filesystem.
        let standard = FreeSpaceGuard(bytes: 64 << 20, percent: 5)
        #expect(standard.threshold(total: 8 << 30) == 64 << 20)
        #expect(standard.threshold(total: 16 << 20) == (16 << 20) / 20)
    }

    @Test func outOfSpaceVersusAFailingDevice() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let eio = StoreError(code: .lmdb(LMDBResultCode(rawValue: 5)), message: "mdb_txn_commit: I/O error")
        let enospc = StoreError(code: .lmdb(.noSpace), message: "mdb_txn_commit: no space")
        let edquot = StoreError(code: .lmdb(LMDBResultCode(rawValue: 122)), message: "quota")
        let mapFull = StoreError(code: .lmdb(.mapFull), message: "map full")
        let panic = StoreError(code: .lmdb(.panic), message: "panic")
        let directory = dir.url.path
        #expect(StorageSpace.isOutOfSpace(enospc, directory: directory))
        #expect(StorageSpace.isOutOfSpace(edquot, directory: directory))
        #expect(StorageSpace.isOutOfSpace(mapFull, directory: directory))
        #expect(!StorageSpace.isOutOfSpace(panic, directory: directory))
        // An EIO where there is room is the device failing; on a full filesystem, a short write.
        let space = try #require(FilesystemSpace.of(directory))
        #expect(StorageSpace.isOutOfSpace(eio, directory: directory) == (space.available < StorageSpace.nearlyFull))
    }

    @Test func belowTheGuardDropOldestMakesRoomAndReportsFull() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        // A guard no filesystem can satisfy: the store works as if it were out of space.
        let events = HealthEvents()
        let store = try Store(path: dir.storePath, freeSpaceGuard: FreeSpaceGuard(bytes: 1 << 62), onEvent: events.add)
        defer { store.close() }
        for i in 1...50 {
            let results = try await store.append(
                queue: "q",
                messages: [message(i, payloadSize: 500)],
                limits: QueueLimits(policy: .dropOldest)
            )
            #expect(results.count == 1 && results[0].seq != nil)
        }
        let stats = try store.stats(queue: "q")
        #expect(stats.dropped[.storeFull] == 49)
        #expect(stats.depth == 1)
        guard case .full(let why) = store.writeHealth else {
            Issue.record("expected full, got \(store.writeHealth)")
            return
        }
        #expect(why.contains("store_min_free"))
        #expect(events.health.count == 1)  // said once, not per append
    }

    @Test func belowTheGuardRejectNewRefusesAndTablePutsWait() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, freeSpaceGuard: FreeSpaceGuard(bytes: 1 << 62))
        defer { store.close() }
        let results = try await store.append(
            queue: "q",
            messages: [message(1)],
            limits: QueueLimits(policy: .rejectNew)
        )
        #expect(results == [.rejected(.storeFull)])
        #expect(try store.stats(queue: "q").rejected[.storeFull] == 1)
        await #expect(throws: StoreError.self) { try await store.put(table: "retained", key: [1], value: [2]) }
        #expect(!store.writeHealth.isWritable)
    }

    @Test func storeMaxSizeBelowTheFirstMapIsHonoured() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.storePath, maxMapSize: 4 << 20)
        defer { store.close() }
        #expect(store.mapSize == 4 << 20)
    }
}

private final class HealthEvents: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [StoreEvent] = []

    func add(_ event: StoreEvent) { lock.withLock { events.append(event) } }

    var health: [StoreWriteHealth] {
        lock.withLock {
            events.compactMap {
                if case .health(let health) = $0 { return health }
                return nil
            }
        }
    }
}
