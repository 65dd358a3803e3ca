import MQTTCore
import Testing

@testable import SluiceBridge

private let notification = "$SYS/broker/connection/gw-1/state"

@Suite struct BridgeLinkConnectTests {
    @Test func connectCarriesConfigurationWillAndBridgeBit() {
        var h = Harness(config(keepAlive: 30, notificationTopic: notification, tryPrivate: true))
        #expect(h.link.start() == [.connect(addressIndex: 0)])
        let expected = ConnectPacket(
            protocolVersion: .v3_1_1,
            clientIdentifier: "gw-1",
            cleanStart: true,
            keepAlive: 30,
            username: "gw",
            password: Array("secret".utf8),
            will: Will(topic: notification, payload: .init(string: "0"), qos: .atLeastOnce, retain: true),
            isBridge: true
        )
        #expect(h.link.connected() == [.sendConnect(expected)])
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true),
                .send(
                    .publish(
                        PublishPacket(
                            topic: notification,
                            payload: .init(string: "1"),
                            qos: .atLeastOnce,
                            retain: true,
                            packetIdentifier: 1
                        )
                    )
                ),
                .fetch(after: nil, limit: 2),  // the notification holds one slot of the window of 3
            ]
        )
        // The notification's PUBACK is not a queue message (the fetch is still out: no other).
        #expect(h.link.received(puback(1)) == [])
        #expect(h.link.isConnected)
    }

    @Test func mqtt5PersistentSessionAndNoBridgeBit() {
        var h = Harness(config(version: .v5, cleanSession: false, tryPrivate: true))
        _ = h.link.start()
        var properties = Properties()
        properties.sessionExpiryInterval = UInt32.max
        let expected = ConnectPacket(
            protocolVersion: .v5,
            clientIdentifier: "gw-1",
            cleanStart: false,
            keepAlive: 0,
            username: "gw",
            password: Array("secret".utf8),
            properties: properties
        )
        #expect(h.link.connected() == [.sendConnect(expected)])
    }

    @Test func tryPrivateRefusedIsDroppedOnTheNextAttempt() {
        var h = Harness(config(tryPrivate: true))
        _ = h.link.start()
        guard case .sendConnect(let first) = h.link.connected().first, first.isBridge else {
            Issue.record("no bridge bit")
            return
        }
        #expect(
            h.link.received(.connAck(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))).withoutLogs == [
                .close(.connAckRefused(.unsupportedProtocolVersion))
            ]
        )
        _ = h.link.connectionClosed()
        #expect(h.link.reconnectTimerFired() == [.connect(addressIndex: 0)])
        guard case .sendConnect(let second) = h.link.connected().first, !second.isBridge else {
            Issue.record("bridge bit again")
            return
        }
    }

    @Test func refusedConnAckClosesLogsAndBacksOff() {
        var h = Harness(config(), seed: 99)
        var reference = Backoff(base: .seconds(1), cap: .seconds(30))
        var rng = SeededGenerator(seed: 99)
        _ = h.link.start()
        var delays: [Duration] = []
        for _ in 0..<12 {
            _ = h.link.connected()
            let refused = h.link.received(.connAck(ConnAckPacket(reasonCode: .badUserNameOrPassword)))
            #expect(refused.withoutLogs == [.close(.connAckRefused(.badUserNameOrPassword))])
            let closed = h.link.connectionClosed()
            if delays.isEmpty {  // later ones within the minute are summed, not repeated
                #expect(
                    closed.logs.contains {
                        $0.contains("0x86") && $0.contains("bad user name or password") && $0.contains("retrying in")
                    }
                )
            }
            #expect(closed.withoutLogs.count == 1)
            let delay = try! #require(closed.scheduledDelay)
            #expect(delay == reference.next(using: &rng))
            #expect(delay >= .seconds(1) && delay <= .seconds(30))
            delays.append(delay)
            #expect(h.link.reconnectTimerFired() == [.connect(addressIndex: 0)])
        }
        #expect(delays.max()! > .seconds(3))  // it grew
        #expect(h.link.statistics.failedAttempts == 12)
        #expect(!h.link.isConnected)
    }

    @Test func backoffResetsAfterAStableConnection() {
        var h = Harness(config(), seed: 5)
        var reference = Backoff(base: .seconds(1), cap: .seconds(30))
        var rng = SeededGenerator(seed: 5)
        _ = h.link.start()
        for _ in 0..<6 {  // six failed attempts grow the delay
            #expect(h.link.connectionClosed(error: nil).scheduledDelay == reference.next(using: &rng))
            _ = h.link.reconnectTimerFired()
        }
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        _ = h.link.fetched([])
        #expect(h.advance(.seconds(60)).withoutLogs == [])  // stable now (the log sums the failed attempts)
        reference.reset()
        #expect(h.link.connectionClosed().scheduledDelay == reference.next(using: &rng))
        #expect(reference.previous <= .seconds(3))
    }

    @Test func connectTimeoutMovesToTheNextAddress() {
        var h = Harness(config(addresses: 2))
        _ = h.link.start()
        #expect(h.advance(.seconds(9)) == [])
        #expect(h.advance(.seconds(1)).withoutLogs == [.close(.connectTimeout)])
        #expect(h.link.connectionClosed().withoutLogs.count == 1)
        #expect(h.link.reconnectTimerFired() == [.connect(addressIndex: 1)])
        _ = h.link.connected()
        #expect(h.advance(.seconds(10)).withoutLogs == [.close(.connectTimeout)])  // no CONNACK either
    }
}

