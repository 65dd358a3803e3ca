import Foundation
import MQTTCore
import Testing

@testable import SluiceBroker

@Suite struct ConnectTests {
    @Test func connAckAnnouncesLimits() {
        let h = Harness { $0.maxInflightMessages = 5 }
        let seen = h.connect(1, "a")
        guard case .connAck(let ack)? = seen.packets(to: 1).first else {
            Issue.record("no CONNACK: \(seen)")
            return
        }
        #expect(ack.reasonCode == .success)
        #expect(!ack.sessionPresent)
        #expect(ack.properties.receiveMaximum == 5)
        #expect(ack.properties.topicAliasMaximum == 10)
    }

    @Test func emptyClientIDIsAssignedInV5AndRejectedWhenNotAllowed() {
        let h = Harness()
        guard case .connAck(let ack)? = h.connect(1, "").packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.properties.assignedClientIdentifier?.isEmpty == false)

        let v311 = h.connect(2, "", version: .v3_1_1, clean: false)
        #expect(v311.packets(to: 2) == [.connAck(ConnAckPacket(reasonCode: .clientIdentifierNotValid))])
        #expect(v311.closes(2) != nil)

        let v31 = h.connect(3, "", version: .v3_1, clean: true)
        #expect(v31.packets(to: 3) == [.connAck(ConnAckPacket(reasonCode: .clientIdentifierNotValid))])
    }

    @Test func serverKeepAliveLowersTheClientsKeepAlive() {
        let h = Harness { $0.maxKeepalive = 10 }
        guard case .connAck(let ack)? = h.connect(1, "a", keepAlive: 60).packets(to: 1).first else {
            return #expect(Bool(false))
        }
        #expect(ack.properties.serverKeepAlive == 10)
        // Silence for 1.5 × 10 s closes the connection with 0x8D.
        #expect(h.advance(seconds: 14).closes(1) == nil)
        #expect(h.advance(seconds: 2).closes(1) == .some(DisconnectPacket(reasonCode: .keepAliveTimeout)))
    }

    @Test func maxConnectionsRefusesWithQuotaExceeded() {
        let h = Harness { $0.maxConnections = 1 }
        h.connect(1, "a")
        let refused = h.connect(2, "b")
        #expect(refused.packets(to: 2) == [.connAck(ConnAckPacket(reasonCode: .quotaExceeded))])
        // A takeover of an existing client id is not a new connection.
        #expect(
            h.connect(3, "a").packets(to: 3).first
                == .connAck(ConnAckPacket(reasonCode: .success, properties: h.connAckProperties))
        )
    }

    @Test func secondConnectAndAuthAreProtocolErrors() {
        let h = Harness()
        h.connect(1, "a")
        let seen = h.receive(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "a")), from: 1)
        #expect(seen.closes(1)??.reasonCode == .protocolError)
        #expect(!h.broker.isConnected(ConnectionID(1)))

        h.connect(2, "b", version: .v3_1_1)
        #expect(
            h.receive(.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "b")), from: 2).closes(2)
                == .some(nil)
        )
    }

    @Test func packetBeforeConnectCloses() {
        let h = Harness()
        #expect(h.receive(.pingReq, from: 9).closes(9) == .some(nil))
    }

    @Test func sessionTakeoverDisconnectsTheOldConnectionWith0x8E() {
        let h = Harness()
        h.connect(1, "same")
        let seen = h.connect(2, "same")
        #expect(seen.closes(1) == .some(DisconnectPacket(reasonCode: .sessionTakenOver)))
        #expect(h.broker.isConnected(ConnectionID(2)))
        #expect(!h.broker.isConnected(ConnectionID(1)))
    }
}

extension Harness {
    var connAckProperties: Properties {
        var properties = Properties()
        properties.receiveMaximum = UInt16(broker.settings.maxInflightMessages)
        properties.topicAliasMaximum = broker.settings.topicAliasMaximum
        return properties
    }
}

