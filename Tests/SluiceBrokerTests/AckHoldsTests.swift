import MQTTCore
import Testing

@testable import SluiceBroker

// The one owner of when a PUBACK/PUBREC may go: in the order the PUBLISHes came, each once its commits are in,
// and (flow control) while no connected subscriber it fed has a backlog, for at most `AckHolds.holdLimit` of
// that subscriber taking nothing.

@Suite struct AckHoldsTests {
    static func ack(_ id: UInt16, countsInbound: Bool = false) -> AckHolds.Ack {
        AckHolds.Ack(PubAckPacket(packetIdentifier: id), qos: .atLeastOnce, countsInbound: countsInbound)
    }

    /// Takes what may go for each of `publishers`, as "publisher:packet identifier".
    static func sent(_ holds: inout AckHolds, _ publishers: [ConnectionID]) -> [String] {
        publishers.flatMap { publisher in
            var out: [String] = []
            while let ack = holds.takeReady(publisher) {
                out.append("\(publisher.rawValue):\(ack.ack.packetIdentifier)")
            }
            return out
        }
    }

    @Test func nothingIsHeldWithoutAGateAndLaterAcknowledgementsWaitBehindAHeldOne() {
        var holds = AckHolds()
        let p = ConnectionID(1)
        var held = holds.append(Self.ack(1), for: p)
        #expect(!held)
        holds.hold(Self.ack(2), for: p, gate: "sub", now: 0)
        held = holds.append(Self.ack(3), for: p)  // no gate of its own: waits behind 2
        #expect(held)
        holds.hold(Self.ack(4), for: ConnectionID(2), gate: "sub", now: 0)
        #expect(Self.sent(&holds, [p, ConnectionID(2)]).isEmpty)
        #expect(holds.release(gate: "other").isEmpty)
        let released = holds.release(gate: "sub")
        #expect(Self.sent(&holds, released) == ["1:2", "1:3", "2:4"])
        #expect(!holds.holdsAny)
        #expect(holds.isEmpty)
        held = holds.append(Self.ack(5), for: p)
        #expect(!held)
    }

    @Test func aGateThatTakesNothingIsStalledUntilItTakesAMessage() {
        var holds = AckHolds()
        holds.hold(Self.ack(1), for: ConnectionID(1), gate: "sub", now: 1_000)
        #expect(holds.releaseOverdue(now: 1_000 + AckHolds.holdLimit - 1).isEmpty)
        let released = holds.releaseOverdue(now: 1_000 + AckHolds.holdLimit)
        #expect(Self.sent(&holds, released) == ["1:1"])
        #expect(!holds.mayGate("sub"))
        #expect(holds.mayGate("other"))
        holds.progressed("sub")
        #expect(holds.mayGate("sub"))
        #expect(holds.isEmpty)
    }

    @Test func aPublisherThatLeftIsSkippedAndAForgottenSubscriberReleases() {
        var holds = AckHolds()
        holds.hold(Self.ack(1), for: ConnectionID(1), gate: "sub", now: 0)
        holds.hold(Self.ack(2), for: ConnectionID(2), gate: "sub", now: 0)
        holds.forget(publisher: ConnectionID(1))
        let released = holds.forget(subscriber: "sub")
        #expect(Self.sent(&holds, released) == ["2:2"])
        #expect(holds.isEmpty)
    }

    @Test func anAcknowledgementWaitsForTheCommitAheadOfItAndGoesWithIt() {
        var holds = AckHolds()
        let p = ConnectionID(1)
        holds.hold(Self.ack(1, countsInbound: true), for: p, token: 7, gate: nil, now: 0)
        let appended = holds.append(Self.ack(2), for: p)
        #expect(appended)
        holds.committed(token: 8, for: p, PubAckPacket(packetIdentifier: 9))  // not its token
        #expect(Self.sent(&holds, [p]).isEmpty)
        // The commit decides the reason code.
        holds.committed(token: 7, for: p, PubAckPacket(packetIdentifier: 1, reasonCode: .quotaExceeded))
        let first = holds.takeReady(p)
        #expect(first?.ack.reasonCode == .quotaExceeded)
        #expect(first?.countsInbound == true)
        #expect(Self.sent(&holds, [p]) == ["1:2"])
        #expect(holds.isEmpty)
    }

