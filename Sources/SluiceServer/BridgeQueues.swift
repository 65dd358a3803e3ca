import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceBridge
import SluiceConfig
import SluiceStore

/// What a bridge's `out` rule adds to queueing: its priority class and TTL (`topic … priority N ttl D`).
struct RuleClass: Sendable, Hashable {
    var priority: Int
    /// Seconds; nil = none.
    var ttl: UInt32?

    static func all(from config: BridgeConfig) -> [RuleClass] {
        config.topics.map { topic in
            RuleClass(
                priority: topic.effectivePriority,
                ttl: topic.ttl.map { UInt32(clamping: $0.components.seconds) }
            )
        }
    }
}

/// A bridge's per-class durable queues (see PriorityQueues.swift and PriorityFeed.swift): where a message
/// is appended (the broker's routing table names the queue, see DurableRouting.swift), what the link is fed,
/// and how link seqs go back to the store.
///
/// Live records come from memory (issue 17): the appends' completions hand the records they committed to
/// `committed` (CommittedRecordCache.swift), and a fetch that needs exactly those next is answered on the
/// loop at once, with no store read and no thread hop. Everything else — a backlog, a replay on a new
/// connection, anything after the store changed outside the normal path — reads the store, never on the
/// bridge's loop: on `reader`, a one-thread pool that runs each fetch (LMDB read transactions, decoding) in
/// the order asked and completes it on the loop, so the link gets its answers in order, exactly once each (a
/// late answer to a fetch asked on a closed connection is dropped by the link itself). The feed is the
/// loop's while no store read is out, and `reader`'s from the first one submitted until the last completes;
/// changes to it follow it. `classes` and `locations` are the loop's copies of what removal needs; everything
/// else marked "on the loop" runs there.
final class BridgeQueues: @unchecked Sendable {
    let bridge: String
    private let store: Store
    private let loop: any EventLoop
    private let logger: Logger
    /// One thread, so fetches and the feed's other changes run one at a time, in submission order.
    private let reader = NIOThreadPool(numberOfThreads: 1)
    /// The feed: on the loop while `feedTasks` is 0, else on `reader`.
    private let feed: FeedBox
    /// On the loop: tasks using the feed submitted to `reader` and not completed yet.
    private var feedTasks = 0
    /// On the loop: the records committed lately, for fetches of live traffic.
    private var cache: CommittedRecordCache
    /// Commits (and failures) the writer thread reported, for the loop to take into `cache` in order.
    private let delivered = NIOLockedValueBox<[Delivery]>([])
    /// Store events that may drop records the cache holds, and the count last seen (on the loop).
    private let storeChanges: StoreChangeSignal
    private var storeChangesSeen: UInt64
    /// On the loop: the classes read, highest priority first (the feed's, as last told).
    private var classes: [Int]
    /// On the loop: where each link seq handed out lives, for removal and dead-lettering.
    private var locations: [UInt64: PriorityLocation] = [:]
    /// TTL drops not yet logged: one line per `reportInterval`, not one per message.
    private var expiredUnreported = 0
    private var lastReport = ContinuousClock.now - BridgeQueues.reportInterval  // the first drops are told at once
    private static let reportInterval: Duration = .seconds(10)

    private final class FeedBox: @unchecked Sendable {
        var feed: PriorityFeed
        init(_ feed: PriorityFeed) { self.feed = feed }
    }

    private enum Delivery: Sendable {
        case committed(priority: Int, [CommittedRecordCache.Record])
        /// An append failed: what it may have rolled back is unknown.
        case failed
    }

    init(
        config: BridgeConfig,
        store: Store,
        loop: any EventLoop,
        logger: Logger,
        storeChanges: StoreChangeSignal
    ) {
        self.bridge = config.name
        self.store = store
        self.loop = loop
        self.logger = logger
        self.storeChanges = storeChanges
        self.storeChangesSeen = storeChanges.value
        // A few windows' worth, at most 1 MiB: live traffic between two fetches, not a buffer.
        self.cache = CommittedRecordCache(maxRecords: max(1024, 4 * config.maxInflight), maxBytes: 1 << 20)
        let rules = RuleClass.all(from: config)
        // Classes left in the store by an earlier rule set drain too.
        let stored = (try? store.priorityClasses(bridge: config.name)) ?? [PriorityQueues.defaultClass]
        let feed = PriorityFeed(classes: rules.map(\.priority) + stored + [PriorityQueues.defaultClass])
        self.classes = feed.classes
        self.feed = FeedBox(feed)
        reader.start()
    }