@Suite struct BridgeLinkFailoverTests {
    /// Fail the current attempt and return the next address tried.
    private func failAndRetry(_ h: inout Harness) -> [BridgeAction] {
        _ = h.link.connectionClosed(error: nil)
        return h.link.reconnectTimerFired()
    }

    @Test func primaryFirstWithoutRoundRobin() {
        var h = Harness(config(addresses: 3, roundRobin: false))
        #expect(h.link.start() == [.connect(addressIndex: 0)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 1)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 2)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 0)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 1)])
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))  // working on the secondary
        #expect(failAndRetry(&h) == [.connect(addressIndex: 0)])  // back to the primary
    }

    @Test func roundRobinKeepsGoingInOrder() {
        var h = Harness(config(addresses: 3, roundRobin: true))
        #expect(h.link.start() == [.connect(addressIndex: 0)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 1)])
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        #expect(failAndRetry(&h) == [.connect(addressIndex: 2)])
        #expect(failAndRetry(&h) == [.connect(addressIndex: 0)])
    }
}

@Suite struct BridgeLinkWindowTests {
    @Test func drainsAWindowAndTopsUpOnPubAck() {
        var h = Harness(config(maxInflight: 3))
        #expect(h.connect().withoutLogs == [.stateChanged(connected: true), .fetch(after: nil, limit: 3)])
        #expect(h.link.fetched(items(1...3)) == [sent(1, id: 1), sent(2, id: 2), sent(3, id: 3)])
        #expect(h.link.inflightCount == 3)
        // PUBACK removes exactly the acked message and asks for one more after the highest sent.
        #expect(h.link.received(puback(2)) == [.remove(seqs: [2]), .fetch(after: 3, limit: 1)])
        #expect(h.link.fetched([item(4)]) == [sent(4, id: 4)])
        #expect(h.link.received(puback(1)) == [.remove(seqs: [1]), .fetch(after: 4, limit: 1)])
        #expect(h.link.fetched([]) == [])  // the queue is drained
        #expect(h.link.received(puback(3)) == [.remove(seqs: [3])])  // so no fetch
        #expect(h.link.queueHasMore() == [.fetch(after: 4, limit: 2)])
        #expect(h.link.fetched([item(5)]) == [sent(5, id: 5)])
        #expect(h.link.received(puback(4)) == [.remove(seqs: [4])])
        #expect(h.link.received(puback(5)) == [.remove(seqs: [5])])
        #expect(h.link.statistics.acknowledged == 5)
        #expect(h.link.inflightCount == 0)
    }

    @Test func newMessagesDuringAFetchAreFetchedNext() {
        var h = Harness(config(maxInflight: 3))
        _ = h.connect()
        #expect(h.link.queueHasMore() == [])  // a fetch is already out
        #expect(h.link.fetched([item(1)]) == [sent(1, id: 1), .fetch(after: 1, limit: 2)])
    }