@Suite struct RoutingTests {
    @Test func wildcardsAndDollarTopics() {
        let h = Harness()
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "a/+/c", qos: .atMostOnce)
        h.subscribe(1, "#", qos: .atMostOnce)
        #expect(h.publish(2, "a/b/c", "x").publishes(to: 1).count == 1)  // one copy for two matches
        #expect(h.publish(2, "$SYS-like/x", "y").publishes(to: 1).isEmpty)  // # does not match $ topics
        h.subscribe(1, "$app/#", qos: .atMostOnce)
        #expect(h.publish(2, "$app/x", "z").publishes(to: 1).map(\.text) == ["z"])
    }

    @Test func overlappingSubscriptionsDeliverOnceAtTheHighestQoSWithAllIdentifiers() {
        let h = Harness()
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "a/#", qos: .atMostOnce, identifier: 7)
        h.subscribe(1, "a/b", qos: .exactlyOnce, identifier: 9)
        let delivered = h.publish(2, "a/b", "x", qos: .atLeastOnce).publishes(to: 1)
        #expect(delivered.count == 1)
        #expect(delivered.first?.qos == .atLeastOnce)  // min(message QoS 1, granted 2)
        #expect(Set(delivered.first?.properties.subscriptionIdentifiers ?? []) == [7, 9])
    }

    @Test func noLocalSkipsTheSender() {
        let h = Harness()
        h.connect(1, "a")
        h.subscribe(1, "t", qos: .atMostOnce) { $0.noLocal = true }
        #expect(h.publish(1, "t", "x").publishes(to: 1).isEmpty)
    }

    @Test func sharedSubscriptionsDeliverEachMessageToOneMember() {
        let h = Harness()
        h.connect(1, "m1")
        h.connect(2, "m2")
        h.connect(3, "pub")
        h.subscribe(1, "$share/g/jobs/#", qos: .atMostOnce)
        h.subscribe(2, "$share/g/jobs/#", qos: .atMostOnce)
        var counts = [0, 0]
        for i in 0..<10 {
            let seen = h.publish(3, "jobs/\(i)", "x")
            counts[0] += seen.publishes(to: 1).count
            counts[1] += seen.publishes(to: 2).count
        }
        #expect(counts == [5, 5])
    }

    @Test func propertiesPassThroughAndAliasesAreStripped() {
        let h = Harness()
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "t", qos: .atMostOnce)
        var properties = Properties()
        properties.userProperties = [UserProperty("k", "v"), UserProperty("k", "w")]
        properties.contentType = "text/plain"
        properties.responseTopic = "reply"
        properties.correlationData = [1, 2, 3]
        properties.payloadFormatIndicator = 1
        properties.topicAlias = 3
        let got = h.publish(2, "t", "x", properties: properties).publishes(to: 1).first?.properties
        #expect(got?.userProperties == properties.userProperties)
        #expect(got?.contentType == "text/plain")
        #expect(got?.responseTopic == "reply")
        #expect(got?.correlationData == [1, 2, 3])
        #expect(got?.payloadFormatIndicator == 1)
        #expect(got?.topicAlias == nil)
    }

    @Test func messageTooLargeForOneSubscriberIsDroppedForThatSubscriberOnly() {
        let h = Harness()
        var small = Properties()
        small.maximumPacketSize = 64
        h.connect(1, "small", properties: small)
        h.connect(2, "big")
        h.connect(3, "pub")
        h.subscribe(1, "t", qos: .atMostOnce)
        h.subscribe(2, "t", qos: .atMostOnce)
        let seen = h.publish(3, "t", String(repeating: "x", count: 200))
        #expect(seen.publishes(to: 1).isEmpty)
        #expect(seen.publishes(to: 2).count == 1)
        #expect(h.broker.stats.dropped[.tooLargeForClient] == 1)
    }

    /// [MQTT-3.1.2-24]: a CONNACK larger than the client's Maximum Packet Size is not sent; as Mosquitto, the
    /// connection is closed without one and no session is made. One that fits is sent.
    @Test func connAckLargerThanTheClientsMaximumPacketSizeIsNotSent() {
        let h = Harness()
        var tiny = Properties()
        tiny.maximumPacketSize = 10
        let refused = h.connect(1, "", properties: tiny)  // the assigned identifier alone is longer
        #expect(refused == [.close(ConnectionID(1), nil)])
        #expect(h.broker.sessionCount == 0)
        var enough = Properties()
        enough.maximumPacketSize = 64
        let accepted = h.connect(2, "", properties: enough)
        guard case .send(_, .connAck(let ack)) = accepted.first else {
            Issue.record("no CONNACK: \(accepted)")
            return
        }
        #expect(ack.reasonCode == .success && ack.properties.assignedClientIdentifier != nil)
    }

    @Test func publishesToSysAreRefused() {
        let h = Harness()
        h.connect(1, "sub")
        h.subscribe(1, "$SYS/#", qos: .atMostOnce)
        let seen = h.publish(1, "$SYS/broker/fake", "x", qos: .atLeastOnce, packetID: 4)
        #expect(seen.publishes(to: 1).isEmpty)
        #expect(seen.packets(to: 1) == [.pubAck(PubAckPacket(packetIdentifier: 4, reasonCode: .notAuthorized))])
    }
}

