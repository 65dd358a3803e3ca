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
}
