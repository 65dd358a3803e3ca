import MQTTCore
import NIOCore
import SluiceBridge
import Testing

@testable import SluiceBroker

/// Bridges' `out` rules as internal durable subscribers (DurableRoutes.swift): what routing yields, without sockets.
@Suite struct DurableRouteTests {
    private static func outbound(
        _ rules: [TopicRule],
        queues: [String] = [],
        defaultQueue: String = "default"
    ) -> BridgeOutbound {
        BridgeOutbound(
            rules: BridgeRules(rules),
            classes: queues.map { DurableQueueClass(queue: $0, ttl: $0 == "slow" ? 60 : nil) },
            defaultQueue: DurableQueueClass(queue: defaultQueue, ttl: nil)
        )
    }

    private static func rule(
        _ pattern: String,
        _ direction: BridgeDirection = .out,
        qos: QoS = .atLeastOnce,
        local: String = "",
        remote: String = ""
    ) -> TopicRule {
        try! TopicRule(pattern: pattern, direction: direction, qos: qos, localPrefix: local, remotePrefix: remote)
    }

    /// Publishes at QoS 1 from connection 1 ("pub") and returns the durable appends of the `.persist` action.
    private static func appends(_ h: Harness, _ topic: String, packetID: UInt16 = 1) -> [DurableAppend]? {
        let actions = h.broker.receive(
            .publish(
                PublishPacket(
                    topic: topic,
                    payload: ByteBuffer(string: "x"),
                    qos: .atLeastOnce,
                    retain: false,
                    packetIdentifier: packetID
                )
            ),
            from: ConnectionID(1),
            now: h.now
        )
        for case .persist(_, _, let appends) in actions { return appends }
        return nil
    }

