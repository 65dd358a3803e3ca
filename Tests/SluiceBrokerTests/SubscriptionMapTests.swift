import MQTTCore
import Testing

@testable import SluiceBroker

/// The per-subscription tables (issue 17): an array up to `pairLimit` entries, a hash table beyond.
@Suite struct SubscriptionMapTests {
    private static let limit = SubscriptionMap.pairLimit

    /// A subscription told apart by its identifier.
    private func sub(_ number: Int) -> Subscription {
        Subscription(options: SubscriptionOptions(qos: .atLeastOnce), identifier: UInt32(number))
    }

    private func filled(_ count: Int) -> SubscriptionMap {
        var map: SubscriptionMap = [:]
        for index in 0..<count { map["k\(index)"] = sub(index) }
        return map
    }

    @Test func anEmptyMapHasNothing() {
        let map: SubscriptionMap = [:]
        #expect(map.isEmpty && map.count == 0 && map["a"] == nil)
        #expect(Array(map).isEmpty && map.keys.isEmpty && !map.usesTable)
    }

    @Test func oneEntryIsFoundReplacedAndRemoved() {
        var map: SubscriptionMap = [:]
        #expect(map.updateValue(sub(1), forKey: "a") == nil)
        #expect(map.count == 1 && map["a"] == sub(1) && map["b"] == nil && !map.usesTable)
        #expect(map.updateValue(sub(2), forKey: "a") == sub(1))
        #expect(map.count == 1 && map["a"] == sub(2))
        #expect(map.removeValue(forKey: "b") == nil && map.count == 1)
        #expect(map.removeValue(forKey: "a") == sub(2))
        #expect(map.isEmpty && map["a"] == nil)
        map["c"] = sub(3)
        map["c"] = nil
        #expect(map.isEmpty)
    }

    @Test func keysCompareAsStringsDo() {
        var map: SubscriptionMap = [:]
        map["caf\u{E9}"] = sub(1)
        // The same as a Dictionary<String, _>: canonically equivalent strings are one key.
        #expect(map["cafe\u{301}"] == sub(1))
        #expect(map.count == 1)
    }

    @Test func theArrayKeepsInsertionOrder() {
        var map = filled(Self.limit)
        #expect(!map.usesTable)
        #expect(map.map(\.key) == (0..<Self.limit).map { "k\($0)" })
        map["k0"] = nil
        map["k0"] = sub(0)
        #expect(map.keys == (1..<Self.limit).map { "k\($0)" } + ["k0"])
    }

    @Test func growsIntoATableAndEveryEntryStays() {
        var map = filled(Self.limit + 1)
        #expect(map.usesTable && map.count == Self.limit + 1)
        for index in 0...Self.limit { #expect(map["k\(index)"] == sub(index)) }
        #expect(Set(map.keys) == Set((0...Self.limit).map { "k\($0)" }))
        #expect(map.updateValue(sub(99), forKey: "k3") == sub(3) && map["k3"] == sub(99) && map.count == Self.limit + 1)
    }

    @Test func aTableShrinksBackToTheArrayAtHalfTheLimit() {
        var map = filled(Self.limit + 1)
        var remaining = Self.limit + 1
        var index = 0
        while remaining > Self.limit / 2 + 1 {
            #expect(map.removeValue(forKey: "k\(index)") == sub(index))
            index += 1
            remaining -= 1
            #expect(map.usesTable, "still a table at \(remaining) entries")
        }
        #expect(map.removeValue(forKey: "k\(index)") == sub(index))
        #expect(!map.usesTable && map.count == Self.limit / 2)
        for rest in (index + 1)...Self.limit { #expect(map["k\(rest)"] == sub(rest)) }
        for rest in (index + 1)...Self.limit { map["k\(rest)"] = nil }
        #expect(map.isEmpty && !map.usesTable)
    }

    @Test func manyEntriesStayFindable() {
        var map = filled(5_000)
        #expect(map.count == 5_000 && map["k4999"] == sub(4_999))
        for index in stride(from: 0, to: 5_000, by: 2) { map["k\(index)"] = nil }
        #expect(map.count == 2_500 && map["k0"] == nil && map["k1"] == sub(1))
        let identifiers = map.compactMap(\.value.identifier).sorted()
        #expect(identifiers == stride(from: 1, to: 5_000, by: 2).map { UInt32($0) })
    }

    @Test func equalityIgnoresOrderAndStorage() {
        let forward: SubscriptionMap = ["a": sub(1), "b": sub(2)]
        let backward: SubscriptionMap = ["b": sub(2), "a": sub(1)]
        #expect(forward == backward)
        #expect(forward != ["a": sub(1), "b": sub(3)])
        #expect(forward != ["a": sub(1)])
        #expect(forward != ["a": sub(1), "c": sub(2)])
        #expect(SubscriptionMap() == [:])
        // Same entries, one through a table and back, the other never a table.
        var shrunk = filled(Self.limit + 1)
        for index in 2...Self.limit { shrunk["k\(index)"] = nil }
        #expect(!shrunk.usesTable && shrunk == ["k1": sub(1), "k0": sub(0)])
    }

    @Test func changingACopyLeavesTheOriginal() {
        let original = filled(3)
        var copy = original
        copy["k0"] = sub(10)
        copy["k9"] = sub(9)
        #expect(original.count == 3 && original["k0"] == sub(0) && original["k9"] == nil)
        let table = filled(Self.limit + 2)
        var tableCopy = table
        tableCopy["k0"] = nil
        #expect(table["k0"] == sub(0) && tableCopy["k0"] == nil)
    }

    @Test func aSubscriptionMapIsOneWord() {
        // What keeps Session (a dictionary value) at its stride: see PerClientLayoutTests.
        #expect(MemoryLayout<SubscriptionMap>.size == 8)
    }
}
