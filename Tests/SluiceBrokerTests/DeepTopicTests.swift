import MQTTCore
import Testing

@testable import SluiceBroker

/// A topic (or filter) of `levels` empty levels: `levels - 1` slashes, the deepest a 65,535-byte
/// string can be.
private func deep(_ levels: Int) -> String { String(repeating: "/", count: levels - 1) }

private func subAckCodes(_ seen: [Seen], to id: UInt64) -> [ReasonCode]? {
    for packet in seen.packets(to: id) { if case .subAck(let ack) = packet { return ack.reasonCodes } }
    return nil
}

private func pubAck(_ seen: [Seen], to id: UInt64) -> PubAckPacket? {
    for packet in seen.packets(to: id) { if case .pubAck(let ack) = packet { return ack } }
    return nil
}

/// Issue 13, case 7: deep topics must neither crash the broker nor pass the level limit.
@Suite struct DeepTopicTests {
    @Test func levelsAreCountedBySeparators() {
        #expect(!Topic.exceedsLevels("a", limit: 1))
        #expect(Topic.exceedsLevels("a/b", limit: 1))
        #expect(!Topic.exceedsLevels("a/b", limit: 2))
        #expect(Topic.exceedsLevels("/", limit: 1))
        #expect(!Topic.exceedsLevels(deep(201), limit: 201))
        #expect(Topic.exceedsLevels(deep(202), limit: 201))
        #expect(!Topic.exceedsLevels(deep(65_535), limit: 65_535))
    }

    /// The tree walked one recursion per level: 16,000 levels overflowed a debug build's stack.
    @Test func a65535LevelFilterMatchesWithoutRecursion() {
        var tree = SubscriptionTree()
        let subscription = Subscription(options: SubscriptionOptions(qos: .atLeastOnce))
        let topic = deep(65_535)
        tree.insert(filter: topic, clientID: "exact", subscription: subscription)
        tree.insert(filter: String(repeating: "+/", count: 65_534) + "+", clientID: "plus", subscription: subscription)
        tree.insert(filter: String(repeating: "/", count: 40_000) + "#", clientID: "hash", subscription: subscription)
        tree.insert(filter: "#", clientID: "all", subscription: subscription)
        let matched = Set(tree.match(topic: topic).subscribers.map(\.clientID))
        #expect(matched == ["exact", "plus", "hash", "all"])
        #expect(Set(tree.match(topic: deep(65_534)).subscribers.map(\.clientID)) == ["hash", "all"])
        #expect(Set(tree.match(topic: "a").subscribers.map(\.clientID)) == ["all"])
    }

    @Test func matchingOrderAndDollarRulesAreKept() {
        var tree = SubscriptionTree()
        let subscription = Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        for filter in ["#", "+/b", "$SYS/#", "a/+", "a/b", "a/#"] {
            tree.insert(filter: filter, clientID: filter, subscription: subscription)
        }
        // Exact branch before '+', '#' children as they are met: the recursive walk's order.
        #expect(tree.match(topic: "a/b").subscribers.map(\.clientID) == ["#", "a/#", "a/b", "a/+", "+/b"])
        #expect(tree.match(topic: "$SYS/x").subscribers.map(\.clientID) == ["$SYS/#"])  // [MQTT-4.7.2-1]
    }