    @Test func receiveMaximumCapsTheWindow() {
        var h = Harness(config(version: .v5, maxInflight: 10))
        var properties = Properties()
        properties.receiveMaximum = 2
        #expect(
            h.connect(ConnAckPacket(properties: properties)).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 2),
            ]
        )
        #expect(h.link.fetched(items(1...2)) == [sent(1, id: 1), sent(2, id: 2)])
        // A store that returns more than asked does not overflow the window.
        #expect(h.link.received(puback(1)) == [.remove(seqs: [1]), .fetch(after: 2, limit: 1)])
        #expect(h.link.fetched(items(3...5)) == [sent(3, id: 3)])
        #expect(h.link.inflightCount == 2)
    }

    @Test func qos0ItemsAreRemovedOnceWrittenAndTakeNoSlot() {
        var h = Harness(config(maxInflight: 3))
        _ = h.connect()
        let zero1 = message(1, qos: .atMostOnce)
        let zero3 = message(3, qos: .atMostOnce)
        #expect(
            h.link.fetched([item(1, qos: .atMostOnce), item(2), item(3, qos: .atMostOnce)]) == [
                .send(.publish(zero1)), sent(2, id: 1), .send(.publish(zero3)), .remove(seqs: [1, 3]),
                .fetch(after: 3, limit: 2),
            ]
        )
        #expect(h.link.statistics.sentAtMostOnce == 2)
    }

    @Test func unknownPubAckIsIgnoredAndRefusalNeverRemoves() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()
        _ = h.link.fetched(items(1...2))
        let unknown = h.link.received(puback(9))
        #expect(unknown.withoutLogs == [])
        #expect(unknown.logs.contains { $0.contains("unknown packet id 9") })
        let rejected = h.link.received(puback(1, .quotaExceeded))
        #expect(rejected.withoutLogs == [])  // kept in the queue, sending held
        #expect(rejected.logs.contains { $0.contains("refused") && $0.contains("0x97") && $0.contains("kept") })
        #expect(h.link.statistics.rejected == 1)
        #expect(h.link.statistics.acknowledged == 0)
        // "no matching subscribers" (0x10) is a success.
        #expect(h.link.received(puback(2, .noMatchingSubscribers)) == [.remove(seqs: [2])])
        #expect(h.link.statistics.acknowledged == 1)
    }

    @Test func packetIdsWrapNeverZeroAndSkipIdsInUse() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()
        #expect(h.link.fetched(items(1...2)) == [sent(1, id: 1), sent(2, id: 2)])  // id 1 is never acked
        var last: UInt16 = 2
        var seq: UInt64 = 2
        var seen65535 = false
        for _ in 0..<70_000 {
            #expect(h.link.received(puback(last)) == [.remove(seqs: [seq]), .fetch(after: seq, limit: 1)])
            seq += 1
            guard case .send(.publish(let p)) = h.link.fetched([item(seq)]).first, let id = p.packetIdentifier else {
                Issue.record("no publish")
                return
            }
            #expect(id != 0 && id != 1)
            if id == 65535 { seen65535 = true }
            last = id
        }
        #expect(seen65535)
    }
}

@Suite struct BridgeLinkReconnectTests {
    @Test func reconnectResendsFromTheHeadInOrder() {
        var h = Harness(config(maxInflight: 3))
        _ = h.connect()
        _ = h.link.fetched(items(1...3))
        #expect(h.link.received(puback(1)) == [.remove(seqs: [1]), .fetch(after: 3, limit: 1)])
        // The link drops while that fetch is out.
        let closed = h.link.connectionClosed(error: nil).withoutLogs
        #expect(closed.first == .stateChanged(connected: false))
        #expect(closed.scheduledDelay != nil)
        #expect(h.link.reconnectTimerFired() == [.connect(addressIndex: 0)])
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 3),
            ]
        )
        #expect(h.link.fetched([item(4)]) == [])  // the old connection's answer is dropped
        // Everything not acked goes again, in order, with fresh ids (clean session: no DUP).
        #expect(h.link.fetched(items(2...4)) == [sent(2, id: 1), sent(3, id: 2), sent(4, id: 3)])
        #expect(h.link.received(puback(2)) == [.remove(seqs: [3]), .fetch(after: 4, limit: 1)])
    }

    @Test func persistentSessionResendsWithDupAndTheSameIds() {
        var h = Harness(config(cleanSession: false, maxInflight: 3))
        _ = h.connect()
        _ = h.link.fetched(items(1...3))
        _ = h.link.received(puback(2))
        #expect(h.link.fetched([]) == [])  // the top-up fetch, answered before the drop
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket(sessionPresent: true))).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 3),
            ]
        )
        #expect(
            h.link.fetched([item(1), item(3), item(4)]) == [
                sent(1, id: 1, dup: true), sent(3, id: 3, dup: true), sent(4, id: 2),
            ]
        )
    }

    @Test func sessionNotPresentMeansFreshIdsWithoutDup() {
        var h = Harness(config(cleanSession: false, maxInflight: 3))
        _ = h.connect()
        _ = h.link.fetched(items(1...3))
        _ = h.link.received(puback(2))
        #expect(h.link.fetched([]) == [])  // the top-up fetch, answered before the drop
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket(sessionPresent: false)))
        #expect(h.link.fetched([item(1), item(3), item(4)]) == [sent(1, id: 1), sent(3, id: 2), sent(4, id: 3)])
    }

    @Test func stopSaysOfflineDisconnectsAndStaysDown() {
        var h = Harness(config(notificationTopic: notification))
        _ = h.connect()
        #expect(
            h.link.stop() == [
                .send(.publish(PublishPacket(topic: notification, payload: .init(string: "0"), retain: true))),
                .send(.disconnect(DisconnectPacket())),
                .stateChanged(connected: false),
                .close(.stopped),
            ]
        )
        #expect(h.link.connectionClosed() == [])
        #expect(h.link.reconnectTimerFired() == [])
        #expect(h.link.start().withoutLogs == [])
    }

    @Test func remoteDisconnectAndProtocolErrorsClose() {
        var h = Harness(config())
        _ = h.connect()
        #expect(
            h.link.received(.disconnect(DisconnectPacket(reasonCode: .serverShuttingDown))).withoutLogs == [
                .close(.remoteDisconnected(.serverShuttingDown)), .stateChanged(connected: false),
            ]
        )
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.connect()
        let actions = h.link.received(.pingReq)
        guard case .close(.protocolError) = actions.first else {
            Issue.record("expected a protocol error close, got \(actions)")
            return
        }
    }
}

