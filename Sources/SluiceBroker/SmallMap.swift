/// A map for tables that nearly always hold a few entries: a session's subscriptions by filter, a
/// filter's subscribers by client id, a subscription-tree node's children by topic level. A one-entry
/// `Dictionary` allocates a hash table of about 160 bytes, and each lookup hashes its key with SipHash;
/// up to `pairLimit` entries are kept here in a plain array instead (one small allocation, none when
/// empty), searched linearly with `==`, and beyond that in a `Dictionary`, so a filter with thousands of
/// subscribers still finds one in constant time, and a node that a client fills with children
/// cannot make its lookups linear (issue 17: RSS per idle subscribed connection, CPU per message).
///
/// One word, as the `Dictionary` it replaces: the tag sits in the references' spare bits (a class around
/// the dictionary; a `Dictionary` payload costs a tag byte, and `Session`'s stride 8 more). The class is
/// copied before a change when shared.
///
/// Keys compare with their `==`, as a `Dictionary` does. Iteration follows insertion order while the
/// entries are in the array, and the dictionary's order beyond `pairLimit`: no caller may depend on it.
struct SmallMap<Key: Hashable & Sendable, Value: Sendable> {
    typealias Element = (key: Key, value: Value)

    /// The most entries kept in the array; a table that shrinks back to half of it returns to the array,
    /// so a count that swings around the limit does not convert on every change.
    static var pairLimit: Int { 8 }

    /// Only changed while uniquely referenced (copy on write), so sharing it between threads is safe.
    fileprivate final class Table: @unchecked Sendable {
        var entries: [Key: Value]
        init(_ entries: [Key: Value]) { self.entries = entries }
    }

    fileprivate enum Storage: Sendable {
        case pairs([Element])
        case table(Table)
    }

    private var storage: Storage = .pairs([])

    init() {}

    var count: Int {
        switch storage {
        case .pairs(let pairs): pairs.count
        case .table(let table): table.entries.count
        }
    }

    var isEmpty: Bool { count == 0 }

    /// Whether the entries are in the hash table (for tests of the transitions).
    var usesTable: Bool {
        if case .table = storage { return true }
        return false
    }

    /// The keys, copied: callers may change the map while they walk them.
    var keys: [Key] { map(\.key) }

    /// The value of the key that `isKey` picks out while the entries are few, or of `key()` in the hash
    /// table: a lookup that makes no key unless it hashes one (a match runs this at every topic level).
    func value(where isKey: (Key) -> Bool, key: () -> Key) -> Value? {
        switch storage {
        case .pairs(let pairs):
            pairs.withUnsafeBufferPointer { pairs in
                for index in pairs.indices where isKey(pairs[index].key) { return pairs[index].value }
                return nil
            }
        case .table(let table): table.entries[key()]
        }
    }

    subscript(key: Key) -> Value? {
        get { value(where: { $0 == key }, key: { key }) }
        set {
            if let newValue {
                updateValue(newValue, forKey: key)
            } else {
                removeValue(forKey: key)
            }
        }
    }

    /// Sets the value for `key`; returns the value it replaced, nil when the key is new.
    @discardableResult
    mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        switch storage {
        case .pairs(var pairs):
            // Take the array out of `storage` first so that it is uniquely referenced and changes in place.
            storage = .pairs([])
            if let index = pairs.firstIndex(where: { $0.key == key }) {
                let old = pairs[index].value
                pairs[index].value = value
                storage = .pairs(pairs)
                return old
            }
            pairs.append((key, value))
            storage =
                pairs.count > Self.pairLimit
                ? .table(Table(Dictionary(uniqueKeysWithValues: pairs.lazy.map { ($0.key, $0.value) })))
                : .pairs(pairs)
            return nil
        case .table:
            return ownedTable().entries.updateValue(value, forKey: key)
        }
    }

    /// Removes `key`; returns its value, nil when it was not there.
    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        switch storage {
        case .pairs(var pairs):
            guard let index = pairs.firstIndex(where: { $0.key == key }) else { return nil }
            storage = .pairs([])
            let removed = pairs.remove(at: index).value
            // An emptied map gives its allocation back, as most subscriptions end that way.
            if !pairs.isEmpty { storage = .pairs(pairs) }
            return removed
        case .table:
            guard self[key] != nil else { return nil }
            let owned = ownedTable()
            let removed = owned.entries.removeValue(forKey: key)
            if owned.entries.count <= Self.pairLimit / 2 {
                storage = .pairs(owned.entries.map { ($0.key, $0.value) })
            }
            return removed
        }
    }

    /// The table in `storage`, copied first if another map shares it. Callers hold no reference to it
    /// (no `case .table(let table)` binding), or it would never look unique and be copied every time.
    private mutating func ownedTable() -> Table {
        guard case .table(var table) = storage else { preconditionFailure("the storage is an array") }
        storage = .pairs([])  // drops the enum's reference, so only `table` and other maps hold it
        if !isKnownUniquelyReferenced(&table) { table = Table(table.entries) }
        storage = .table(table)
        return table
    }
}

extension SmallMap: Sequence {
    struct Iterator: IteratorProtocol {
        fileprivate enum Source {
            case pairs(IndexingIterator<[Element]>)
            case table(Dictionary<Key, Value>.Iterator)
        }

        fileprivate var source: Source

        mutating func next() -> Element? {
            switch source {
            case .pairs(var iterator):
                defer { source = .pairs(iterator) }
                return iterator.next()
            case .table(var iterator):
                defer { source = .table(iterator) }
                return iterator.next()
            }
        }
    }

    func makeIterator() -> Iterator {
        switch storage {
        case .pairs(let pairs): Iterator(source: .pairs(pairs.makeIterator()))
        case .table(let table): Iterator(source: .table(table.entries.makeIterator()))
        }
    }

    var underestimatedCount: Int { count }
}

extension SmallMap: ExpressibleByDictionaryLiteral {
    init(dictionaryLiteral elements: (Key, Value)...) {
        for (key, value) in elements { updateValue(value, forKey: key) }
    }
}

/// Equal when they hold the same keys with equal values, in any order and either storage.
extension SmallMap: Equatable where Value: Equatable {
    static func == (lhs: SmallMap, rhs: SmallMap) -> Bool {
        lhs.count == rhs.count && lhs.allSatisfy { rhs[$0.key] == $0.value }
    }
}

extension SmallMap: Sendable {}

/// A session's subscriptions by filter, or a filter's subscribers by client id.
typealias SubscriptionMap = SmallMap<String, Subscription>
