import SluiceStore
import Testing

@testable import SluiceServer

private typealias Cache = CommittedRecordCache

private func records(_ seqs: ClosedRange<UInt64>, bytes: Int = 10) -> [Cache.Record] {
    seqs.map {
        let message = QueuedMessage(topic: "m\($0)", payload: [], qos: 1, retain: false, properties: [], enqueuedAt: 0)
        return Cache.Record(seq: $0, message: message, bytes: bytes)
    }
}

@Suite("Committed-record cache: what a fetch may take from memory")
struct CommittedRecordCacheTests {
    @Test func servesContiguousRecordsAfterADrainedRead() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 5)
        cache.committed(priority: 9, records(5...7))
        #expect(cache.canServe(priority: 9, after: 4))
        #expect(cache.read(priority: 9, after: 4, limit: 2)?.map(\.seq) == [5, 6])
        #expect(cache.read(priority: 9, after: 6, limit: 10)?.map(\.seq) == [7])
        // Drained: nothing more, without a store read.
        #expect(cache.read(priority: 9, after: 7, limit: 10)?.isEmpty == true)
        #expect(cache.count == 0 && cache.bytes == 0)
        #expect(cache.counters.served == 3)
    }

    @Test func vouchesForNothingBeforeADrainedRead() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.committed(priority: 9, records(1...2))
        #expect(!cache.canServe(priority: 9, after: 0))
        #expect(cache.read(priority: 9, after: 0, limit: 10) == nil)
        #expect(!cache.canServe(priority: 0, after: nil))  // a class never seen
    }

    @Test func aReadBehindTheCoverageGoesToTheStore() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 5)
        #expect(!cache.canServe(priority: 9, after: 2))  // records 3 and 4 are the store's
        #expect(cache.canServe(priority: 9, after: 4))
    }

    @Test func aGapInTheDeliveredSeqsStopsVouching() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 5)
        cache.committed(priority: 9, records(6...6))  // 5 was appended out of band
        #expect(!cache.canServe(priority: 9, after: 4))
        #expect(cache.counters.invalidations == 1)
        // Within a lane too.
        cache.storeDrained(priority: 0, next: 1)
        cache.committed(priority: 0, records(1...2))
        cache.committed(priority: 0, records(4...4))
        #expect(!cache.canServe(priority: 0, after: 0))
        #expect(cache.count == 2)  // 6 and 4, each restarting its lane
    }

    @Test func recordsTheStoreReadAlreadyAreDroppedOnDelivery() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 5)
        cache.committed(priority: 9, records(3...6))
        #expect(cache.read(priority: 9, after: 4, limit: 10)?.map(\.seq) == [5, 6])
    }

    @Test func theRecordBoundEvictsTheOldestAndTheStoreServesThem() {
        var cache = Cache(maxRecords: 3, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 1)
        cache.committed(priority: 9, records(1...5))
        #expect(cache.count == 3)
        #expect(cache.counters.evicted == 2)
        #expect(!cache.canServe(priority: 9, after: 0))  // 1 and 2 are read from the store
        #expect(cache.read(priority: 9, after: 0, limit: 10) == nil)
        #expect(cache.read(priority: 9, after: 2, limit: 10)?.map(\.seq) == [3, 4, 5])
    }

    @Test func theByteBoundHolds() {
        var cache = Cache(maxRecords: 100, maxBytes: 100)
        cache.storeDrained(priority: 9, next: 1)
        cache.committed(priority: 9, records(1...3, bytes: 40))
        #expect(cache.count == 2)
        #expect(cache.bytes == 80)
        // The lowest priority class gives way first.
        cache.storeDrained(priority: 0, next: 1)
        cache.committed(priority: 0, records(1...1, bytes: 40))
        #expect(cache.bytes == 80)
        #expect(cache.canServe(priority: 0, after: 0))
        #expect(!cache.canServe(priority: 9, after: 1))  // 2 was evicted
        #expect(cache.canServe(priority: 9, after: 2))
    }

    @Test func aDrainedReadDoesNotVouchForLostDeliveries() {
        var cache = Cache(maxRecords: 3, maxBytes: 10_000)
        cache.committed(priority: 9, records(1...5))  // 1 and 2 evicted while not vouching
        cache.storeDrained(priority: 9, next: 1)
        #expect(!cache.canServe(priority: 9, after: 0))
        cache.storeDrained(priority: 9, next: 3)
        #expect(cache.canServe(priority: 9, after: 2))
        // Delivered and then invalidated: an empty lane must not vouch below what was delivered.
        cache.invalidateAll()
        cache.storeDrained(priority: 9, next: 4)
        #expect(!cache.canServe(priority: 9, after: 3))
        cache.storeDrained(priority: 9, next: 6)
        #expect(cache.canServe(priority: 9, after: 5))
    }

    @Test func invalidateAllEmptiesEveryLaneAndChangesTheGeneration() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 1)
        cache.storeDrained(priority: 0, next: 1)
        cache.committed(priority: 9, records(1...2))
        cache.committed(priority: 0, records(1...2))
        let generation = cache.generation
        cache.invalidateAll()
        #expect(cache.generation != generation)  // a store read asked before this is stale
        #expect(cache.count == 0 && cache.bytes == 0)
        #expect(!cache.canServe(priority: 9, after: 0))
        #expect(!cache.canServe(priority: 0, after: 0))
        #expect(cache.read(priority: 9, after: 0, limit: 10) == nil)
    }

    @Test func fromTheHeadOfAnEmptyClass() {
        var cache = Cache(maxRecords: 100, maxBytes: 10_000)
        cache.storeDrained(priority: 9, next: 0)
        cache.committed(priority: 9, records(0...1))
        #expect(cache.read(priority: 9, after: nil, limit: 10)?.map(\.seq) == [0, 1])
    }
}