@Suite struct BridgeLinkTimerTests {
    @Test func keepAlivePingsWhenIdleAndClosesWhenSilent() {
        var h = Harness(config(keepAlive: 10))
        _ = h.connect()
        _ = h.link.fetched([])
        #expect(h.advance(.seconds(5)) == [])
        #expect(h.advance(.seconds(5)) == [.send(.pingReq)])
        #expect(h.advance(.seconds(2)) == [])
        #expect(h.link.received(.pingResp) == [])  // t = 12
        #expect(h.advance(.seconds(8)) == [.send(.pingReq)])  // t = 20: nothing sent for 10 s
        #expect(h.advance(.seconds(3)) == [])  // no answer yet, t = 23
        // t = 27: 15 s silent.
        #expect(h.advance(.seconds(4)).withoutLogs == [.close(.keepAliveTimeout), .stateChanged(connected: false)])
        #expect(h.link.connectionClosed().scheduledDelay != nil)
    }

    @Test func serverKeepAliveOverridesTheConfiguredOne() {
        var h = Harness(config(version: .v5, keepAlive: 60))
        var properties = Properties()
        properties.serverKeepAlive = 5
        _ = h.connect(ConnAckPacket(properties: properties))
        _ = h.link.fetched([])
        #expect(h.advance(.seconds(5)) == [.send(.pingReq)])
    }

    @Test func progressWatchdogReconnectsWhenPubAcksStop() {
        var h = Harness(config(maxInflight: 2, progressTimeout: .seconds(20)))
        _ = h.connect()
        _ = h.link.fetched(items(1...2))
        #expect(h.advance(.seconds(15)) == [])
        #expect(h.link.received(puback(1)) == [.remove(seqs: [1]), .fetch(after: 2, limit: 1)])  // progress at t = 15
        #expect(h.link.fetched([]) == [])
        #expect(h.advance(.seconds(15)) == [])  // t = 30
        #expect(h.advance(.seconds(5)).withoutLogs == [.close(.progressStalled), .stateChanged(connected: false)])
        // After a reconnect, message 2 goes again.
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 2),
            ]
        )
        #expect(h.link.fetched([item(2)]) == [sent(2, id: 1)])
    }

    @Test func watchdogSleepsWhenNothingIsInFlight() {
        var h = Harness(config(progressTimeout: .seconds(20)))
        _ = h.connect()
        _ = h.link.fetched([])
        #expect(h.advance(.seconds(100)) == [])
        #expect(h.link.isConnected)
    }
}

@Suite struct BridgeLinkInboundTests {
    private func rules() -> BridgeRules {
        BridgeRules([
            try! TopicRule(
                pattern: "#",
                direction: .out,
                qos: .atLeastOnce,
                localPrefix: "sensors/",
                remotePrefix: "site1/"
            ),
            try! TopicRule(
                pattern: "cmd/#",
                direction: .in,
                qos: .atLeastOnce,
                localPrefix: "devices/",
                remotePrefix: "gw1/"
            ),
        ])
    }