    @Test func aBridgedTopicYieldsTheRemappedAppendOfItsRulesQueue() {
        let h = Harness()
        h.broker.setBridgeOutbound([
            Self.outbound(
                [Self.rule("#", .in), Self.rule("#", qos: .exactlyOnce, local: "sensors/", remote: "site7/sensors/")],
                queues: ["in-unused", "fast"]
            )
        ])
        h.connect(1, "pub")
        let appends = Self.appends(h, "sensors/t1")
        #expect(
            appends == [
                DurableAppend(
                    bridge: 0,
                    rule: 1,
                    topic: "site7/sensors/t1",
                    qos: .atLeastOnce,
                    queue: DurableQueueClass(queue: "fast", ttl: nil)
                )
            ]
        )
    }

    @Test func anUnmatchedTopicYieldsNoneAndIsAcknowledgedAtOnce() {
        let h = Harness()
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("#", local: "sensors/", remote: "r/")])])
        h.connect(1, "pub")
        #expect(Self.appends(h, "actuators/valve") == nil)
        #expect(
            h.publish(1, "actuators/valve", "x", qos: .atLeastOnce, packetID: 2) == [
                .send(ConnectionID(1), .pubAck(PubAckPacket(packetIdentifier: 2)))
            ]
        )
        // An `in` rule is not an internal subscriber.
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("#", .in)])])
        #expect(Self.appends(h, "sensors/t1") == nil)
    }

    @Test func twoBridgesMatchingBothGetItEachWithItsOwnRemapping() {
        let h = Harness()
        h.broker.setBridgeOutbound([
            Self.outbound([Self.rule("#", local: "s/", remote: "a/")], defaultQueue: "qa"),
            Self.outbound([Self.rule("s/+", qos: .atMostOnce)], defaultQueue: "qb"),
        ])
        h.connect(1, "pub")
        let appends = Self.appends(h, "s/1") ?? []
        #expect(appends.map(\.bridge) == [0, 1])
        #expect(appends.map(\.topic) == ["a/1", "s/1"])
        #expect(appends.map(\.qos) == [.atLeastOnce, .atMostOnce])
        #expect(appends.map(\.queue.queue) == ["qa", "qb"])
    }

    @Test func theFirstMatchingRuleOfABridgeWinsAndEachBridgeGetsOneAppend() {
        let h = Harness()
        h.broker.setBridgeOutbound([
            Self.outbound(
                [
                    Self.rule("t/#", remote: "first/"), Self.rule("#", remote: "second/"),
                    Self.rule("t/1", remote: "third/"),
                ],
                queues: ["q0", "q1", "q2"]
            )
        ])
        h.connect(1, "pub")
        #expect(Self.appends(h, "t/1")?.map(\.topic) == ["first/t/1"])
        #expect(Self.appends(h, "u")?.map(\.topic) == ["second/u"])
        #expect(Self.appends(h, "u")?.map(\.queue.queue) == ["q1"])
    }

    @Test func aReloadSwapsTheRulesInOneStepAndFreesTheOldNodes() {
        let h = Harness()
        let nodesBefore = h.broker.subscriptions.nodeCount
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("old/#", remote: "o/")])])
        h.connect(1, "pub")
        #expect(Self.appends(h, "old/1")?.map(\.topic) == ["o/old/1"])
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("new/#", remote: "n/")])])
        #expect(Self.appends(h, "old/1") == nil)
        #expect(Self.appends(h, "new/1")?.map(\.topic) == ["n/new/1"])
        #expect(h.broker.bridgeOutbound.first?.rules.rules.map(\.localFilter) == ["new/#"])
        h.broker.setBridgeOutbound([])
        #expect(Self.appends(h, "new/1") == nil)
        #expect(h.broker.subscriptions.nodeCount == nodesBefore)
    }

    @Test func aReloadTakesOutNestedFiltersWhateverTheOrderTheirNodesAreFreedIn() {
        let h = Harness()
        for round in 0..<32 {
            let filters = ["n\(round)", "n\(round)/#", "n\(round)/+/x", "n\(round)/a", "#"]
            h.broker.setBridgeOutbound([Self.outbound(filters.map { Self.rule($0) })])
            h.broker.setBridgeOutbound([])
            #expect(h.broker.subscriptions.nodeCount == 1)
        }
    }

    @Test func aReloadKeepsClientSubscriptionsOnSharedNodes() {
        let h = Harness()
        h.connect(2, "sub")
        h.subscribe(2, "a/#")
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("a/#")])])
        h.broker.setBridgeOutbound([])
        h.connect(1, "pub")
        #expect(h.publish(1, "a/b", "x").publishes(to: 2).map(\.topic) == ["a/b"])
    }

    @Test func internalSubscribersAreNotClientsAndNoClientRuleAppliesToThem() {
        struct DenyAll: AccessPolicy {
            func mayPublish(clientID: String, username: String?, topic: String) -> Bool { clientID == "pub" }
            func maySubscribe(clientID: String, username: String?, filter: String) -> Bool { false }
            func mayReceive(clientID: String, username: String?, topic: String) -> Bool { false }
        }
        let h = Harness()
        h.broker.accessPolicy = DenyAll()
        h.broker.setBridgeOutbound([
            Self.outbound([Self.rule("#"), Self.rule("x/#")]), Self.outbound([Self.rule("x/+")]),
        ])
        #expect(h.broker.subscriptionCount == 0)
        #expect(h.broker.sharedSubscriptionCount == 0)
        #expect(h.broker.sessionCount == 0)
        #expect(h.broker.connectedClientCount == 0)
        h.connect(1, "pub")
        // No ACL read check and no no-local for them; `$SYS` topics are not matched by a leading wildcard.
        #expect(Self.appends(h, "x/1")?.map(\.bridge) == [0, 1])
        #expect(
            h.broker.publishSystem(
                Message(topic: "$SYS/broker/uptime", payload: ByteBuffer(string: "1"), qos: .atMostOnce, retain: false),
                now: h.now
            ).isEmpty
        )
    }

    @Test func sharedGroupsAndNoLocalSubscribersOnTheSameFilterAreServedAsBeforeAndTheBridgeStillGetsIt() {
        let h = Harness()
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("jobs/#")])])
        h.connect(2, "worker-a")
        h.connect(3, "worker-b")
        h.subscribe(2, "$share/g/jobs/#", qos: .atMostOnce)
        h.subscribe(3, "$share/g/jobs/#", qos: .atMostOnce)
        h.connect(1, "pub")
        h.subscribe(1, "jobs/#", qos: .atMostOnce) { $0.noLocal = true }
        var members: [UInt64] = []
        for number in 1...4 {
            let actions = h.broker.receive(
                .publish(
                    PublishPacket(
                        topic: "jobs/\(number)",
                        payload: ByteBuffer(string: "x"),
                        qos: .atLeastOnce,
                        retain: false,
                        packetIdentifier: UInt16(number)
                    )
                ),
                from: ConnectionID(1),
                now: h.now
            )
            let seen = actions.map(Seen.init)
            members += [2, 3].filter { !seen.publishes(to: $0).isEmpty }
            #expect(seen.publishes(to: 1).isEmpty)  // no-local still keeps the publisher's own copy away
            let appends = actions.compactMap { if case .persist(_, _, let a) = $0 { a } else { nil } }
            #expect(appends.map { $0.map(\.topic) } == [["jobs/\(number)"]])
        }
        #expect(members == [2, 3, 2, 3])  // the group's turn is not taken by the bridge
        #expect(h.broker.sharedSubscriptionCount == 2)
        #expect(h.broker.subscriptionCount == 3)
    }

    @Test func aRemappingThatGivesNoValidTopicFallsToTheNextRuleOrToNone() {
        let h = Harness()
        // `local/#` matches "local" itself; with an empty remote prefix that maps to "" (no topic).
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("#", local: "local/"), Self.rule("local", remote: "r/")])])
        h.connect(1, "pub")
        #expect(Self.appends(h, "local")?.map(\.topic) == ["r/local"])
        h.broker.setBridgeOutbound([Self.outbound([Self.rule("#", local: "local/")])])
        #expect(Self.appends(h, "local") == nil)
    }
}