@Suite struct QoSFlowTests {
    @Test func qos1WindowQueuesAndPumpsOnPubAck() {
        let h = Harness { $0.maxInflightMessages = 2 }
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "t")
        var sent: [PublishPacket] = []
        for i in 1...4 {
            let seen = h.publish(2, "t", "m\(i)", qos: .atLeastOnce, packetID: UInt16(i))
            #expect(seen.packets(to: 2) == [.pubAck(PubAckPacket(packetIdentifier: UInt16(i)))])
            sent += seen.publishes(to: 1)
        }
        #expect(sent.map(\.text) == ["m1", "m2"])
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 2)
        let next = h.receive(.pubAck(PubAckPacket(packetIdentifier: sent[0].packetIdentifier!)), from: 1)
        #expect(next.publishes(to: 1).map(\.text) == ["m3"])
    }

    @Test func clientReceiveMaximumCapsTheWindow() {
        let h = Harness()
        var properties = Properties()
        properties.receiveMaximum = 1
        h.connect(1, "sub", properties: properties)
        h.connect(2, "pub")
        h.subscribe(1, "t")
        let first = h.publish(2, "t", "a", qos: .atLeastOnce, packetID: 1)
        let second = h.publish(2, "t", "b", qos: .atLeastOnce, packetID: 2)
        #expect(first.publishes(to: 1).count == 1)
        #expect(second.publishes(to: 1).isEmpty)
    }

    @Test func inboundQoS2DeliversOnceAndReleases() {
        let h = Harness()
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "t", qos: .exactlyOnce)
        let first = h.publish(2, "t", "x", qos: .exactlyOnce, packetID: 5)
        #expect(first.packets(to: 2) == [.pubRec(PubAckPacket(packetIdentifier: 5))])
        #expect(first.publishes(to: 1).count == 1)
        let again = h.publish(2, "t", "x", qos: .exactlyOnce, packetID: 5)
        #expect(again.publishes(to: 1).isEmpty)
        #expect(
            h.receive(.pubRel(PubAckPacket(packetIdentifier: 5)), from: 2).packets(to: 2) == [
                .pubComp(PubAckPacket(packetIdentifier: 5))
            ]
        )
        // An unknown PUBREL is answered with 0x92 in MQTT 5.
        #expect(
            h.receive(.pubRel(PubAckPacket(packetIdentifier: 5)), from: 2).packets(to: 2)
                == [.pubComp(PubAckPacket(packetIdentifier: 5, reasonCode: .packetIdentifierNotFound))]
        )
    }

    @Test func outboundQoS2Flow() {
        let h = Harness { $0.maxInflightMessages = 1 }
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "t", qos: .exactlyOnce)
        let id = h.publish(2, "t", "a", qos: .exactlyOnce, packetID: 1).publishes(to: 1)[0].packetIdentifier!
        h.receive(.pubRel(PubAckPacket(packetIdentifier: 1)), from: 2)  // the publisher's own flow ends
        #expect(h.publish(2, "t", "b", qos: .exactlyOnce, packetID: 2).publishes(to: 1).isEmpty)
        #expect(
            h.receive(.pubRec(PubAckPacket(packetIdentifier: id)), from: 1).packets(to: 1) == [
                .pubRel(PubAckPacket(packetIdentifier: id))
            ]
        )
        #expect(h.receive(.pubComp(PubAckPacket(packetIdentifier: id)), from: 1).publishes(to: 1).map(\.text) == ["b"])
    }

    @Test func receiveMaximumExceededDisconnectsWith0x93() {
        let h = Harness(durable: ["t/#"]) { $0.maxInflightMessages = 2 }
        h.connect(1, "pub")
        h.publish(1, "t/1", "a", qos: .atLeastOnce, packetID: 1)
        h.publish(1, "t/1", "b", qos: .atLeastOnce, packetID: 2)
        let seen = h.publish(1, "t/1", "c", qos: .atLeastOnce, packetID: 3)
        #expect(
            seen.closes(1)
                == .some(
                    DisconnectPacket(
                        reasonCode: .receiveMaximumExceeded,
                        properties: reason("receive maximum exceeded")
                    )
                )
        )
    }
}