    @Test func subscribesWithNoLocalInMQTT5() {
        var h = Harness(config(version: .v5, rules: rules()))
        let subscribe = SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [
                TopicSubscription(
                    filter: "gw1/cmd/#",
                    options: SubscriptionOptions(qos: .atLeastOnce, noLocal: true, retainAsPublished: true)
                )
            ]
        )
        #expect(
            h.connect().withoutLogs == [
                .stateChanged(connected: true), .send(.subscribe(subscribe)), .fetch(after: nil, limit: 3),
            ]
        )
        #expect(h.link.received(.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1]))) == [])
    }

    @Test func refusedSubscriptionIsLoggedByFilter() {
        var h = Harness(config(rules: rules()))
        _ = h.connect()
        let actions = h.link.received(.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.notAuthorized])))
        #expect(actions.withoutLogs == [])
        #expect(actions.logs.contains { $0.contains("gw1/cmd/#") && $0.contains("not authorized") })
    }

    @Test func remotePublishIsRepublishedLocallyAndAcked() {
        var h = Harness(config(version: .v5, rules: rules()))
        _ = h.connect()
        var properties = Properties()
        properties.subscriptionIdentifiers = [4]
        properties.userProperties = [UserProperty("k", "v")]
        let remote = PublishPacket(
            topic: "gw1/cmd/valve",
            payload: .init(string: "open"),
            qos: .atLeastOnce,
            packetIdentifier: 7,
            properties: properties
        )
        var localProperties = Properties()
        localProperties.userProperties = [UserProperty("k", "v")]
        #expect(
            h.link.received(.publish(remote)) == [
                .publishLocally(
                    PublishPacket(
                        topic: "devices/cmd/valve",
                        payload: .init(string: "open"),
                        qos: .atLeastOnce,
                        properties: localProperties
                    ),
                    acknowledge: LocalDelivery(packetID: 7, connection: 1)
                )
            ]
        )
        #expect(h.link.statistics.received == 1)
        // The PUBACK goes once the local broker has kept the message, not before.
        #expect(
            h.link.publishedLocally(LocalDelivery(packetID: 7, connection: 1)) == [
                .send(.pubAck(PubAckPacket(packetIdentifier: 7)))
            ]
        )
        #expect(h.link.publishedLocally(LocalDelivery(packetID: 7, connection: 1)).isEmpty)
    }

    @Test func aMessageKeptAfterTheConnectionChangedIsNotAcknowledgedOnTheNewOne() {
        var h = Harness(config(rules: rules()))
        _ = h.connect()
        let remote = PublishPacket(
            topic: "gw1/cmd/v",
            payload: .init(string: "1"),
            qos: .atLeastOnce,
            packetIdentifier: 3
        )
        #expect(h.link.received(.publish(remote)).count == 1)
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        #expect(h.link.isConnected && h.link.statistics.connections == 2)
        #expect(h.link.publishedLocally(LocalDelivery(packetID: 3, connection: 1)).isEmpty)
    }

    @Test func qos2FromTheRemoteIsDeliveredOnce() {
        var h = Harness(config(rules: rules()))
        _ = h.connect()
        let remote = PublishPacket(
            topic: "gw1/cmd/x",
            payload: .init(string: "1"),
            qos: .exactlyOnce,
            packetIdentifier: 8
        )
        // Capped at the rule's QoS.
        let local = PublishPacket(topic: "devices/cmd/x", payload: .init(string: "1"), qos: .atLeastOnce)
        let delivery = LocalDelivery(packetID: 8, connection: 1)
        #expect(h.link.received(.publish(remote)) == [.publishLocally(local, acknowledge: delivery)])
        var again = remote
        again.dup = true
        #expect(h.link.received(.publish(again)).isEmpty)  // still being kept: PUBREC when it is
        #expect(h.link.publishedLocally(delivery) == [.send(.pubRec(PubAckPacket(packetIdentifier: 8)))])
        #expect(h.link.received(.publish(again)) == [.send(.pubRec(PubAckPacket(packetIdentifier: 8)))])
        #expect(
            h.link.received(.pubRel(PubAckPacket(packetIdentifier: 8))) == [
                .send(.pubComp(PubAckPacket(packetIdentifier: 8)))
            ]
        )
    }

    @Test func unmatchedRemotePublishIsAckedAndDropped() {
        var h = Harness(config(rules: rules()))
        _ = h.connect()
        let remote = PublishPacket(
            topic: "elsewhere/x",
            payload: .init(string: "1"),
            qos: .atLeastOnce,
            packetIdentifier: 9
        )
        let actions = h.link.received(.publish(remote))
        #expect(actions.withoutLogs == [.send(.pubAck(PubAckPacket(packetIdentifier: 9)))])
        #expect(actions.logs.contains { $0.contains("elsewhere/x") })
    }
}