    @Test func aCommittedAcknowledgementStillWaitsForItsGateAndAGatedOneForTheCommitAhead() {
        var holds = AckHolds()
        let p = ConnectionID(1)
        holds.hold(Self.ack(1), for: p, token: 1, gate: "sub", now: 0)
        holds.committed(token: 1, for: p, PubAckPacket(packetIdentifier: 1))
        #expect(Self.sent(&holds, [p]).isEmpty)
        #expect(Self.sent(&holds, holds.release(gate: "sub")) == ["1:1"])
        holds.hold(Self.ack(2), for: p, token: 2, gate: nil, now: 0)
        holds.hold(Self.ack(3), for: p, gate: "sub", now: 0)
        #expect(Self.sent(&holds, holds.release(gate: "sub")).isEmpty)  // 3 is free of its gate, but 2 is not on disk
        holds.committed(token: 2, for: p, PubAckPacket(packetIdentifier: 2))
        #expect(Self.sent(&holds, [p]) == ["1:2", "1:3"])
        #expect(holds.isEmpty)
    }

    @Test func theBacklogIsHalfTheQueueBound() {
        var settings = BrokerSettings()
        #expect(AckHolds.backlog(settings) == 500)  // max_queued_messages 1000
        settings.maxQueuedMessages = 10
        #expect(AckHolds.backlog(settings) == 5)
        settings.maxQueuedMessages = 1
        #expect(AckHolds.backlog(settings) == 1)
        settings.maxQueuedMessages = 0  // unbounded
        #expect(AckHolds.backlog(settings) == 1000)
    }
}

/// The broker's side: a subscriber with a window of 2 and a queue bound of 10, so a backlog of 5 holds.
@Suite struct FlowControlTests {
    func subscribed(_ version: ProtocolVersion = .v3_1_1, clean: Bool = true) -> Harness {
        let h = Harness {
            $0.maxInflightMessages = 2
            $0.maxQueuedMessages = 10
        }
        h.connect(1, "sub", version: version, clean: clean)
        h.subscribe(1, "t/#", qos: .atLeastOnce)
        h.connect(2, "pub", version: .v3_1_1)
        return h
    }

    /// Publishes `ids` at QoS 1 from connection 2; returns the packet identifiers acknowledged to it.
    func publish(_ h: Harness, _ ids: ClosedRange<UInt16>, qos: QoS = .atLeastOnce, topic: String = "t/x") -> [UInt16] {
        ids.flatMap { id in h.publish(2, topic, "m\(id)", qos: qos, packetID: id).acknowledged(to: 2) }
    }

    /// The subscriber acknowledges every PUBLISH in `seen`; returns what that sent to the publisher.
    func acknowledge(_ h: Harness, _ seen: [Seen]) -> [Seen] {
        seen.publishes(to: 1).flatMap { p in
            h.receive(.pubAck(PubAckPacket(packetIdentifier: p.packetIdentifier!)), from: 1)
        }
    }

