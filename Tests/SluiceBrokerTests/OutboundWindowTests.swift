import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The outbound flow towards one subscriber alone, without a broker: the in-flight window (Receive
// Maximum, max_inflight_messages, max_inflight_bytes), the queue and its bounds, packet identifiers, the
// QoS 2 states and what a reconnecting client gets again. Broker tests keep only the wiring (a setting or
// a CONNECT property reaching the window, a PUBACK pumping the queue).

extension OutboundLimits {
    /// Limits for tests: no bound unless given.
    static func bounds(
        window: Int = 65535,
        inflightBytes: Int = 0,
        queuedMessages: Int = 0,
        queuedBytes: Int = 0,
        queueQoS0: Bool = false
    ) -> OutboundLimits {
        OutboundLimits(
            window: window,
            maxInflightBytes: inflightBytes,
            maxQueuedMessages: queuedMessages,
            maxQueuedBytes: queuedBytes,
            queueQoS0: queueQoS0
        )
    }
}

private func delivery(_ text: String, qos: QoS = .atLeastOnce, bytes: Int? = nil) -> Delivery {
    let payload = bytes.map { ByteBuffer(repeating: 0x61, count: $0) } ?? ByteBuffer(string: text)
    return Delivery(
        message: Message(topic: text, payload: payload, qos: qos),
        qos: qos,
        retain: false,
        subscriptionIdentifiers: []
    )
}

extension OutboundWindow {
    /// Offers `delivery` to a connected client that keeps up, and sends what the window says to send.
    @discardableResult
    fileprivate mutating func deliver(_ delivery: Delivery, _ limits: OutboundLimits) -> Offer {
        let offer = offer(delivery, deliverable: true, connected: true, limits)
        if case .send(let packetID) = offer { sent(delivery, packetID: packetID) }
        return offer
    }

    /// Sends what `next` hands out, as `Broker.pump` does; the topics sent.
    fileprivate mutating func pump(_ limits: OutboundLimits) -> [String] {
        var topics: [String] = []
        while let (delivery, packetID) = next(limits) {
            if let packetID { sent(delivery, packetID: packetID) }
            topics.append(delivery.message.topic)
        }
        return topics
    }

    /// Whether the offer was to wait in the queue.
    fileprivate static func isQueued(_ offer: Offer) -> Bool {
        if case .queued = offer { true } else { false }
    }
}

@Suite struct OutboundWindowTests {
    @Test func theWindowIsTheClientsReceiveMaximumWithinOurs() {
        var settings = BrokerSettings()
        settings.maxInflightMessages = 20
        #expect(settings.outboundLimits(clientReceiveMaximum: 5).window == 5)
        #expect(settings.outboundLimits(clientReceiveMaximum: 100).window == 20)
        #expect(settings.outboundLimits(clientReceiveMaximum: nil).window == 20)
        // max_inflight_messages 0 is no bound of ours: the protocol's 65,535.
        settings.maxInflightMessages = 0
        #expect(settings.outboundLimits(clientReceiveMaximum: nil).window == 65535)
        #expect(settings.outboundLimits(clientReceiveMaximum: 7).window == 7)
        settings.maxInflightBytes = 9
        settings.maxQueuedMessages = 8
        settings.maxQueuedBytes = 7
        settings.queueQoS0Messages = true
        let limits = settings.outboundLimits(clientReceiveMaximum: 1)
        #expect(limits.maxInflightBytes == 9 && limits.maxQueuedMessages == 8 && limits.maxQueuedBytes == 7)
        #expect(limits.queueQoS0)
    }

    @Test func messagesBeyondTheCountWindowWaitInOrderAndGoAsAcknowledgementsMakeRoom() throws {
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 2)
        let offer1 = window.deliver(delivery("a"), limits)
        #expect(offer1 == .send(packetID: 1))
        let offer2 = window.deliver(delivery("b", qos: .exactlyOnce), limits)
        #expect(offer2 == .send(packetID: 2))
        guard case .queued(let c) = window.deliver(delivery("c"), limits) else {
            Issue.record("c should wait")
            return
        }
        #expect(c.seq == 3 && window.hasQueued)
        // Behind a waiting message, a new one waits too, even once there is room: order is kept.
        let sentTopics1 = window.pump(limits)
        #expect(sentTopics1.isEmpty)
        let ended1 = window.acknowledge(1, .awaitingPubAck)
        #expect(try #require(ended1).delivery.message.topic == "a")
        guard case .queued = window.deliver(delivery("d"), limits) else {
            Issue.record("d should wait behind c")
            return
        }
        let sentTopics2 = window.pump(limits)
        #expect(sentTopics2 == ["c"])
        #expect(window.inflight.map(\.delivery.message.topic) == ["b", "c"])
        #expect(window.inflight.map(\.delivery.seq) == [2, 3])
        #expect(window.queue.map(\.message.topic) == ["d"])
    }

    @Test func qos0GoesAtOnceWhileTheClientKeepsUpAndWaitsInOrderOtherwise() {
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 1)
        let offer3 = window.deliver(delivery("z", qos: .atMostOnce), limits)
        #expect(offer3 == .sendUnacknowledged)
        #expect(window.isEmpty && window.nextSeq == 1)
        window.deliver(delivery("a"), limits)
        let offer4 = window.deliver(delivery("b"), limits)
        #expect(offer4 == .queued(window.queue.last!))
        // A backed-up client: QoS 0 waits behind "b" and leaves with it.
        let zero = window.offer(delivery("y", qos: .atMostOnce), deliverable: false, connected: true, limits)
        #expect(zero == .queued(window.queue.last!))
        let sentTopics3 = window.pump(limits)
        #expect(sentTopics3.isEmpty)
        _ = window.acknowledge(window.inflight[0].packetID, .awaitingPubAck)
        let sentTopics4 = window.pump(limits)
        #expect(sentTopics4 == ["b", "y"])
        #expect(window.queue.isEmpty && window.inflight.count == 1)
    }

    @Test func anOfflineSessionDropsQoS0UnlessQueueQoS0MessagesAndKeepsQoS1() {
        var window = OutboundWindow()
        let zero = delivery("z", qos: .atMostOnce)
        let offer5 = window.offer(zero, deliverable: false, connected: false, .bounds())
        #expect(offer5 == .refused(nil))
        #expect(window.isEmpty)
        guard case .queued = window.offer(zero, deliverable: false, connected: false, .bounds(queueQoS0: true)),
            case .queued = window.offer(delivery("a"), deliverable: false, connected: false, .bounds(window: 5))
        else {
            Issue.record("should wait for the client")
            return
        }
        #expect(window.queue.map(\.seq) == [1, 2] && window.inflight.isEmpty)
    }

    @Test func inflightBytesAdmitOneMoreWhileBelowTheBound() {
        // Mosquitto's rule: 0 < 100, the first goes; 60 < 100, the second; 120, the third waits.
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 20, inflightBytes: 100)
        let offer6 = window.deliver(delivery("1", bytes: 60), limits)
        #expect(offer6 == .send(packetID: 1))
        let offer7 = window.deliver(delivery("2", bytes: 60), limits)
        #expect(offer7 == .send(packetID: 2))
        guard case .queued = window.deliver(delivery("3", bytes: 60), limits) else {
            Issue.record("the third should wait")
            return
        }
        #expect(window.inflightPayloadBytes == 120)
        _ = window.acknowledge(1, .awaitingPubAck)
        let sentTopics5 = window.pump(limits)
        #expect(sentTopics5 == ["3"])

        // A message larger than the bound still goes, alone; the next waits for it.
        var alone = OutboundWindow()
        let offer8 = alone.deliver(delivery("big", bytes: 500), limits)
        #expect(offer8 == .send(packetID: 1))
        #expect(!alone.hasRoomInFlight(limits))
        guard case .queued = alone.deliver(delivery("small", bytes: 1), limits) else {
            Issue.record("small should wait")
            return
        }
        _ = alone.acknowledge(1, .awaitingPubAck)
        let sentTopics6 = alone.pump(limits)
        #expect(sentTopics6 == ["small"])
        // 0 is no bound, and the count window still applies with a bytes bound.
        #expect(alone.hasRoomInFlight(.bounds(window: 2)))
        #expect(!alone.hasRoomInFlight(.bounds(window: 1, inflightBytes: 1_000_000)))
    }

    @Test func theQueueTakesMessagesUpToItsCountAndDropsTheRest() {
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 0, queuedMessages: 2)
        for topic in ["a", "b"] {
            guard case .queued = window.deliver(delivery(topic, bytes: 1_000_000), limits) else {
                Issue.record("\(topic) should wait")
                return
            }
        }
        let offer9 = window.deliver(delivery("c", bytes: 1), limits)
        #expect(offer9 == .refused(.queueFull))
        #expect(window.queue.map(\.message.topic) == ["a", "b"] && window.nextSeq == 3)
        // 0 is no bound.
        var long = OutboundWindow()
        for index in 0..<5000 { long.deliver(delivery("\(index)"), .bounds(window: 0)) }
        #expect(long.queue.count == 5000)
    }

    @Test func theQueueTakesMessagesUpToItsBytesIncludingTheNewOne() {
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 0, queuedBytes: 10)
        let offer10 = window.deliver(delivery("big", bytes: 11), limits)
        #expect(offer10 == .refused(.queueFull))
        guard case .queued = window.deliver(delivery("4", bytes: 4), limits) else {
            Issue.record("4 bytes should wait")
            return
        }
        let offer11 = window.deliver(delivery("7", bytes: 7), limits)
        #expect(offer11 == .refused(.queueFull))
        guard case .queued = window.deliver(delivery("6", bytes: 6), limits) else {
            Issue.record("6 more bytes should wait: 10 in all")
            return
        }
        #expect(window.queuedBytes == 10)
        // Either bound refuses.
        let both = OutboundLimits.bounds(window: 0, queuedMessages: 5, queuedBytes: 10)
        let offer12 = window.deliver(delivery("1", bytes: 1), both)
        #expect(offer12 == .refused(.queueFull))
        // Messages leaving give their bytes back.
        let sentTopics7 = window.pump(.bounds(window: 5))
        #expect(sentTopics7 == ["4", "6"])
        #expect(window.queuedBytes == 0)
    }

    @Test func packetIdentifiersSkipOnesInFlightAndWrapFrom65535To1() {
        var window = OutboundWindow()
        window.lastPacketID = 65533
        let limits = OutboundLimits.bounds()
        let offer13 = window.deliver(delivery("a"), limits)
        #expect(offer13 == .send(packetID: 65534))
        let offer14 = window.deliver(delivery("b"), limits)
        #expect(offer14 == .send(packetID: 65535))
        let offer15 = window.deliver(delivery("c"), limits)
        #expect(offer15 == .send(packetID: 1))
        _ = window.acknowledge(65535, .awaitingPubAck)
        window.lastPacketID = 65533
        // 65534 and 1 are still in flight; 65535 is free again.
        let packetID1 = window.nextPacketID()
        #expect(packetID1 == 65535)
        let packetID2 = window.nextPacketID()
        #expect(packetID2 == 2)
    }

    @Test func queuedBytesAndTheLastPacketIdentifierShareAWordWithoutTouchingEachOther() {
        var window = OutboundWindow()
        window.lastPacketID = 65535
        window.restoreQueued(delivery("big", bytes: 70_000))
        #expect(window.lastPacketID == 65535 && window.queuedBytes == 70_000)
        window.lastPacketID = 1
        #expect(window.queuedBytes == 70_000)
        _ = window.next(.bounds())
        #expect(window.queuedBytes == 0 && window.lastPacketID == 2)
        #expect(MemoryLayout<OutboundWindow>.size == 32)
    }

    @Test func qos2MovesFromPubRecToPubCompAndOnlyItsStateEndsIt() throws {
        var window = OutboundWindow()
        window.deliver(delivery("two", qos: .exactlyOnce), .bounds())
        #expect(window.inflight.map(\.state) == [.awaitingPubRec])
        let ended2 = window.acknowledge(1, .awaitingPubAck)
        #expect(ended2 == nil)  // a PUBACK for a QoS 2 message
        let ended3 = window.acknowledge(1, .awaitingPubComp)
        #expect(ended3 == nil)  // PUBCOMP before PUBREC
        let known1 = window.received(pubRec: 2)
        #expect(!known1)
        let known2 = window.received(pubRec: 1)
        #expect(known2)
        #expect(window.inflight.map(\.state) == [.awaitingPubComp])
        let known3 = window.received(pubRec: 1)
        #expect(!known3)  // a second PUBREC
        let ended4 = window.acknowledge(1, .awaitingPubComp)
        #expect(try #require(ended4).delivery.message.topic == "two")
        #expect(window.isEmpty)
        // A refusing PUBREC ends the flow in its PUBREC state.
        window.deliver(delivery("refused", qos: .exactlyOnce), .bounds())
        let ended5 = window.acknowledge(2, .awaitingPubRec)
        #expect(ended5?.delivery.message.topic == "refused")
    }

    @Test func aReconnectingClientGetsItsUnacknowledgedMessagesAgainInSendOrder() throws {
        var window = OutboundWindow()
        let limits = OutboundLimits.bounds(window: 3)
        for (topic, qos) in [("a", QoS.exactlyOnce), ("b", .atLeastOnce), ("c", .exactlyOnce), ("d", .atLeastOnce)] {
            window.deliver(delivery(topic, qos: qos), limits)
        }
        let known4 = window.received(pubRec: 1)
        #expect(known4)
        let resend = window.resend()
        #expect(resend.count == 3)
        #expect(resend.first == .pubRel(packetID: 1))
        guard case .publish(let b, 2) = resend[1], case .publish(let c, 3) = resend[2] else {
            Issue.record("b and c should be published again with their identifiers: \(resend)")
            return
        }
        #expect(b.message.topic == "b" && c.message.topic == "c")
        // What waits is not resent: it was never sent.
        #expect(window.queue.map(\.message.topic) == ["d"])
        #expect(window.deliveries.map(\.message.topic) == ["a", "b", "c", "d"])
    }

    @Test func sentNumbersANewMessageAndKeepsTheSeqOfAQueuedOne() {
        var window = OutboundWindow()
        window.nextSeq = 41
        window.sent(delivery("new"), packetID: 9)
        #expect(window.inflight.last?.delivery.seq == 41 && window.nextSeq == 42)
        var queued = delivery("old")
        queued.seq = 7
        window.sent(queued, packetID: 10)
        #expect(window.inflight.last?.delivery.seq == 7 && window.nextSeq == 42)
        #expect(window.inflight.map(\.packetID) == [9, 10])
    }
}