func reason(_ text: String) -> Properties {
    var properties = Properties()
    properties.reasonString = text
    return properties
}

@Suite struct SessionTests {
    @Test func persistentSessionQueuesWhileOfflineAndRedeliversUnackedWithDup() {
        let h = Harness()
        var properties = Properties()
        properties.sessionExpiryInterval = 3600
        h.connect(1, "sub", properties: properties)
        h.connect(2, "pub")
        h.subscribe(1, "t")
        let inflight = h.publish(2, "t", "unacked", qos: .atLeastOnce, packetID: 1).publishes(to: 1)
        #expect(inflight.count == 1)
        h.closed(1)
        h.publish(2, "t", "while-away", qos: .atLeastOnce, packetID: 2)
        let resumed = h.connect(3, "sub", clean: false, properties: properties)
        guard case .connAck(let ack)? = resumed.packets(to: 3).first else { return #expect(Bool(false)) }
        #expect(ack.sessionPresent)
        let redelivered = resumed.publishes(to: 3)
        #expect(redelivered.map(\.text) == ["unacked", "while-away"])
        #expect(redelivered.map(\.dup) == [true, false])
        #expect(redelivered[0].packetIdentifier == inflight[0].packetIdentifier)
    }

    @Test func cleanStartDiscardsTheSession() {
        let h = Harness()
        h.connect(1, "c", version: .v3_1_1, clean: false)
        h.subscribe(1, "t")
        h.closed(1)
        guard case .connAck(let ack)? = h.connect(2, "c", version: .v3_1_1, clean: true).packets(to: 2).first else {
            return #expect(Bool(false))
        }
        #expect(!ack.sessionPresent)
        #expect(h.broker.subscriptionCount == 0)
    }

    @Test func sessionExpiresAfterItsInterval() {
        let h = Harness()
        var properties = Properties()
        properties.sessionExpiryInterval = 2
        h.connect(1, "c", properties: properties)
        h.subscribe(1, "t")
        h.closed(1)
        h.advance(seconds: 1)
        #expect(h.broker.sessionCount == 1)
        h.advance(seconds: 1.5)
        #expect(h.broker.sessionCount == 0)
        #expect(h.broker.subscriptionCount == 0)
    }

    @Test func offlineQueueIsBoundedAndDropsAreCounted() {
        let h = Harness { $0.maxQueuedMessages = 3 }
        h.connect(1, "sub", version: .v3_1_1, clean: false)
        h.subscribe(1, "t")
        h.closed(1)
        h.connect(2, "pub")
        for i in 1...5 { h.publish(2, "t", "\(i)", qos: .atLeastOnce, packetID: UInt16(i)) }
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 3)
        #expect(h.broker.stats.dropped[.queueFull] == 2)
    }

    @Test func backedUpSubscriberQueuesWithinBoundsAndResumesWhenWritable() {
        let h = Harness { $0.maxQueuedMessages = 3 }
        h.connect(1, "slow")
        h.subscribe(1, "t", qos: .atLeastOnce)
        h.connect(2, "pub")
        #expect(h.broker.writabilityChanged(ConnectionID(1), writable: false, now: h.now).isEmpty)
        var sent: [Seen] = []
        for i in 1...4 { sent += h.publish(2, "t", "q0-\(i)") }
        sent += h.publish(2, "t", "q1", qos: .atLeastOnce, packetID: 9)
        // Nothing reaches the socket while it is backed up; three wait, two are dropped and counted.
        #expect(sent.publishes(to: 1).isEmpty)
        #expect(h.broker.queuedMessageCount(clientID: "slow") == 3)
        #expect(h.broker.stats.dropped[.queueFull] == 2)

        let resumed = h.broker.writabilityChanged(ConnectionID(1), writable: true, now: h.now).map(Seen.init)
        #expect(resumed.publishes(to: 1).map(\.text) == ["q0-1", "q0-2", "q0-3"])
        #expect(h.broker.queuedMessageCount(clientID: "slow") == 0)
        // Writable again: messages go straight out.
        #expect(h.publish(2, "t", "live").publishes(to: 1).map(\.text) == ["live"])
    }