    /// Any thread: SIGHUP's rule set (its new classes drain too).
    func updateRules(_ rules: [RuleClass]) {
        let more = rules.map(\.priority)
        loop.execute {
            self.classes = PriorityFeed.readingOrder(self.classes, more)
            self.cache.invalidateAll()
            self.withFeed { $0.addClasses(more) }
        }
    }

    /// Finishes the fetch under way (the store must not close under a read transaction) and stops `reader`;
    /// later fetches are never answered.
    func shutdown() -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        reader.shutdownGracefully { _ in promise.succeed() }
        return promise.futureResult
    }

    /// Every class queue the bridge reads, highest priority first. On the loop.
    var queueNames: [String] { classes.map { PriorityQueues.queueName(bridge: bridge, priority: $0) } }

    // MARK: Committed records (any thread)

    /// An append to `queue` committed: its stored records go to the cache. Before the `queueHasMore` hop.
    func committed(queue: String, messages: [QueuedMessage], results: [AppendResult]) {
        let priority = PriorityQueues.parse(queue: queue).priority
        var records: [CommittedRecordCache.Record] = []
        records.reserveCapacity(messages.count)
        for (var message, result) in zip(messages, results) {
            guard let seq = result.seq else { continue }
            // Cached as read, a payload would keep its whole read buffer alive beyond what the byte bound
            // counts (the store's append needed no copy).
            message.payload = message.payload.compacted()
            let bytes = 64 + message.payload.readableBytes + message.topic.utf8.count + message.properties.count
            records.append(.init(seq: seq, message: message, bytes: bytes))
        }
        guard !records.isEmpty else { return }
        delivered.withLockedValue { $0.append(.committed(priority: priority, records)) }
    }

    /// An append failed (a store fault may have rolled back more than it): the cache starts over.
    func appendFailed() {
        delivered.withLockedValue { $0.append(.failed) }
    }

    // MARK: On the loop

    /// Takes the commits reported so far into the cache, in order; any store change that may have dropped
    /// records (or `invalidate`) empties it. Before every fetch and on every `queueHasMore`.
    func takeCommitted(invalidate: Bool = false) {
        let deliveries = delivered.withLockedValue { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        for delivery in deliveries {
            switch delivery {
            case .committed(let priority, let records): cache.committed(priority: priority, records)
            case .failed: cache.invalidateAll()
            }
        }
        let changes = storeChanges.value
        if invalidate || changes != storeChangesSeen {
            storeChangesSeen = changes
            cache.invalidateAll()
        }
    }

    /// The cache's size and counters, for the bridge's status and metrics.
    var cacheStatus: (records: Int, bytes: Int, counters: CommittedRecordCache.Counters) {
        (cache.count, cache.bytes, cache.counters)
    }

    /// The link's `.fetch(after:limit:)`. Answered at once from memory when the cache holds what comes next
    /// (returned; `answer` is not called); else read on `reader` and `answer` runs on the loop, in the order
    /// fetches were asked (nil returned). `skip`: link seqs whose removal has not committed (their removal is
    /// submitted, and the feed forgets them, before they leave the caller's sets, so a snapshot is enough).
    func fetch(
        after: UInt64?,
        limit: Int,
        skip: Set<UInt64>,
        answer: @escaping @Sendable ([QueuedItem]) -> Void
    ) -> [QueuedItem]? {
        // A new connection replays what was in flight from the store; so does a refusal's replay. The cache
        // starts over then (it holds unread records only, but a resend is where doubt is cheap).
        let feedHere = feedTasks == 0
        let replays = feedHere && feed.feed.replays(after: after, skip: { skip.contains($0) })
        takeCommitted(invalidate: after == nil || replays)
        if feedHere, !replays, let items = fetchFromMemory(after: after, limit: limit, skip: skip) { return items }
        let generation = cache.generation
        feedTasks += 1
        reader.runIfActive(eventLoop: loop) { self.read(after: after, limit: limit, skip: skip) }
            .whenComplete { result in
                self.feedTasks -= 1
                switch result {
                case .success(let read):
                    for (seq, location) in read.locations { self.locations[seq] = location }
                    for seq in read.released { self.locations[seq] = nil }
                    self.takeCommitted()
                    if self.cache.generation == generation {  // else the store changed since the read
                        for (priority, next) in read.drained { self.cache.storeDrained(priority: priority, next: next) }
                    }
                    answer(read.items)
                case .failure:
                    answer([])  // `reader` was shut down: the runner is stopping
                }
            }
        return nil
    }

    /// Runs `change` on the feed where it is: here, or on `reader` after the fetches submitted before it.
    private func withFeed(_ change: @escaping @Sendable (inout PriorityFeed) -> Void) {
        let feed = self.feed
        guard feedTasks > 0 else { return change(&feed.feed) }
        feedTasks += 1
        reader.runIfActive(eventLoop: loop) { change(&feed.feed) }.whenComplete { _ in self.feedTasks -= 1 }
    }

    /// The fetch from the cache, if every class can be served from it; nil otherwise (nothing changed).
    private func fetchFromMemory(after: UInt64?, limit: Int, skip: Set<UInt64>) -> [QueuedItem]? {
        for priority in feed.feed.classes
        where !cache.canServe(priority: priority, after: feed.feed.frontier(of: priority)) {
            return nil
        }
        let now = Store.wallClockMilliseconds()
        let (items, expired) = feed.feed.fetch(
            after: after,
            limit: limit,
            skip: { skip.contains($0) },
            reread: { _ in nil },  // never called: no replay (checked by the caller)
            read: { priority, after, limit in
                (self.cache.read(priority: priority, after: after, limit: limit) ?? []).map {
                    ($0.seq, Self.publish($0.message, now: now))
                }
            },
            isExpired: Self.isExpired
        )
        if !expired.isEmpty { dropExpired(expired) }
        for (seq, _) in items { locations[seq] = feed.feed.location(of: seq) }
        for seq in feed.feed.takeReleased() { locations[seq] = nil }
        return items.map { QueuedItem(seq: $0, message: $1) }
    }

    /// Another store read for the runner (control record, depth), on `reader` after the fetches asked before
    /// it; `then` runs on the loop (with an error if `reader` was shut down).
    func readOffLoop<T: Sendable>(
        _ body: @escaping @Sendable () throws -> T,
        then: @escaping @Sendable (Result<T, any Error>) -> Void
    ) {
        reader.runIfActive(eventLoop: loop, body).whenComplete(then)
    }

    private struct Read: Sendable {
        var items: [QueuedItem]
        var locations: [(UInt64, PriorityLocation)]
        /// Link seqs the feed let go of in this fetch (gone from the store, or expired).
        var released: [UInt64]
        /// Classes read to their end: the first seq the read did not find, per class.
        var drained: [(Int, UInt64)] = []
    }

    /// On `reader`: the feed's fetch with its store reads.
    private func read(after: UInt64?, limit: Int, skip: Set<UInt64>) -> Read {
        let now = Store.wallClockMilliseconds()
        let store = self.store
        let bridge = self.bridge
        var drained: [Int: UInt64] = [:]
        var emptyFromHead: [(Int, UInt64)] = []
        do {
            let (items, expired) = try feed.feed.fetch(
                after: after,
                limit: limit,
                skip: { skip.contains($0) },
                reread: { location throws(StoreError) -> PublishPacket? in
                    let name = PriorityQueues.queueName(bridge: bridge, priority: location.priority)
                    let found = try store.read(queue: name, after: location.seq == 0 ? nil : location.seq - 1, limit: 1)
                    return found.first.flatMap { $0.seq == location.seq ? Self.publish($0.message, now: now) : nil }
                },
                read: { priority, after, limit throws(StoreError) in
                    let name = PriorityQueues.queueName(bridge: bridge, priority: priority)
                    // From the head, the seq the next append gets is only known from the queue's record, read
                    // first: a commit between the two reads is found by the second.
                    let nextAppend = after == nil ? try store.stats(queue: name).nextSeq : nil
                    let found = try store.read(queue: name, after: after, limit: limit)
                    if found.count < limit,
                        let next = found.last.map({ $0.seq + 1 }) ?? after.map({ $0 + 1 }) ?? nextAppend
                    {
                        drained[priority] = next
                        if found.isEmpty, after == nil { emptyFromHead.append((priority, next)) }
                    }
                    return found.map { ($0.seq, Self.publish($0.message, now: now)) }
                },
                isExpired: Self.isExpired
            )
            for (priority, next) in emptyFromHead { feed.feed.noteEmpty(priority: priority, next: next) }
            if !expired.isEmpty { dropExpired(expired) }
            let queued = items.map { QueuedItem(seq: $0, message: $1) }
            let locations = items.compactMap { seq, _ in feed.feed.location(of: seq).map { (seq, $0) } }
            return Read(
                items: queued,
                locations: locations,
                released: feed.feed.takeReleased(),
                drained: drained.map { ($0, $1) }
            )
        } catch {
            logger.error("reading the queue failed: \(error)")
            return Read(items: [], locations: [], released: feed.feed.takeReleased())
        }
    }

    /// A stored message as the link sends it, its stored properties decoded once for both the TTL check and the
    /// PUBLISH. The TTL rides in the stored Message Expiry Interval, set at queueing from the rule (the
    /// publisher's own is not kept); the PUBLISH carries what is left of it [MQTT-3.3.2-6], 0 once it is up.
    static func publish(_ message: QueuedMessage, now: UInt64) -> PublishPacket {
        var properties = Properties.none
        // Empty for a message without properties and without a rule TTL: nothing to parse.
        if !message.properties.isEmpty, let stored = try? Properties(storageBytes: message.properties) {
            properties = stored
            if let interval = stored.messageExpiryInterval {
                let age = now > message.enqueuedAt ? (now - message.enqueuedAt) / 1000 : 0
                properties.messageExpiryInterval = age >= UInt64(interval) ? 0 : interval - UInt32(age)
            }
        }
        return PublishPacket(
            topic: message.topic,
            payload: message.payload,
            qos: QoS(rawValue: message.qos) ?? .atLeastOnce,
            retain: message.retain,
            properties: properties
        )
    }

    /// Whether `publish`'s message is past its rule's TTL: none of it left.
    static func isExpired(_ message: PublishPacket) -> Bool {
        // The empty check first: a bare message (most of them) skips the key-path read.
        !message.properties.isEmpty && message.properties.messageExpiryInterval == 0
    }

    /// Removes acknowledged link seqs from their class queues (one store operation per class); the
    /// completion runs once, after all have committed, with the total removed.
    func remove(_ seqs: [UInt64], lazily: Bool, completion: @escaping @Sendable (Result<Int, StoreError>) -> Void) {
        perClass(seqs, completion: completion) { queue, storeSeqs, done in
            store.remove(queue: queue, seqs: storeSeqs, lazily: lazily, completion: done)
        }
    }

    /// Moves link seqs to their class queues' dead letters.
    func deadLetter(_ seqs: [UInt64], code: UInt8, completion: @escaping @Sendable (Result<Int, StoreError>) -> Void) {
        perClass(seqs, completion: completion) { queue, storeSeqs, done in
            store.deadLetter(queue: queue, seqs: storeSeqs, code: code, completion: done)
        }
    }

    private func perClass(
        _ seqs: [UInt64],
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void,
        _ operation: (String, [UInt64], @escaping @Sendable (Result<Int, StoreError>) -> Void) -> Void
    ) {
        var byClass: [Int: [UInt64]] = [:]
        for seq in seqs {
            guard let location = locations[seq] else { continue }  // already gone
            byClass[location.priority, default: []].append(location.seq)
        }
        guard !byClass.isEmpty else { return completion(.success(0)) }
        let outstanding = NIOLockedValueBox((left: byClass.count, total: 0, error: StoreError?.none))
        for (priority, storeSeqs) in byClass {
            operation(PriorityQueues.queueName(bridge: bridge, priority: priority), storeSeqs) { result in
                let finished = outstanding.withLockedValue { state -> Result<Int, StoreError>? in
                    switch result {
                    case .success(let count): state.total += count
                    case .failure(let error): state.error = error
                    }
                    state.left -= 1
                    guard state.left == 0 else { return nil }
                    return state.error.map { .failure($0) } ?? .success(state.total)
                }
                guard let finished else { return }
                // Forgotten before the runner's own completion hop: a fetch asked after it runs after this.
                self.loop.execute {
                    self.withFeed { $0.forget(seqs) }
                    for seq in seqs { self.locations[seq] = nil }
                }
                completion(finished)
            }
        }
    }

    private func dropExpired(_ locations: [PriorityLocation]) {
        var byClass: [Int: [UInt64]] = [:]
        for location in locations { byClass[location.priority, default: []].append(location.seq) }
        for (priority, seqs) in byClass {
            store.dropExpired(queue: PriorityQueues.queueName(bridge: bridge, priority: priority), seqs: seqs) {
                [logger] result in
                switch result {
                case .success(let count): self.loop.execute { self.expiredUnreported += count }
                case .failure(let error): logger.error("dropping \(seqs.count) expired messages failed: \(error)")
                }
            }
        }
    }

    /// On the tick: one log line for the TTL drops of the last interval.
    func reportExpired() {
        guard expiredUnreported > 0, ContinuousClock.now - lastReport >= Self.reportInterval else { return }
        logger.warning("dropped \(expiredUnreported) messages older than their rule's ttl (counted as expired)")
        expiredUnreported = 0
        lastReport = .now
    }

    /// `queue_max_age` on every class queue.
    func expire(maxAge: UInt64) {
        for queue in queueNames {
            store.expire(queue: queue, maxAge: maxAge) { [logger] result in
                if case .failure(let error) = result { logger.error("expiring old messages failed: \(error)") }
            }
        }
    }
}
