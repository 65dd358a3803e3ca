import MQTTCore
import Testing

@testable import SluiceBridge

/// The bridge matches with MQTTCore's `Topic`; these cases pin the rules it relies on.
@Suite struct TopicFilterTests {
    @Test(arguments: [
        ("a/b", "a/b", true), ("a/b", "a/c", false), ("a/+", "a/b", true), ("a/+", "a/b/c", false),
        ("a/+", "a", false), ("a/+", "a/", true), ("a/#", "a", true), ("a/#", "a/b/c", true),
        ("#", "a/b", true), ("+/+", "/x", true), ("+", "/x", false), ("a//b", "a//b", true),
        ("#", "$SYS/x", false), ("+/x", "$SYS/x", false), ("$SYS/#", "$SYS/x", true), ("$SYS/+", "$SYS/x", true),
        ("a/b/#", "a/b", true), ("a/b", "a/b/", false), ("A/b", "a/b", false), ("caf\u{E9}", "cafe\u{301}", false),
    ])
    func matching(filter: String, topic: String, expected: Bool) {
        #expect(Topic.matches(filter: filter, topic: topic) == expected)
    }

    @Test func validation() {
        for valid in ["#", "+", "a/+/b", "a/#", "/", "+/#", "a//b"] {
            #expect(Topic.filterProblem(valid) == nil, "\(valid)")
        }
        for invalid in ["", "a#", "a/#/b", "a+", "+a/b", "a/b\0"] {
            #expect(Topic.filterProblem(invalid) != nil, "\(invalid)")
        }
        #expect((try? Topic.validateName("a/b")) != nil)
        #expect((try? Topic.validateName("a/+")) == nil)
        #expect((try? Topic.validateName("")) == nil)
    }
}

@Suite struct TopicRuleTests {
    /// (pattern, direction, local prefix, remote prefix, local topic, expected remote topic)
    @Test(arguments: [
        ("#", BridgeDirection.out, "", "", "a/b", "a/b" as String?),
        ("#", .out, "sensors/", "site1/", "sensors/t/1", "site1/t/1"),
        ("#", .out, "sensors/", "site1/", "other/t", nil),
        ("#", .out, "sensors/", "site1/", "sensors", "site1"),  // "#" matches the parent level
        ("#", .out, "sensors/", "", "sensors", nil),  // ...which maps to nothing without a remote prefix
        ("t/+", .out, "", "up/", "t/1", "up/t/1"),
        ("t/+", .out, "", "up/", "t/1/x", nil),
        ("t/+", .out, "local/", "", "local/t/9", "t/9"),
        ("", .out, "local/state", "remote/gw1/state", "local/state", "remote/gw1/state"),
        ("", .out, "local/state", "remote/gw1/state", "local/state/x", nil),
        ("#", .both, "a/", "b/", "a/x", "b/x"),
    ])
    func outboundRemap(
        pattern: String,
        direction: BridgeDirection,
        local: String,
        remote: String,
        topic: String,
        expected: String?
    ) throws {
        let rule = try TopicRule(
            pattern: pattern,
            direction: direction,
            qos: .atLeastOnce,
            localPrefix: local,
            remotePrefix: remote
        )
        #expect(rule.remoteTopic(forLocal: topic) == expected)
        if let expected {
            // and back again
            if topic != local.dropLast() || local.isEmpty { #expect(rule.localTopic(forRemote: expected) == topic) }
        }
    }

    @Test func inboundRemapAndFilters() throws {
        let rule = try TopicRule(
            pattern: "cmd/#",
            direction: .in,
            qos: .atLeastOnce,
            localPrefix: "devices/",
            remotePrefix: "gw1/"
        )
        #expect(rule.localFilter == "devices/cmd/#")
        #expect(rule.remoteFilter == "gw1/cmd/#")
        #expect(rule.localTopic(forRemote: "gw1/cmd/valve/open") == "devices/cmd/valve/open")
        #expect(rule.localTopic(forRemote: "gw2/cmd/valve") == nil)
        let whole = try TopicRule(
            pattern: "",
            direction: .in,
            qos: .atMostOnce,
            localPrefix: "l/x",
            remotePrefix: "r/y"
        )
        #expect(whole.localFilter == "l/x")
        #expect(whole.remoteFilter == "r/y")
        #expect(whole.localTopic(forRemote: "r/y") == "l/x")
    }

    @Test func validationErrorsNameTheInput() {
        #expect(
            throws: TopicRuleError(
                .wildcardInPrefix,
                input: "a/+/",
                "bridge topic local prefix 'a/+/' must not contain '+' or '#'"
            )
        ) {
            try TopicRule(pattern: "#", localPrefix: "a/+/")
        }
        do {
            _ = try TopicRule(pattern: "#", remotePrefix: "r/#/")
            Issue.record("accepted a wildcard prefix")
        } catch {
            #expect(error.code == .wildcardInPrefix)
            #expect(error.input == "r/#/")
            #expect(error.description.contains("remote prefix 'r/#/'"))
        }
        do {
            _ = try TopicRule(pattern: "a/#/b")
            Issue.record("accepted a bad pattern")
        } catch {
            #expect(error.code == .invalidPattern)
            #expect(error.description.contains("'a/#/b'"))
        }
        do {
            _ = try TopicRule(pattern: "", localPrefix: "x")
            Issue.record("accepted \"\" without both prefixes")
        } catch {
            #expect(error.code == .emptyPatternNeedsBothPrefixes)
        }
        do {
            _ = try TopicRule(pattern: "#", localPrefix: "sensors")  // gives "sensors#"
            Issue.record("accepted an invalid combined filter")
        } catch {
            #expect(error.code == .invalidCombinedFilter)
            #expect(error.input == "sensors#")
        }
    }