    @Test func aBackloggedSubscriberHoldsItsPublishersAcknowledgementsUntilItDrains() {
        let h = subscribed()
        // 2 in flight, then queued 1…5: the fifth queued (message 7) reaches the backlog of 5.
        #expect(publish(h, 1...6) == [1, 2, 3, 4, 5, 6])
        #expect(publish(h, 7...8).isEmpty)
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 6)
        // Each PUBACK from the subscriber sends it one more; at 3 queued the holds go, in order.
        var sent = h.receive(.pubAck(PubAckPacket(packetIdentifier: 1)), from: 1)
        var released = sent.acknowledged(to: 2)
        for id: UInt16 in 2...3 {
            #expect(released.isEmpty)
            sent = h.receive(.pubAck(PubAckPacket(packetIdentifier: id)), from: 1)
            released = sent.acknowledged(to: 2)
        }
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 3)
        #expect(released.isEmpty)
        released = h.receive(.pubAck(PubAckPacket(packetIdentifier: 4)), from: 1).acknowledged(to: 2)
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 2)
        #expect(released == [7, 8])
        // Nothing was dropped on the way, and the next publish is acknowledged at once.
        #expect(h.broker.stats.dropped[.queueFull] == nil)
        #expect(publish(h, 9...9) == [9])
    }

    @Test func anAcknowledgementBehindAHeldOneWaitsEvenForATopicNobodyReads() {
        let h = subscribed()
        _ = publish(h, 1...6)
        #expect(publish(h, 7...7).isEmpty)
        // Nobody subscribes to "other/x", but PUBACKs go in the order the PUBLISHes came [MQTT-4.6.0-2].
        #expect(publish(h, 8...8, topic: "other/x").isEmpty)
        #expect(publish(h, 9...9, qos: .exactlyOnce, topic: "other/x").isEmpty)
        let released = (1...4).flatMap { id in
            h.receive(.pubAck(PubAckPacket(packetIdentifier: UInt16(id))), from: 1).packets(to: 2)
        }
        #expect(
            released == [
                .pubAck(PubAckPacket(packetIdentifier: 7)), .pubAck(PubAckPacket(packetIdentifier: 8)),
                .pubRec(PubAckPacket(packetIdentifier: 9)),
            ]
        )
    }

    @Test func aSubscriberThatTakesNothingReleasesAfterTheLimitAndHoldsNoMoreUntilItTakesOne() {
        let h = subscribed()
        _ = publish(h, 1...6)
        #expect(publish(h, 7...7).isEmpty)
        #expect(h.advance(seconds: 0.1).acknowledged(to: 2).isEmpty)
        #expect(h.advance(seconds: 0.2).acknowledged(to: 2) == [7])
        // Stalled: its backlog holds nothing, and the queue bound drops as without flow control.
        #expect(publish(h, 8...13) == [8, 9, 10, 11, 12, 13])
        #expect(h.broker.stats.dropped[.queueFull] == 1)
        // It takes one: it holds again.
        h.receive(.pubAck(PubAckPacket(packetIdentifier: 1)), from: 1)
        #expect(publish(h, 14...14).isEmpty)
    }

    @Test func aSubscriberLeavingReleasesAndAPublisherLeavingIsSentNothing() {
        let h = subscribed(clean: false)
        _ = publish(h, 1...6)
        #expect(publish(h, 7...7).isEmpty)
        #expect(h.closed(1).acknowledged(to: 2) == [7])
        // Offline, its backlog holds nothing: a persistent session fills its queue as before.
        #expect(publish(h, 8...9) == [8, 9])
        h.connect(3, "sub2", version: .v3_1_1)
        h.subscribe(3, "u/#", qos: .atLeastOnce)
        h.connect(4, "pub2", version: .v3_1_1)
        for id: UInt16 in 1...7 { h.publish(4, "u/x", "m", qos: .atLeastOnce, packetID: id) }
        #expect(h.closed(4).isEmpty)
        let afterwards = (1...4).flatMap { id in
            h.receive(.pubAck(PubAckPacket(packetIdentifier: UInt16(id))), from: 3)
        }
        #expect(afterwards.packets(to: 4).isEmpty)
        #expect(afterwards.publishes(to: 3).count == 4)
    }

    @Test func aHeldQoS1AcknowledgementCountsAgainstOurReceiveMaximum() {
        let h = Harness {
            $0.maxInflightMessages = 2
            $0.maxQueuedMessages = 10
        }
        h.connect(1, "sub", version: .v3_1_1)
        h.subscribe(1, "t/#", qos: .atLeastOnce)
        h.connect(2, "pub", version: .v5)
        for id: UInt16 in 1...6 {
            #expect(h.publish(2, "t/x", "m", qos: .atLeastOnce, packetID: id).acknowledged(to: 2) == [id])
        }
        #expect(h.publish(2, "t/x", "m", qos: .atLeastOnce, packetID: 7).acknowledged(to: 2).isEmpty)
        #expect(h.publish(2, "t/x", "m", qos: .atLeastOnce, packetID: 8).acknowledged(to: 2).isEmpty)
        // Two unacknowledged with a Receive Maximum of 2: a third is a protocol error [MQTT-3.3.4-9].
        let third = h.publish(2, "t/x", "m", qos: .atLeastOnce, packetID: 9)
        #expect(third.closes(2)??.reasonCode == .receiveMaximumExceeded)
    }
}

