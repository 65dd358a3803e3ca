import MQTTCore
import Testing

@testable import SluiceBridge

@Suite struct BridgeLinkLimitTests {
    @Test func oversizeMessagesAreDroppedNotRetried() {
        // "r/t" + "m1": 1 + 1 + (2 + 3 + 2 + 2) = 11 bytes in 3.1.1.
        #expect(MQTTCodec.encodedSize(.publish(sent1()), version: .v3_1_1) == 11)
        var c = config(maxInflight: 3)
        c.maxPacketSize = 11
        var h = Harness(c)
        _ = h.connect()
        var big = item(2)
        big.message.payload = .init(string: String(repeating: "x", count: 100))
        let actions = h.link.fetched([item(1), big, item(3)])
        #expect(
            actions.withoutLogs == [
                sent(1, id: 1), .deadLetter(seqs: [2], reason: .tooLarge), sent(3, id: 2), .fetch(after: 3, limit: 1),
            ]
        )
        #expect(actions.logs.contains { $0.contains("queued message 2") && $0.contains("maximum packet size 11") })
        #expect(h.link.statistics.deadLettered == 1)
    }

    @Test func remoteMaximumPacketSizeCountsMQTT5Properties() {
        var h = Harness(config(version: .v5, maxInflight: 3))
        var properties = Properties()
        properties.maximumPacketSize = 12  // 11 + one byte of empty properties length
        _ = h.connect(ConnAckPacket(properties: properties))
        var withProperty = item(2)
        withProperty.message.properties.contentType = "x"
        // A short answer: drained, so no further fetch.
        #expect(
            h.link.fetched([item(1), withProperty]).withoutLogs == [
                sent(1, id: 1), .deadLetter(seqs: [2], reason: .tooLarge),
            ]
        )
    }

    @Test func outgoingPublishCarriesOnlyClientProperties() {
        var h = Harness(config(version: .v5))
        _ = h.connect()
        var queued = item(1)
        queued.message.properties.subscriptionIdentifiers = [3]
        queued.message.properties.topicAlias = 4
        queued.message.properties.userProperties = [UserProperty("site", "a")]
        queued.message.packetIdentifier = 999
        queued.message.dup = true
        var expected = message(1)
        expected.properties.userProperties = [UserProperty("site", "a")]
        expected.packetIdentifier = 1
        #expect(h.link.fetched([queued]) == [.send(.publish(expected))])
    }

    @Test func remoteThatAllowsOnlyQoS0GetsQoS0() {
        var h = Harness(config(version: .v5))
        var properties = Properties()
        properties.maximumQoS = 0
        properties.retainAvailable = 0
        let connected = h.connect(ConnAckPacket(properties: properties))
        #expect(connected.logs.contains { $0.contains("QoS 0 only") })
        var retained = item(1)
        retained.message.retain = true
        #expect(h.link.fetched([retained]) == [.send(.publish(message(1, qos: .atMostOnce))), .remove(seqs: [1])])
    }

    @Test func topicAliasFromTheRemoteIsAProtocolError() {
        var h = Harness(config(version: .v5))
        _ = h.connect()
        var p = PublishPacket(topic: "", payload: .init(string: "x"), qos: .atMostOnce)
        p.properties.topicAlias = 1
        let actions = h.link.received(.publish(p))
        guard case .close(.protocolError) = actions.first else {
            Issue.record("expected a protocol error close, got \(actions)")
            return
        }
    }

    private func sent1() -> PublishPacket {
        var p = message(1)
        p.packetIdentifier = 1
        return p
    }
}

@Suite struct BridgeLinkEdgeTests {
    @Test func offlineEventsAreHarmless() {
        var h = Harness(config())
        #expect(h.link.queueHasMore() == [])
        #expect(h.link.received(puback(1)).withoutLogs == [])
        #expect(h.link.fetched([item(1)]).withoutLogs == [])
        #expect(h.link.reconnectTimerFired() == [])
        #expect(h.link.connectionClosed() == [])
        #expect(h.advance(.seconds(100)) == [])
    }