    @Test func bridgeRulesFirstMatchWinsAndDirections() throws {
        let rules = BridgeRules([
            try TopicRule(
                pattern: "alarm/#",
                direction: .out,
                qos: .atLeastOnce,
                localPrefix: "s/",
                remotePrefix: "urgent/"
            ),
            try TopicRule(pattern: "#", direction: .out, qos: .atMostOnce, localPrefix: "s/", remotePrefix: "bulk/"),
            try TopicRule(pattern: "cmd/#", direction: .in, qos: .exactlyOnce, localPrefix: "d/", remotePrefix: "c/"),
            try TopicRule(pattern: "sync/#", direction: .both, qos: .exactlyOnce, localPrefix: "", remotePrefix: "gw/"),
        ])
        #expect(
            rules.outbound(forLocal: "s/alarm/fire")
                == TopicMapping(topic: "urgent/alarm/fire", qos: .atLeastOnce, ruleIndex: 0)
        )
        #expect(rules.outbound(forLocal: "s/temp") == TopicMapping(topic: "bulk/temp", qos: .atMostOnce, ruleIndex: 1))
        #expect(rules.outbound(forLocal: "d/cmd/x") == nil)  // in rules never go out
        #expect(rules.outbound(forLocal: "sync/a") == TopicMapping(topic: "gw/sync/a", qos: .atLeastOnce, ruleIndex: 3))
        #expect(rules.inbound(forRemote: "c/cmd/x") == TopicMapping(topic: "d/cmd/x", qos: .exactlyOnce, ruleIndex: 2))
        #expect(rules.inbound(forRemote: "urgent/alarm/x") == nil)  // out rules never come in
        #expect(rules.inbound(forRemote: "gw/sync/a")?.topic == "sync/a")
        #expect(rules.localSubscriptions.map(\.filter) == ["s/alarm/#", "s/#", "sync/#"])
        let remote = rules.remoteSubscriptions(noLocal: true)
        #expect(remote.map(\.filter) == ["c/cmd/#", "gw/sync/#"])
        #expect(remote.allSatisfy { $0.options.noLocal && $0.options.qos == .exactlyOnce })
    }
}

@Suite struct BackoffTests {
    @Test func staysWithinBaseAndCapAndGrows() {
        var backoff = Backoff(base: .seconds(1), cap: .seconds(60))
        var rng = SeededGenerator(seed: 7)
        var previous = Duration.seconds(1)
        var delays: [Duration] = []
        for _ in 0..<40 {
            let d = backoff.next(using: &rng)
            #expect(d >= .seconds(1) && d <= .seconds(60))
            #expect(d <= previous * 3)
            previous = d
            delays.append(d)
        }
        #expect(delays.contains(.seconds(60)))  // reaches the cap
        // Grows: averaged over many seeds, the 8th delay is far above the 1st.
        var first = Duration.zero
        var eighth = Duration.zero
        for seed in 0..<200 as Range<UInt64> {
            var b = Backoff(base: .seconds(1), cap: .seconds(60))
            var g = SeededGenerator(seed: seed)
            first += b.next(using: &g)
            for _ in 0..<6 { _ = b.next(using: &g) }
            eighth += b.next(using: &g)
        }
        #expect(eighth > first * 4)
    }

    @Test func resetStartsOver() {
        var backoff = Backoff(base: .seconds(2), cap: .seconds(100))
        var rng = SeededGenerator(seed: 1)
        for _ in 0..<20 { _ = backoff.next(using: &rng) }
        backoff.reset()
        #expect(backoff.previous == .seconds(2))
        let d = backoff.next(using: &rng)
        #expect(d >= .seconds(2) && d <= .seconds(6))
    }

    @Test func equalBaseAndCapIsConstant() {
        var backoff = Backoff(base: .seconds(5), cap: .seconds(5))
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<10 { #expect(backoff.next(using: &rng) == .seconds(5)) }
    }
}