    @Test func queuedMessagesKeepTheirOrderBehindAFullWindow() {
        let h = Harness()
        h.connect(
            1,
            "sub",
            properties: {
                var p = Properties()
                p.receiveMaximum = 1
                return p
            }()
        )
        h.subscribe(1, "t", qos: .atLeastOnce)
        h.connect(2, "pub")
        #expect(h.publish(2, "t", "a", qos: .atLeastOnce, packetID: 1).publishes(to: 1).count == 1)
        _ = h.broker.writabilityChanged(ConnectionID(1), writable: false, now: h.now)
        h.publish(2, "t", "b", qos: .atLeastOnce, packetID: 2)
        h.publish(2, "t", "c")
        // "b" waits for the window (receive maximum 1), and the QoS 0 "c" waits behind it.
        #expect(h.broker.writabilityChanged(ConnectionID(1), writable: true, now: h.now).isEmpty)
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 2)
        let acked = h.receive(.pubAck(PubAckPacket(packetIdentifier: 1)), from: 1)
        #expect(acked.publishes(to: 1).map(\.text) == ["b", "c"])
    }

    @Test func queuedMessagesExpireAndForwardTheRemainingTime() {
        let h = Harness()
        h.connect(
            1,
            "sub",
            version: .v5,
            clean: false,
            properties: {
                var p = Properties(); p.sessionExpiryInterval = 60; return p
            }()
        )
        h.subscribe(1, "t")
        h.closed(1)
        h.connect(2, "pub")
        var short = Properties()
        short.messageExpiryInterval = 1
        var long = Properties()
        long.messageExpiryInterval = 10
        h.publish(2, "t", "short", qos: .atLeastOnce, packetID: 1, properties: short)
        h.publish(2, "t", "long", qos: .atLeastOnce, packetID: 2, properties: long)
        h.advance(seconds: 3)
        let delivered = h.connect(
            3,
            "sub",
            clean: false,
            properties: {
                var p = Properties(); p.sessionExpiryInterval = 60; return p
            }()
        ).publishes(to: 3)
        #expect(delivered.map(\.text) == ["long"])
        #expect(delivered.first?.properties.messageExpiryInterval == 7)
    }
}

@Suite struct WillTests {
    func will(delay: UInt32? = nil, retain: Bool = false) -> Will {
        var properties = Properties()
        properties.willDelayInterval = delay
        return Will(
            topic: "wills/a",
            payload: ByteBuffer(string: "gone"),
            qos: .atMostOnce,
            retain: retain,
            properties: properties
        )
    }