    @Test func staleFetchAnsweredWhileWaitingIsDropped() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()  // fetch(nil, 2) is out
        _ = h.link.connectionClosed()
        #expect(h.link.fetched(items(1...2)) == [])  // answer arrives while waiting to reconnect
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 2),
            ]
        )
        #expect(h.link.fetched(items(1...2)) == [sent(1, id: 1), sent(2, id: 2)])
    }

    /// Store reads run off the loop (BridgeQueues), so the answer to the old connection's fetch can arrive
    /// after the new connection asked its own: it must be dropped, and the new one's answer used.
    @Test func lateFetchAnswerAfterReconnectIsDropped() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()  // fetch(nil, 2) is out on connection 1
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 2),
            ]
        )
        // Connection 1's answer, read before the reconnect: stale, nothing is sent from it.
        #expect(h.link.fetched([item(7), item(8)]) == [])
        #expect(h.link.fetched(items(1...2)) == [sent(1, id: 1), sent(2, id: 2)])
        #expect(h.link.fetched(items(3...4)).withoutLogs == [])  // no fetch is out any more
    }

    @Test func bothRuleSubscribesRemotelyAndMapsBothWays() throws {
        let rules = BridgeRules([
            try TopicRule(pattern: "sync/#", direction: .both, qos: .atMostOnce, localPrefix: "l/", remotePrefix: "r/")
        ])
        #expect(rules.outbound(forLocal: "l/sync/a")?.topic == "r/sync/a")
        var h = Harness(config(rules: rules))
        let actions = h.connect().withoutLogs
        #expect(
            actions.contains(
                .send(
                    .subscribe(
                        SubscribePacket(
                            packetIdentifier: 1,
                            subscriptions: [
                                TopicSubscription(filter: "r/sync/#", options: SubscriptionOptions(qos: .atMostOnce))
                            ]
                        )
                    )
                )
            )
        )  // 3.1.1: no no-local
        let remote = PublishPacket(topic: "r/sync/a", payload: .init(string: "v"), qos: .atMostOnce, retain: true)
        #expect(
            h.link.received(.publish(remote)) == [
                .publishLocally(
                    PublishPacket(topic: "l/sync/a", payload: .init(string: "v"), qos: .atMostOnce, retain: true),
                    acknowledge: nil
                )
            ]
        )
    }
}

@Suite struct BridgeLinkReloadTests {
    @Test func reloadedRulesUnsubscribeAndSubscribeTheDifference() throws {
        let before = BridgeRules([
            try TopicRule(pattern: "cmd/#", direction: .in, qos: .atLeastOnce, localPrefix: "d/", remotePrefix: "gw1/"),
            try TopicRule(pattern: "cfg/#", direction: .in, qos: .atLeastOnce, localPrefix: "d/", remotePrefix: "gw1/"),
        ])
        let after = BridgeRules([
            try TopicRule(pattern: "cmd/#", direction: .in, qos: .atLeastOnce, localPrefix: "d/", remotePrefix: "gw1/"),
            try TopicRule(pattern: "ota/#", direction: .in, qos: .atMostOnce, localPrefix: "d/", remotePrefix: "gw1/"),
        ])
        var h = Harness(config(rules: before))
        _ = h.connect()
        _ = h.link.fetched([])
        // The first SUBACK is still pending (id 1), so the reload uses ids 2 and 3.
        #expect(
            h.link.updateRules(after) == [
                .send(.unsubscribe(UnsubscribePacket(packetIdentifier: 2, filters: ["gw1/cfg/#"]))),
                .send(
                    .subscribe(
                        SubscribePacket(
                            packetIdentifier: 3,
                            subscriptions: [
                                TopicSubscription(filter: "gw1/ota/#", options: SubscriptionOptions(qos: .atMostOnce))
                            ]
                        )
                    )
                ),
            ]
        )
        #expect(h.link.received(.unsubAck(UnsubAckPacket(packetIdentifier: 2))) == [])
        let refused = h.link.received(.subAck(SubAckPacket(packetIdentifier: 3, reasonCodes: [.unspecifiedError])))
        #expect(refused.logs.contains { $0.contains("gw1/ota/#") })
        #expect(
            h.link.received(.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .grantedQoS1]))) == []
        )
        // Inbound mapping follows the new rules at once.
        let remote = PublishPacket(topic: "gw1/cfg/x", payload: .init(string: "1"))
        #expect(h.link.received(.publish(remote)).withoutLogs == [])
        // And a reconnect subscribes to the new set only.
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        let actions = h.link.received(.connAck(ConnAckPacket()))
        guard case .send(.subscribe(let s)) = actions.withoutLogs.dropFirst().first else {
            Issue.record("no SUBSCRIBE in \(actions)")
            return
        }
        #expect(s.subscriptions.map(\.filter) == ["gw1/cmd/#", "gw1/ota/#"])
    }
}
