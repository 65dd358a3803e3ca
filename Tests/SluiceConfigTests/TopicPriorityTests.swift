import Testing

@testable import SluiceConfig

// `topic … priority N ttl DURATION` (issue 14): the options come after Mosquitto's five fields.

private func topics(_ lines: String) throws -> [BridgeTopic] {
    try #require(try parse("connection c\naddress 127.0.0.1\n" + lines).bridges.first).topics
}

@Test func priorityAndTTLAfterTheFiveFields() throws {
    let parsed = try topics(
        """
        topic alarms/# out 1 "" site/ priority 0 ttl 1h
        topic telemetry/# out 1 "" site/ ttl 90s
        topic logs/# both 0 l/ r/ priority 7
        topic plain/# out 1
        """
    )
    #expect(parsed.map(\.priority) == [0, nil, 7, nil])
    #expect(parsed.map(\.ttl) == [.seconds(3600), .seconds(90), nil, nil])
    #expect(parsed.map(\.effectivePriority) == [0, 9, 7, 9])
    #expect(parsed[0].remotePrefix == "site/" && parsed[0].qos == 1)
}

@Test func optionsInEitherOrder() throws {
    let parsed = try topics("topic a/# out 1 \"\" \"\" ttl 2d priority 3")
    #expect(parsed[0].priority == 3)
    #expect(parsed[0].ttl == .seconds(2 * 86_400))
}

@Test func theDefaultClassIsTheLowest() {
    #expect(BridgeTopic.defaultPriority == 9)
    #expect(BridgeTopic(pattern: "a/#").effectivePriority == 9)
}

/// Every bad value names file, line and key, and says what was wrong.
let badPriorityCases: [BadCase] = [
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority 10",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "priority 0 (first) to 9 (last), got '10'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority -1",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "got '-1'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority high",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "got 'high'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority +1",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "got '+1'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'priority' needs a value"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" ttl",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'ttl' needs a value"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" priority 1 priority 2",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'priority' is given twice"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" ttl 1h ttl 2h",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'ttl' is given twice"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" ttl soon",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "ttl: expected a duration"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" ttl 0",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "got '0'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" ttl 5x",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "got '5x'"
    ),
    BadCase(
        text: "connection c\ntopic a/# in 1 \"\" \"\" priority 0",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "an 'in' rule takes neither"
    ),
    BadCase(
        text: "connection c\ntopic a/# in 1 \"\" \"\" ttl 1h",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "an 'in' rule takes neither"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" \"\" urgency 0",
        kind: .tooManyValues,
        line: 2,
        key: "topic",
        says: "only 'priority N' or 'ttl DURATION', got 'urgency'"
    ),
    // Before the five fields, `priority` is a prefix: the error says where the options go.
    BadCase(
        text: "connection c\ntopic a/# out 1 priority",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "come after all five fields"
    ),
    BadCase(
        text: "connection c\ntopic a/# priority 0",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "come after all five fields"
    ),
]

@Test(arguments: badPriorityCases)
func badPriorityOrTTLNamesFileLineAndKey(_ bad: BadCase) throws {
    try expectNamesFileLineAndKey(bad)
}
