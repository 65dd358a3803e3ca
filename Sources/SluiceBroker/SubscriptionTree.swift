import MQTTCore

/// One client's subscription to one filter.
public struct Subscription: Sendable, Hashable {
    public var options: SubscriptionOptions
    /// `identifier` with 0 for none, as the protocol (which refuses 0 [MQTT-3.8.2.1.2]) and the
    /// session records have it: 8 bytes where an optional takes 12, so a one-entry `SubscriptionMap`
    /// (two per subscription) is one 56-byte allocation instead of 64 (malloc's 64- and 80-byte chunks).
    private var identifierOrZero: UInt32

    public init(options: SubscriptionOptions, identifier: UInt32? = nil) {
        self.options = options
        self.identifierOrZero = identifier ?? 0
    }

    /// MQTT 5 subscription identifier (3.8.2.1.2), delivered back with matching messages.
    public var identifier: UInt32? {
        get { identifierOrZero == 0 ? nil : identifierOrZero }
        set { identifierOrZero = newValue ?? 0 }
    }
}

/// Subscribers of one `$share/GROUP/FILTER`: each message goes to one member, in turn.
struct SharedGroup: Sendable {
    var members: SubscriptionMap = [:]
    var order: [String] = []
    var next = 0

    mutating func add(_ clientID: String, _ subscription: Subscription) {
        if members.updateValue(subscription, forKey: clientID) == nil { order.append(clientID) }
    }

    mutating func remove(_ clientID: String) {
        guard members.removeValue(forKey: clientID) != nil else { return }
        order.removeAll { $0 == clientID }
    }
}

/// A trie over topic levels. Nodes live in an array so the whole tree is a value and
/// mutations are in place (no reference types inside the broker state).
///
/// A node left with no subscriber and no child is unlinked from its parent, upwards, as soon as its
/// last subscription goes; its slot is reused by the next new node. Without that, every distinct
/// filter ever subscribed kept its nodes (and their filter strings) for the life of the broker.
///
/// Note on `$` topics: a wildcard in the first level never matches a topic whose first level
/// starts with `$` [MQTT-4.7.2-1], so matching skips the `+` and `#` children of the root then.
struct SubscriptionTree: Sendable {
    struct Node: Sendable {
        /// Children by literal level: a few, nearly always, found by comparing bytes rather than by hashing
        /// the level (`SmallMap`). The `+` and `#` children are kept apart, as matching asks for both at
        /// every level of every published topic.
        private(set) var literalChildren: SmallMap<TopicLevel, Int> = [:]
        /// By client id; nearly always one entry, so not a `Dictionary` (SmallMap.swift).
        var subscribers: SubscriptionMap = [:]
        var shared: [String: SharedGroup] = [:]
        /// Bridges' `out` rules subscribed here (DurableRoutes.swift): not clients, so never counted,
        /// shared, checked against the ACL or subject to no-local.
        var durable: [DurableSubscriber] = []
        /// The level keying this node in its parent (none for the root).
        var level: TopicLevel? = nil
        /// The `+` and `#` children's slots and the parent's, 0 for none: slot 0 is the root, nobody's
        /// child. 32 bits each, packed last: three `Int?`/`Int` fields made the node 104 bytes, it is 72 (with
        /// the 24-byte `TopicLevel`; two nodes per subscription of `a/b/+`, issue 17). A tree of 2^32 nodes
        /// would not fit in memory.
        private var plusSlot: UInt32 = 0
        private var hashSlot: UInt32 = 0
        private let parentSlot: UInt32

        init(parent: Int = 0, level: TopicLevel? = nil) {
            self.parentSlot = UInt32(parent)
            self.level = level
        }

        /// Where this node hangs: the parent's slot (0 for the root).
        var parent: Int { Int(parentSlot) }
        var plusChild: Int? { plusSlot == 0 ? nil : Int(plusSlot) }
        var hashChild: Int? { hashSlot == 0 ? nil : Int(hashSlot) }

        var isUnused: Bool {
            literalChildren.isEmpty && plusChild == nil && hashChild == nil && subscribers.isEmpty && shared.isEmpty
                && durable.isEmpty
        }