    @Test func abnormalCloseSendsTheWillAndDisconnectDoesNot() {
        let h = Harness()
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        h.connect(2, "a", will: will())
        #expect(h.closed(2).publishes(to: 1).map(\.text) == ["gone"])

        h.connect(3, "a", will: will())
        #expect(h.receive(.disconnect(DisconnectPacket()), from: 3).publishes(to: 1).isEmpty)

        h.connect(4, "a", will: will())
        #expect(
            h.receive(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)), from: 4).publishes(to: 1)
                .count == 1
        )
    }

    @Test func willDelayWaitsAndReconnectingCancelsIt() {
        let h = Harness()
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        var properties = Properties()
        properties.sessionExpiryInterval = 60
        h.connect(2, "a", will: will(delay: 5), properties: properties)
        #expect(h.closed(2).publishes(to: 1).isEmpty)
        #expect(h.advance(seconds: 4).publishes(to: 1).isEmpty)
        #expect(h.advance(seconds: 2).publishes(to: 1).map(\.text) == ["gone"])

        h.connect(3, "a", clean: false, will: will(delay: 5), properties: properties)
        h.closed(3)
        h.connect(4, "a", clean: false, properties: properties)
        #expect(h.advance(seconds: 10).publishes(to: 1).isEmpty)
    }

    @Test func willIsSentWhenTheSessionEndsBeforeTheDelay() {
        let h = Harness()
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        var properties = Properties()
        properties.sessionExpiryInterval = 2
        h.connect(2, "a", will: will(delay: 30), properties: properties)
        h.closed(2)
        #expect(h.advance(seconds: 3).publishes(to: 1).map(\.text) == ["gone"])
    }

    @Test func keepAliveTimeoutSendsTheWill() {
        let h = Harness()
        h.connect(1, "watcher", keepAlive: 0)
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        h.connect(2, "a", keepAlive: 2, will: will())
        let seen = h.advance(seconds: 3.1)
        #expect(seen.closes(2) == .some(DisconnectPacket(reasonCode: .keepAliveTimeout)))
        #expect(seen.publishes(to: 1).map(\.text) == ["gone"])
    }
}

@Suite struct RetainedTests {
    @Test func retainedMessagesFollowSubAckAndCanBeCleared() {
        let h = Harness()
        h.connect(1, "pub")
        h.publish(1, "r/a", "1", retain: true)
        h.publish(1, "r/b", "2", retain: true)
        h.connect(2, "sub")
        let seen = h.subscribe(2, "r/#", qos: .atMostOnce)
        guard case .subAck? = seen.packets(to: 2).first else { return #expect(Bool(false)) }
        #expect(seen.publishes(to: 2).map(\.text) == ["1", "2"])
        #expect(seen.publishes(to: 2).allSatisfy { $0.retain })
        h.publish(1, "r/a", "", retain: true)
        #expect(h.broker.retainedCount == 1)
    }

    @Test func retainHandlingAndRetainAsPublished() {
        let h = Harness()
        h.connect(1, "pub")
        h.publish(1, "r", "1", retain: true)
        h.connect(2, "sub")
        #expect(h.subscribe(2, "r", qos: .atMostOnce) { $0.retainHandling = .doNotSend }.publishes(to: 2).isEmpty)
        #expect(
            h.subscribe(2, "r", qos: .atMostOnce) { $0.retainHandling = .sendOnSubscribeIfNew }.publishes(to: 2).isEmpty
        )
        #expect(
            h.subscribe(2, "q", qos: .atMostOnce) { $0.retainHandling = .sendOnSubscribeIfNew }.publishes(to: 2).isEmpty
        )
        #expect(
            h.subscribe(2, "r", qos: .atMostOnce) { $0.retainHandling = .sendOnSubscribe }.publishes(to: 2).count == 1
        )
        // Live retained messages keep retain=1 only with retain-as-published.
        #expect(h.publish(1, "r", "2", retain: true).publishes(to: 2).first?.retain == false)
        h.subscribe(2, "r", qos: .atMostOnce) { $0.retainAsPublished = true }
        #expect(h.publish(1, "r", "3", retain: true).publishes(to: 2).first?.retain == true)
    }

    @Test func expiredRetainedMessagesAreNotSent() {
        let h = Harness()
        h.connect(1, "pub")
        var properties = Properties()
        properties.messageExpiryInterval = 1
        h.publish(1, "r", "1", retain: true, properties: properties)
        h.advance(seconds: 2)
        h.connect(2, "sub")
        #expect(h.subscribe(2, "r", qos: .atMostOnce).publishes(to: 2).isEmpty)
    }
}

@Suite struct TopicAliasTests {
    @Test func inboundAliasesResolveAndBadOnesDisconnect() {
        let h = Harness()
        h.connect(1, "sub")
        h.subscribe(1, "long/topic", qos: .atMostOnce)
        h.connect(2, "pub")
        var alias = Properties()
        alias.topicAlias = 1
        #expect(h.publish(2, "long/topic", "a", properties: alias).publishes(to: 1).count == 1)
        #expect(h.publish(2, "", "b", properties: alias).publishes(to: 1).map(\.text) == ["b"])

        var unknown = Properties()
        unknown.topicAlias = 2
        #expect(h.publish(2, "", "c", properties: unknown).closes(2)??.reasonCode == .protocolError)

        h.connect(3, "pub2")
        var zero = Properties()
        zero.topicAlias = 0
        #expect(h.publish(3, "t", "d", properties: zero).closes(3)??.reasonCode == .topicAliasInvalid)
    }

