// Note on priority classes (issue 14): a bridge keeps one durable queue per priority class, each FIFO.
// The default class (9, the lowest) is the queue named after the bridge, as before classes existed, so a
// store written by an older release drains unchanged, without migration. Class N ≠ 9 lives in the queue
// `BRIDGE:pN` (':' is not allowed in a connection name, so no bridge's own queue looks like one). Each class
// queue has its own sequence numbers, bounds (`queue_max_*` apply per class), counters and dead letters;
// the functions below add them up per bridge for `sluice queue stats` and `/metrics`.

/// Naming of a bridge's per-class queues.
public enum PriorityQueues {
    /// The class whose queue is the bridge's own (rules without `priority`).
    public static let defaultClass = 9
    public static let classes = 0...9

    /// The queue holding `bridge`'s messages of class `priority`.
    public static func queueName(bridge: String, priority: Int) -> String {
        priority == defaultClass ? bridge : "\(bridge):p\(priority)"
    }

    /// The bridge and class of a queue name (the default class for a plain bridge name).
    public static func parse(queue: String) -> (bridge: String, priority: Int) {
        if let colon = queue.lastIndex(of: ":"), queue[colon...].hasPrefix(":p"),
            let priority = Int(queue[queue.index(colon, offsetBy: 2)...]), classes.contains(priority),
            priority != defaultClass, queue.hasSuffix(":p\(priority)")
        {
            return (String(queue[..<colon]), priority)
        }
        return (queue, defaultClass)
    }
}

extension Store {
    /// The classes of `bridge` that have a queue in the store (ever written), highest priority first.
    /// The default class is always listed.
    public func priorityClasses(bridge: String) throws(StoreError) -> [Int] {
        var found: Set<Int> = [PriorityQueues.defaultClass]
        for name in try queueNames() {
            let parsed = PriorityQueues.parse(queue: name)
            if parsed.bridge == bridge { found.insert(parsed.priority) }
        }
        return found.sorted()
    }

    /// The bridges that have queues in the store, without their class suffixes.
    public func bridgeNames() throws(StoreError) -> [String] {
        Array(Set(try queueNames().map { PriorityQueues.parse(queue: $0).bridge })).sorted()
    }

    /// `stats` of each class queue of `bridge`, highest priority first.
    public func classStats(bridge: String) throws(StoreError) -> [(priority: Int, stats: QueueStats)] {
        var out: [(priority: Int, stats: QueueStats)] = []
        for priority in try priorityClasses(bridge: bridge) {
            out.append((priority, try stats(queue: PriorityQueues.queueName(bridge: bridge, priority: priority))))
        }
        return out
    }

    /// The bridge as a whole: depths, bytes and counters summed over its classes; the oldest message of any
    /// class; `nextSeq` of the default class (the others have their own).
    public func bridgeStats(bridge: String) throws(StoreError) -> QueueStats {
        let classes = try classStats(bridge: bridge)
        var total = try stats(queue: bridge)
        for (priority, stats) in classes where priority != PriorityQueues.defaultClass {
            total.depth += stats.depth
            total.bytes += stats.bytes
            total.quarantined += stats.quarantined
            for index in total.dropped.counts.indices {
                total.dropped.counts[index] += stats.dropped.counts[index]
                total.rejected.counts[index] += stats.rejected.counts[index]
            }
            if let oldest = stats.oldestEnqueuedAt {
                total.oldestEnqueuedAt = min(total.oldestEnqueuedAt ?? oldest, oldest)
            }
        }
        return total
    }

    /// Dead-letter counts summed over the bridge's classes.
    public func bridgeDeadLetterCounts(bridge: String) throws(StoreError) -> DeadLetterCounts {
        var total = try deadLetterCounts(queue: bridge)
        for priority in try priorityClasses(bridge: bridge) where priority != PriorityQueues.defaultClass {
            let counts = try deadLetterCounts(queue: PriorityQueues.queueName(bridge: bridge, priority: priority))
            total.current += counts.current
            for (code, count) in counts.byReason { total.byReason[code, default: 0] += count }
        }
        return total
    }

    /// Removes `seqs` from `queue` because their rule's TTL had passed when they would have been sent:
    /// counted as dropped `expired`, in the same transaction. Seqs no longer queued are skipped.
    public func dropExpired(
        queue: String,
        seqs: [UInt64],
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) {
        do { try Keys.validate(queue: queue) } catch { return completion(.failure(error)) }
        submitOperation(
            WriteOperation<Int>(weight: 16 * seqs.count, completion: completion) { context throws(StoreError) in
                let removed = try context.remove(queue, seqs)
                var meta = try context.meta(queue)
                meta.dropped[.expired] += UInt64(removed)
                context.setMeta(queue, meta)
                return removed
            }
        )
    }

    /// Waits for the commit. See `dropExpired(queue:seqs:completion:)`.
    @discardableResult
    public func dropExpired(queue: String, seqs: [UInt64]) async throws(StoreError) -> Int {
        let result: Result<Int, StoreError> = await withCheckedContinuation { continuation in
            dropExpired(queue: queue, seqs: seqs) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }
}