        func child(_ level: TopicLevel) -> Int? {
            if level == .plus { return plusChild }
            if level == .hash { return hashChild }
            return literalChildren[level]
        }

        mutating func setChild(_ level: TopicLevel, _ index: Int?) {
            if level == .plus {
                plusSlot = UInt32(index ?? 0)
            } else if level == .hash {
                hashSlot = UInt32(index ?? 0)
            } else {
                literalChildren[level] = index
            }
        }
    }

    private(set) var nodes: [Node] = [Node()]
    /// Slots of `nodes` freed by `prune`, reused before the array grows.
    private var freeSlots: [Int] = []
    /// Nodes in use, the root included.
    var nodeCount: Int { nodes.count - freeSlots.count }
    private(set) var count = 0
    /// Of `count`, the `$share/GROUP/FILTER` subscriptions (`$SYS/broker/shared_subscriptions/count`).
    private(set) var sharedCount = 0

    /// Nodes holding internal durable subscribers, so that a reload can take them all out.
    private var durableNodes: Set<Int> = []

    /// A match: ordinary subscribers, per shared group the group's state, and the bridges' `out` rules.
    struct Match {
        var subscribers: [(clientID: String, subscription: Subscription)] = []
        var sharedGroups: [(node: Int, group: String)] = []
        var durable: [DurableSubscriber] = []

        /// Empty, keeping its room for the next match unless a large fan-out made it large.
        mutating func clear() {
            if subscribers.capacity > 256 { subscribers = [] } else { subscribers.emptyKeepingCapacity() }
            if !sharedGroups.isEmpty { sharedGroups = [] }
            durable.emptyKeepingCapacity()
        }
    }

    private mutating func node(for filter: String) -> Int {
        var index = 0
        for level in Self.levels(of: filter) {
            if let child = nodes[index].child(level) {
                index = child
            } else {
                let node = Node(parent: index, level: level)
                let child: Int
                if let free = freeSlots.popLast() {
                    nodes[free] = node
                    child = free
                } else {
                    nodes.append(node)
                    child = nodes.count - 1
                }
                nodes[index].setChild(level, child)
                index = child
            }
        }
        return index
    }

    private func existingNode(for filter: String) -> Int? {
        var index = 0
        for level in Self.levels(of: filter) {
            guard let child = nodes[index].child(level) else { return nil }
            index = child
        }
        return index
    }

    /// Adds or replaces; returns true when the subscription already existed [MQTT-3.8.4-3].
    @discardableResult
    mutating func insert(filter: String, clientID: String, subscription: Subscription) -> Bool {
        if let shared = Topic.sharedSubscription(filter) {
            let index = node(for: String(shared.filter))
            let group = String(shared.group)
            let existed = nodes[index].shared[group]?.members[clientID] != nil
            nodes[index].shared[group, default: SharedGroup()].add(clientID, subscription)
            if !existed {
                count += 1
                sharedCount += 1
            }
            return existed
        }
        let index = node(for: filter)
        let existed = nodes[index].subscribers.updateValue(subscription, forKey: clientID) != nil
        if !existed { count += 1 }
        return existed
    }

    /// Returns true when a subscription was removed.
    @discardableResult
    mutating func remove(filter: String, clientID: String) -> Bool {
        if let shared = Topic.sharedSubscription(filter) {
            let group = String(shared.group)
            guard let index = existingNode(for: String(shared.filter)),
                nodes[index].shared[group]?.members[clientID] != nil
            else { return false }
            nodes[index].shared[group]?.remove(clientID)
            if nodes[index].shared[group]?.members.isEmpty == true {
                nodes[index].shared[group] = nil
            }
            count -= 1
            sharedCount -= 1
            prune(from: index)
            return true
        }
        guard let index = existingNode(for: filter),
            nodes[index].subscribers.removeValue(forKey: clientID) != nil
        else { return false }
        count -= 1
        prune(from: index)
        return true
    }