    @Test func outgoingAliasesWhenTheClientAllowsThem() {
        let h = Harness()
        var properties = Properties()
        properties.topicAliasMaximum = 1
        h.connect(1, "sub", properties: properties)
        h.subscribe(1, "#", qos: .atMostOnce)
        h.connect(2, "pub")
        let first = h.publish(2, "a/b", "1").publishes(to: 1)[0]
        let second = h.publish(2, "a/b", "2").publishes(to: 1)[0]
        let other = h.publish(2, "c", "3").publishes(to: 1)[0]
        #expect(first.topic == "a/b" && first.properties.topicAlias == 1)
        #expect(second.topic == "" && second.properties.topicAlias == 1)
        #expect(other.topic == "c" && other.properties.topicAlias == nil)
    }
}

@Suite struct DurabilityTests {
    @Test func pubAckWaitsForTheCommit() {
        let h = Harness(durable: ["sensors/#"])
        h.connect(1, "pub")
        let seen = h.publish(1, "sensors/t", "21.5", qos: .atLeastOnce, packetID: 7)
        #expect(seen == [.persist(1, "sensors/t")])  // no PUBACK yet
        let acked = h.broker.persisted(token: 1, accepted: true, now: h.now).map(Seen.init)
        #expect(acked == [.send(ConnectionID(1), .pubAck(PubAckPacket(packetIdentifier: 7)))])
    }

    @Test func pubRecWaitsForTheCommitForQoS2() {
        let h = Harness(durable: ["sensors/#"])
        h.connect(1, "pub")
        #expect(h.publish(1, "sensors/t", "x", qos: .exactlyOnce, packetID: 3) == [.persist(1, "sensors/t")])
        #expect(
            h.broker.persisted(token: 1, accepted: true, now: h.now).map(Seen.init) == [
                .send(ConnectionID(1), .pubRec(PubAckPacket(packetIdentifier: 3)))
            ]
        )
    }

    @Test func rejectedAppendIsQuotaExceededForV5AndNoPubAckFor311() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v5")
        h.connect(2, "v311", version: .v3_1_1)
        h.publish(1, "t", "x", qos: .atLeastOnce, packetID: 1)
        h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 1)
        var because = Properties()
        because.reasonString = "the bridge queue refused the message"
        #expect(
            h.broker.persisted(token: 1, accepted: false, now: h.now).map(Seen.init) == [
                .send(
                    ConnectionID(1),
                    .pubAck(PubAckPacket(packetIdentifier: 1, reasonCode: .quotaExceeded, properties: because))
                )
            ]
        )
        #expect(
            h.broker.persisted(token: 2, accepted: false, now: h.now).map(Seen.init) == [.close(ConnectionID(2), nil)]
        )
        #expect(h.broker.stats.publishRefused == 2)
    }

    @Test func qos0DurableMessagesArePersistedWithoutHoldingAnyone() {
        let h = Harness(durable: ["#"])
        h.connect(1, "pub")
        #expect(h.publish(1, "t", "x") == [.persist(1, "t")])
        #expect(h.broker.persisted(token: 1, accepted: true, now: h.now).isEmpty)
    }

    @Test func nonMatchingTopicsAreAcknowledgedAtOnce() {
        let h = Harness(durable: ["sensors/#"])
        h.connect(1, "pub")
        #expect(
            h.publish(1, "other", "x", qos: .atLeastOnce, packetID: 2) == [
                .send(ConnectionID(1), .pubAck(PubAckPacket(packetIdentifier: 2)))
            ]
        )
    }
}