    @Test(arguments: [(ProtocolVersion.v5, ReasonCode.topicFilterInvalid), (.v3_1_1, .unspecifiedError)])
    func aTooDeepFilterGetsAFailureCodeAndTheOthersAreServed(version: ProtocolVersion, refused: ReasonCode) {
        let h = Harness()
        h.connect(1, "deep", version: version)
        let seen = h.receive(
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: [
                        TopicSubscription(filter: deep(202), options: SubscriptionOptions(qos: .atLeastOnce)),
                        TopicSubscription(filter: deep(201), options: SubscriptionOptions(qos: .atLeastOnce)),
                        TopicSubscription(
                            filter: "$share/g/" + deep(202),
                            options: SubscriptionOptions(qos: .atLeastOnce)
                        ),
                    ]
                )
            ),
            from: 1
        )
        #expect(subAckCodes(seen, to: 1) == [refused, ReasonCode(rawValue: 1), refused])
        #expect(seen.closes(1) == nil)
        #expect(h.broker.subscriptionCount == 1)
    }

    @Test func anMQTT5PublishToATooDeepTopicGetsPubAck0x90AndStays() {
        let h = Harness()
        h.connect(1, "sub")
        h.subscribe(1, "#")
        h.connect(2, "pub")
        let seen = h.publish(2, deep(202), "x", qos: .atLeastOnce, packetID: 4)
        #expect(pubAck(seen, to: 2) == PubAckPacket(packetIdentifier: 4, reasonCode: .topicNameInvalid))
        #expect(seen.publishes(to: 1).isEmpty)
        #expect(seen.closes(2) == nil)
        #expect(h.broker.stats.dropped[.topicTooDeep] == 1)
        // The connection still works.
        #expect(h.publish(2, deep(201), "ok", qos: .atLeastOnce, packetID: 5).publishes(to: 1).map(\.text) == ["ok"])
    }

    @Test func aQoS2PublishGetsPubRec0x90AndNoFlowIsLeftOpen() {
        let h = Harness()
        h.connect(2, "pub")
        let seen = h.publish(2, deep(202), "x", qos: .exactlyOnce, packetID: 4)
        #expect(seen.packets(to: 2) == [.pubRec(PubAckPacket(packetIdentifier: 4, reasonCode: .topicNameInvalid))])
        // PUBREL for it is unknown: the flow ended with the refusal.
        let rel = h.receive(.pubRel(PubAckPacket(packetIdentifier: 4)), from: 2)
        #expect(
            rel.packets(to: 2) == [.pubComp(PubAckPacket(packetIdentifier: 4, reasonCode: .packetIdentifierNotFound))]
        )
    }

    @Test(arguments: [(ProtocolVersion.v3_1_1, QoS.atLeastOnce), (.v3_1_1, .atMostOnce), (.v5, .atMostOnce)])
    func aPublishThatCannotBeRefusedClosesTheConnection(version: ProtocolVersion, qos: QoS) {
        let h = Harness()
        h.connect(1, "sub")
        h.subscribe(1, "#")
        h.connect(2, "pub", version: version)
        let seen = h.publish(2, deep(65_535), "x", qos: qos, packetID: 4)
        #expect(seen.publishes(to: 1).isEmpty)
        let closed = seen.closes(2)
        #expect(closed != nil)
        if version >= .v5 { #expect(closed??.reasonCode == .topicNameInvalid) }
        #expect(!h.broker.isConnected(ConnectionID(2)))
        #expect(h.broker.isConnected(ConnectionID(1)))
    }

    @Test func theLimitIsConfigurable() {
        let h = Harness { $0.maxTopicLevels = 65_535 }
        h.connect(1, "sub")
        #expect(subAckCodes(h.subscribe(1, deep(65_535)), to: 1) == [ReasonCode(rawValue: 1)])
        h.connect(2, "pub")
        #expect(h.publish(2, deep(65_535), "deep", qos: .atLeastOnce).publishes(to: 1).map(\.text) == ["deep"])

        let strict = Harness { $0.maxTopicLevels = 2 }
        strict.connect(1, "sub")
        #expect(subAckCodes(strict.subscribe(1, "a/b/c"), to: 1) == [.topicFilterInvalid])
        #expect(subAckCodes(strict.subscribe(1, "a/b"), to: 1) == [ReasonCode(rawValue: 1)])
    }

    /// A store written with a higher limit (or before there was one) loads: the deep subscription
    /// is skipped and reported, the rest of the session kept, and the next save drops it.
    @Test func aSavedTooDeepSubscriptionIsSkippedOnLoad() {
        let h = Harness { $0.maxTopicLevels = 65_535 }
        h.broker.tracksChanges = true
        var persistent = Properties()
        persistent.sessionExpiryInterval = 3600
        h.connect(1, "keeper", properties: persistent)
        h.subscribe(1, deep(65_535))
        h.subscribe(1, "t/ok")
        h.closed(1)
        var saved = SavedTables()
        h.save(into: &saved)

        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems == ["session keeper: subscription of 65534 bytes deeper than 201 levels skipped"])
        #expect(restarted.broker.sessionCount == 1)
        #expect(restarted.broker.subscriptionCount == 1)
        saved.apply(restarted.broker.takeChanges(wallClockOffset: 0))
        let (again, noProblems) = saved.restored(wallClockOffset: 0)
        #expect(noProblems.isEmpty)
        #expect(again.broker.subscriptionCount == 1)
    }
}