    /// Replaces every internal durable subscriber with `entries` (a bridge rule set, or a SIGHUP's new one).
    mutating func replaceDurable(_ entries: [(filter: String, subscriber: DurableSubscriber)]) {
        let previous = durableNodes
        durableNodes = []
        for index in previous { nodes[index].durable = [] }
        // A prune may free (or, emptying the tree, drop) nodes that are later in `previous`: those are done.
        for index in previous where nodes.indices.contains(index) { prune(from: index) }
        for (filter, subscriber) in entries {
            let index = node(for: filter)
            nodes[index].durable.append(subscriber)
            durableNodes.insert(index)
        }
    }

    /// Unlinks `start` and then each ancestor while it is unused (a loop, not recursion: a filter may
    /// have 65,535 levels). An empty tree gives its storage back.
    private mutating func prune(from start: Int) {
        var index = start
        while index != 0, nodes[index].isUnused, let level = nodes[index].level {
            let parent = nodes[index].parent
            nodes[parent].setChild(level, nil)
            nodes[index] = Node()
            freeSlots.append(index)
            index = parent
        }
        if nodeCount == 1 && nodes.count > 1 {
            nodes = [nodes[0]]
            freeSlots = []
        }
    }

    /// Whether `filter` has more than `limit` levels; a shared subscription counts the levels of its
    /// filter, not of `$share/GROUP/`.
    static func exceedsLevels(filter: String, limit: Int) -> Bool {
        Topic.exceedsLevels(Topic.sharedSubscription(filter)?.filter ?? filter[...], limit: limit)
    }

    /// The levels of a filter, split on the `/` byte (splitting the String instead walks it Character by
    /// Character, grapheme breaking, which cost more than the rest of a match).
    static func levels(of filter: String) -> [TopicLevel] {
        var contiguous = filter  // `withUTF8` is mutating; on Linux every String is contiguous UTF-8 already
        return contiguous.withUTF8 { bytes in
            var levels: [TopicLevel] = []
            var start = 0
            while true {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.count
                levels.append(TopicLevel(filter, bytes: start..<end))
                guard end < bytes.count else { return levels }
                start = end + 1
            }
        }
    }

    func match(topic: String) -> Match {
        var result = Match()
        match(topic: topic, into: &result)
        return result
    }

    /// `match(topic:)` into `result` (empty): a caller that keeps one allocates nothing per publish.
    func match(topic: String, into result: inout Match) {
        var contiguous = topic  // `withUTF8` is mutating; on Linux every String is contiguous UTF-8 already
        contiguous.withUTF8 { match(topic, bytes: $0, into: &result) }
    }

    /// The walk over the topic's bytes: scanning a buffer for `/` costs a fraction of walking the
    /// String's generic UTF-8 view.
    private func match(_ topic: String, bytes: UnsafeBufferPointer<UInt8>, into result: inout Match) {
        // Through the buffer: each `nodes[index]` of the array retained and released its storage.
        nodes.withUnsafeBufferPointer { Self.match(topic, bytes: bytes, in: $0, into: &result) }
    }

    private static func match(
        _ topic: String,
        bytes: UnsafeBufferPointer<UInt8>,
        in nodes: UnsafeBufferPointer<Node>,
        into result: inout Match
    ) {
        let isDollar = bytes.first == UInt8(ascii: "$")
        // Depth first, never recursion (a topic of 65,535 levels must not run the event loop's stack out,
        // issue 13, case 7), and without splitting the topic: a step is a node and the byte offset where the
        // topic's next level starts (nil: every level consumed). The exact branch is followed at once; a `+`
        // branch waits on `pending` (empty, so never allocated, unless the tree has `+` filters on the way),
        // which keeps the order of the recursive walk: exact subtree first.
        var pending: [(node: Int, next: Int?)] = []
        var step: (node: Int, next: Int?)? = (0, 0)
        while let (index, next) = step ?? pending.popLast() {
            step = nil
            let wildcardsAllowed = !(isDollar && next == 0)
            if wildcardsAllowed, let hash = nodes[index].hashChild {
                // "a/#" matches "a" itself as well as everything below it [MQTT-4.7.1-2].
                add(node: hash, of: nodes, into: &result)
            }
            guard let start = next else {
                add(node: index, of: nodes, into: &result)
                continue
            }
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.count
            let after = end < bytes.count ? end + 1 : nil
            if wildcardsAllowed, let plus = nodes[index].plusChild { pending.append((plus, after)) }
            let level = UnsafeBufferPointer(rebasing: bytes[start..<end])
            // The field itself: a method called on `nodes[index]` would copy the whole node
            // (a retain and a release of each of its references) where this copies one map.
            let exact = nodes[index].literalChildren.value(where: { $0.hasBytes(level) }) {
                TopicLevel(topic, bytes: start..<end)
            }
            if let exact { step = (exact, after) }
        }
    }