@Suite struct SubscriptionTreeTests {
    @Test(arguments: [
        ("a/b/c", "a/b/c", true), ("a/+/c", "a/b/c", true), ("a/#", "a", true), ("a/#", "a/b/c", true),
        ("#", "$SYS/x", false), ("+/x", "$SYS/x", false), ("$SYS/#", "$SYS/x", true), ("a/+", "a/b/c", false),
        ("+", "", true), ("a//b", "a//b", true), ("a/+/b", "a//b", true), ("/#", "/a", true), ("+/+", "/a", true),
    ])
    func matching(filter: String, topic: String, expected: Bool) {
        var tree = SubscriptionTree()
        tree.insert(
            filter: filter,
            clientID: "c",
            subscription: Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        )
        #expect(!tree.match(topic: topic).subscribers.isEmpty == expected)
        #expect(Topic.matches(filter: filter, topic: topic) == expected)
    }

    @Test func removeAndCount() {
        var tree = SubscriptionTree()
        let subscription = Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        let firstInsertExisted = tree.insert(filter: "a/#", clientID: "c", subscription: subscription)
        let secondInsertExisted = tree.insert(filter: "a/#", clientID: "c", subscription: subscription)
        #expect(!firstInsertExisted && secondInsertExisted)
        tree.insert(filter: "$share/g/a/#", clientID: "c", subscription: subscription)
        #expect(tree.count == 2)
        let removedShared = tree.remove(filter: "$share/g/a/#", clientID: "c")
        let removed = tree.remove(filter: "a/#", clientID: "c")
        let removedAgain = tree.remove(filter: "a/#", clientID: "c")
        #expect(removedShared && removed && !removedAgain)
        #expect(tree.count == 0)
        #expect(tree.match(topic: "a/b").subscribers.isEmpty)
    }
}

@Suite struct TopicBytesTests {
    /// Topics are compared byte for byte, never Unicode-normalised [MQTT-4.7.3-4].
    @Test func canonicallyEquivalentTopicsAreDifferentTopics() {
        var tree = SubscriptionTree()
        tree.insert(
            filter: "caf\u{E9}",
            clientID: "c",
            subscription: Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        )
        #expect(tree.match(topic: "cafe\u{301}").subscribers.isEmpty)
        #expect(tree.match(topic: "caf\u{E9}").subscribers.count == 1)
    }

    /// Levels are split at every `/` byte, also where a combining mark follows it (as one Character
    /// "/\u{301}" is no "/"): topic and filter split alike, so "a/+" matches "a/\u{301}" and
    /// "a/\u{301}" matches itself.
    @Test func aSlashBeforeACombiningMarkSeparatesLevels() {
        var tree = SubscriptionTree()
        let options = Subscription(options: SubscriptionOptions(qos: .atMostOnce))
        tree.insert(filter: "a/+", clientID: "wildcard", subscription: options)
        tree.insert(filter: "a/\u{301}", clientID: "exact", subscription: options)
        let matched = tree.match(topic: "a/\u{301}").subscribers.map(\.clientID).sorted()
        #expect(matched == ["exact", "wildcard"])
        #expect(tree.match(topic: "a\u{301}").subscribers.isEmpty)
        let removed = tree.remove(filter: "a/\u{301}", clientID: "exact")
        #expect(removed)
        #expect(tree.match(topic: "a/\u{301}").subscribers.map(\.clientID) == ["wildcard"])
    }
}

/// `$SYS/broker/load/...` (issue 16): Mosquitto's moving averages of per-minute rates.
@Suite struct SystemLoadTests {
    @Test func averagesFollowMosquittosFormula() throws {
        var load = SystemLoad()
        let first = load.update(seconds: 0, counters: ["messages/received": 0])
        #expect(first.count == SystemLoad.names.count * 3)
        #expect(first.allSatisfy { $0.value == "0.00" })
        // 600 messages in 10 s is 3,600 a minute; after one interval the 1-minute average has moved
        // (1 − e^(−10/60)) of the way there.
        let values = Dictionary(
            uniqueKeysWithValues: load.update(seconds: 10, counters: ["messages/received": 600]).map {
                ($0.topic, $0.value)
            }
        )
        #expect(values["load/messages/received/1min"] == String(format: "%.2f", 3600 * (1 - exp(-10.0 / 60))))
        #expect(values["load/messages/received/15min"] == String(format: "%.2f", 3600 * (1 - exp(-10.0 / 900))))
        #expect(values["load/bytes/sent/5min"] == "0.00")
    }
}
