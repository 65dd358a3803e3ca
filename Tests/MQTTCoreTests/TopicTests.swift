import Testing

@testable import MQTTCore

@Suite("Topic names and filters")
struct TopicTests {
    static let longest = String(repeating: "a", count: 65_535)
    static let tooLong = String(repeating: "a", count: 65_536)

    @Test(arguments: [
        "a", "a/b/c", "/", "//", "/a", "a/", "$SYS/broker/uptime", "sport/tennis/player1", "ü/✓/𝄞", " ", longest,
    ])
    func validNames(name: String) throws {
        try Topic.validateName(name)
    }

    @Test(arguments: ["", "+", "#", "a/+", "a/#", "a+b", "a#", "sport/tennis/#", "a\u{0}b", tooLong])
    func invalidNames(name: String) {
        expectError(.topicNameInvalid) { () throws(MQTTError) in try Topic.validateName(name) }
    }

    @Test(arguments: [
        "a", "#", "+", "/", "+/+", "/+", "+/", "a/#", "a/+/b", "a/+", "+/a/#", "sport/tennis/+", "sport/+/player1",
        "//#", "$SYS/#", "a//b", "$share/group/a/b", "$share/g/#", "$share/g/+", "$share/g//", "$share/g/$share/h/x",
        "$sharex/#", "$share", "ü/+/𝄞", longest,
    ])
    func validFilters(filter: String) throws {
        try Topic.validateFilter(filter)
    }

    @Test(arguments: [
        "", "a#", "#a", "a/#/b", "#/", "##", "a/b#", "+a", "a+", "a/+b/c", "a/b+", "++", "a\u{0}", tooLong,
        // Shared subscriptions [MQTT-4.8.2-1] [MQTT-4.8.2-2].
        "$share/", "$share/g", "$share/g/", "$share//a", "$share/g+/a", "$share/g#/a", "$share/+/a", "$share/#",
        "$share/g/a/#/b", "$share/g/a+",
    ])
    func invalidFilters(filter: String) {
        expectError(.topicFilterInvalid) { () throws(MQTTError) in try Topic.validateFilter(filter) }
    }

    @Test func sharedSubscriptionParts() throws {
        let parts = try #require(Topic.sharedSubscription("$share/consumers/sensors/+/temp"))
        #expect(parts.group == "consumers" && parts.filter == "sensors/+/temp")
        #expect(Topic.sharedSubscription("sensors/#") == nil)
        #expect(Topic.isShared("$share/g/a") && !Topic.isShared("$SYS/a"))
    }

    /// The matcher walks bytes; this reference splits into levels, as the rules are written. Every pair of
    /// topics and filters built from a few levels (empty ones, `$`, wildcards, multi-byte) must agree.
    @Test func matchingAgreesWithTheLevelByLevelRules() {
        func reference(filter: String, topic: String) -> Bool {
            var filterLevels = filter.split(separator: "/", omittingEmptySubsequences: false)[...]
            var topicLevels = topic.split(separator: "/", omittingEmptySubsequences: false)[...]
            if topic.hasPrefix("$"), filterLevels.first == "+" || filterLevels.first == "#" { return false }
            while let level = filterLevels.popFirst() {
                if level == "#" { return true }
                guard let topicLevel = topicLevels.popFirst() else { return false }
                if level != "+" && level != topicLevel { return false }
            }
            return topicLevels.isEmpty
        }
        let topicLevels = ["a", "b", "", "$x", "ab", "ü"]
        let filterLevels = topicLevels + ["+", "#"]
        var generator = SplitMix64(seed: 17)
        func random(_ levels: [String], upTo depth: Int) -> String {
            (0..<Int.random(in: 1...depth, using: &generator)).map { _ in levels.randomElement(using: &generator)! }
                .joined(separator: "/")
        }
        var matched = 0
        for _ in 0..<20_000 {
            let topic = random(topicLevels, upTo: 4)
            let filter = random(filterLevels, upTo: 4)
            guard (try? Topic.validateFilter(filter)) != nil, (try? Topic.validateName(topic)) != nil else { continue }
            let expected = reference(filter: filter, topic: topic)
            #expect(Topic.matches(filter: filter, topic: topic) == expected, "\(filter) against \(topic)")
            if expected { matched += 1 }
        }
        #expect(matched > 500)  // the cases are not all misses
    }
}