    private static func add(node index: Int, of nodes: UnsafeBufferPointer<Node>, into result: inout Match) {
        if !nodes[index].durable.isEmpty { result.durable.append(contentsOf: nodes[index].durable) }
        for (clientID, subscription) in nodes[index].subscribers {
            result.subscribers.append((clientID, subscription))
        }
        for group in nodes[index].shared.keys {
            result.sharedGroups.append((index, group))
        }
    }

    /// Picks the next member of a shared group (round robin), preferring members for which
    /// `isEligible` is true (connected ones); returns nil when the group is gone.
    mutating func nextSharedMember(
        node index: Int,
        group: String,
        isEligible: (String) -> Bool
    ) -> (clientID: String, subscription: Subscription)? {
        guard let state = nodes[index].shared[group], !state.order.isEmpty else { return nil }
        let count = state.order.count
        var chosen: Int? = nil
        for offset in 0..<count {
            let candidate = (state.next + offset) % count
            if isEligible(state.order[candidate]) {
                chosen = candidate
                break
            }
        }
        let pick = chosen ?? state.next % count
        nodes[index].shared[group]?.next = pick + 1
        let clientID = state.order[pick]
        guard let subscription = state.members[clientID] else { return nil }
        return (clientID, subscription)
    }
}

/// A topic level: bytes `start..<end` of a whole topic or filter, which its levels share, compared
/// byte for byte: MQTT topics are not Unicode-normalised [MQTT-4.7.3-4], while Swift's String equality
/// is canonical equivalence ("é" == "e\u{301}"). Offsets rather than a `Substring`: a match makes one
/// per level of every published topic, and slicing the String's view cost as much as the lookup.
struct TopicLevel: Hashable, Sendable {
    private let base: String
    private let start: UInt32
    private let end: UInt32

    /// Bytes `range` of `base`, a topic or filter (at most 65,535 bytes on the wire).
    init(_ base: String, bytes range: Range<Int>) {
        self.base = base
        self.start = UInt32(range.lowerBound)
        self.end = UInt32(range.upperBound)
    }

    init(_ text: String) { self.init(text, bytes: 0..<text.utf8.count) }

    static let plus = TopicLevel("+")
    static let hash = TopicLevel("#")

    private func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        let range = Int(start)..<Int(end)
        let slice = { (all: UnsafeBufferPointer<UInt8>) in body(UnsafeBufferPointer(rebasing: all[range])) }
        if let result = base.utf8.withContiguousStorageIfAvailable(slice) { return result }
        var contiguous = base  // never on Linux, where every String is contiguous UTF-8 already
        return contiguous.withUTF8(slice)
    }

    /// Byte by byte: `elementsEqual`, even on buffers, costs several times more (this runs on every
    /// dictionary hit of a match).
    static func == (lhs: TopicLevel, rhs: TopicLevel) -> Bool {
        guard lhs.end - lhs.start == rhs.end - rhs.start else { return false }
        return rhs.withBytes { lhs.hasBytes($0) }
    }

    /// Whether this level is `bytes`: what a match asks of a node's children for each level of a topic,
    /// whose bytes it holds already.
    func hasBytes(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard Int(end - start) == bytes.count else { return false }
        return withBytes { mine in
            for i in 0..<mine.count where mine[i] != bytes[i] { return false }
            return true
        }
    }

    func hash(into hasher: inout Hasher) {
        withBytes { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