/// The durable path's acknowledgements keep their place in the publisher's order [MQTT-4.6.0-2, MQTT-4.6.0-3].
@Suite struct DurableAcknowledgementOrderTests {
    func bridged(_ version: ProtocolVersion = .v3_1_1) -> Harness {
        let h = Harness(durable: ["b/#"])
        h.connect(1, "pub", version: version)
        return h
    }

    @Test func aLocalMessagesAcknowledgementWaitsForTheBridgedOneAheadOfIt() {
        let h = bridged()
        #expect(h.publish(1, "b/x", "1", qos: .atLeastOnce, packetID: 1) == [.persist(1, "b/x")])
        #expect(h.publish(1, "l/x", "2", qos: .atLeastOnce, packetID: 2).acknowledged(to: 1).isEmpty)
        #expect(h.publish(1, "l/x", "3", qos: .exactlyOnce, packetID: 3).acknowledged(to: 1).isEmpty)
        #expect(h.publish(1, "b/x", "4", qos: .atLeastOnce, packetID: 4) == [.persist(2, "b/x")])
        // The second commit lands first: still nothing, as the first is not on disk.
        #expect(h.broker.persisted(token: 2, outcome: .committed, now: h.now).isEmpty)
        let released = h.broker.persisted(token: 1, outcome: .committed, now: h.now).map(Seen.init)
        #expect(
            released.packets(to: 1) == [
                .pubAck(PubAckPacket(packetIdentifier: 1)), .pubAck(PubAckPacket(packetIdentifier: 2)),
                .pubRec(PubAckPacket(packetIdentifier: 3)), .pubAck(PubAckPacket(packetIdentifier: 4)),
            ]
        )
        #expect(h.publish(1, "l/x", "5", qos: .atLeastOnce, packetID: 5).acknowledged(to: 1) == [5])
    }

    @Test func acknowledgementsWaitingBehindACommitCountAgainstOurReceiveMaximum() {
        let h = Harness(durable: ["b/#"]) { $0.maxInflightMessages = 2 }
        h.connect(1, "pub", version: .v5)
        h.publish(1, "b/x", "1", qos: .atLeastOnce, packetID: 1)
        #expect(h.publish(1, "l/x", "2", qos: .atLeastOnce, packetID: 2).acknowledged(to: 1).isEmpty)
        // Two unacknowledged with a Receive Maximum of 2: a third is a protocol error [MQTT-3.3.4-9].
        let third = h.publish(1, "l/x", "3", qos: .atLeastOnce, packetID: 3)
        #expect(third.closes(1)??.reasonCode == .receiveMaximumExceeded)
    }

    @Test func afterTheCommitTheCountIsFreedAndAFailedCommitClosesWithoutWhatWaited() {
        let h = Harness(durable: ["b/#"]) { $0.maxInflightMessages = 2 }
        h.connect(1, "pub", version: .v5)
        h.publish(1, "b/x", "1", qos: .atLeastOnce, packetID: 1)
        h.publish(1, "l/x", "2", qos: .atLeastOnce, packetID: 2)
        #expect(
            h.broker.persisted(token: 1, outcome: .committed, now: h.now).map(Seen.init).acknowledged(to: 1) == [1, 2]
        )
        #expect(h.publish(1, "l/x", "3", qos: .atLeastOnce, packetID: 3).acknowledged(to: 1) == [3])
        // MQTT 3.1.1 cannot refuse in a PUBACK: the connection closes, and what waited behind is not sent.
        let old = bridged(.v3_1_1)
        old.publish(1, "b/x", "1", qos: .atLeastOnce, packetID: 1)
        old.publish(1, "l/x", "2", qos: .atLeastOnce, packetID: 2)
        let failed = old.broker.persisted(token: 1, outcome: .failed("EIO"), now: old.now).map(Seen.init)
        #expect(failed == [.close(ConnectionID(1), nil)])
    }
}

extension Array where Element == Seen {
    /// The packet identifiers of the PUBACKs and PUBRECs sent to one connection.
    func acknowledged(to id: UInt64) -> [UInt16] {
        packets(to: id).compactMap {
            switch $0 {
            case .pubAck(let ack), .pubRec(let ack): ack.packetIdentifier
            default: nil
            }
        }
    }
}
