import MQTTCore
import Testing

@testable import SluiceBroker

/// The tree's walk against the level-by-level rules of `Topic.matches`, over every filter and topic of
/// up to three levels drawn from empty, `$`, plain and multi-byte levels (and `+`, `#` for filters).
@Suite struct SubscriptionTreeMatchTests {
    static let levels = ["a", "", "$SYS", "é", "e\u{301}"]

    static func paths(of alphabet: [String], upTo depth: Int) -> [String] {
        var all: [[String]] = [[]]
        var out: [String] = []
        for _ in 0..<depth {
            all = all.flatMap { prefix in alphabet.map { prefix + [$0] } }
            out += all.map { $0.joined(separator: "/") }
        }
        return out
    }

    @Test func theTreeMatchesExactlyWhatTheRulesMatch() {
        let filters = Self.paths(of: Self.levels + ["+", "#"], upTo: 3).filter { Topic.filterProblem($0) == nil }
        let topics = Self.paths(of: Self.levels, upTo: 3)
        var tree = SubscriptionTree()
        let subscription = Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        for (n, filter) in filters.enumerated() {
            tree.insert(filter: filter, clientID: "\(n)", subscription: subscription)
        }
        var matched = 0
        for topic in topics {
            let got = Set(tree.match(topic: topic).subscribers.map { filters[Int($0.clientID)!] })
            let expected = Set(filters.filter { Topic.matches(filter: $0, topic: topic) })
            #expect(got == expected, "topic \(topic)")
            matched += got.count
        }
        #expect(filters.count > 250 && topics.count == 155)
        #expect(matched > 1_000)  // pairs beyond the root's "#" match too
    }

    /// A node's children move to a hash table past `SmallMap.pairLimit` and back to the array when they
    /// shrink: the match finds each child, and no other, both ways (including levels that differ only in
    /// their last byte, or are prefixes of one another).
    @Test func aNodeWithManyChildrenMatchesInEitherStorage() {
        let children = (0..<(3 * SubscriptionMap.pairLimit)).map { "level\($0)" } + ["level", "levels", "lével"]
        var tree = SubscriptionTree()
        let subscription = Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        func expectEachMatchesItself(_ present: [String]) {
            for child in children {
                let got = tree.match(topic: "root/\(child)").subscribers.map(\.clientID)
                #expect(got == (present.contains(child) ? [child] : []), "topic root/\(child)")
                let top = tree.match(topic: child).subscribers.map(\.clientID)
                #expect(top == (present.contains(child) ? ["top " + child] : []), "topic \(child)")
            }
        }
        for child in children {
            tree.insert(filter: "root/\(child)", clientID: child, subscription: subscription)
            tree.insert(filter: child, clientID: "top " + child, subscription: subscription)
        }
        expectEachMatchesItself(children)
        let kept = Array(children.suffix(3))
        for child in children.dropLast(3) {
            tree.remove(filter: "root/\(child)", clientID: child)
            tree.remove(filter: child, clientID: "top " + child)
        }
        expectEachMatchesItself(kept)
    }
}
