import NIOCore
import Testing

@testable import MQTTCore

@Suite("Client session")
struct ClientSessionTests {
    typealias Session = MQTTClientSession<ContinuousClock.Instant>
    let t0 = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { t0.advanced(by: .seconds(seconds)) }

    func message(_ qos: QoS, _ text: String = "m") -> PublishPacket {
        PublishPacket(topic: "t", payload: ByteBuffer(string: text), qos: qos)
    }

    /// A session connected with `connAck`; `cleanStart` false asks the server to keep it.
    func online(
        _ configuration: Session.Configuration = .init(),
        version: ProtocolVersion = .v3_1_1,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 0,
        connAck: ConnAckPacket = ConnAckPacket()
    ) throws -> Session {
        var session = Session(configuration: configuration)
        let connect = ConnectPacket(
            protocolVersion: version,
            clientIdentifier: "c",
            cleanStart: cleanStart,
            keepAlive: keepAlive
        )
        #expect(try session.connect(connect, now: t0) == .connect(connect))
        #expect(session.state == .connecting)
        let reaction = try session.received(.connAck(connAck), now: t0)
        #expect(reaction.reply == nil)
        guard case .connected = reaction.event else {
            Issue.record("not connected: \(String(describing: reaction.event))")
            return session
        }
        #expect(session.state == .connected)
        return session
    }

    func expectError(
        _ expected: MQTTClientSessionError,
        code: ReasonCode,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws(MQTTClientSessionError) -> Void
    ) {
        do {
            try body()
            Issue.record("no error, expected \(expected)", sourceLocation: sourceLocation)
        } catch {
            #expect(error == expected, sourceLocation: sourceLocation)
            #expect(error.reasonCode == code, sourceLocation: sourceLocation)
        }
    }

    // MARK: Packet identifiers

    @Test func aCallerKeptMessageIsResentWithDupAndItsOldIdentifier() throws {
        // A bridge keeps its messages in its queue, not in the session: after a session-present
        // CONNACK it resends them itself, each with the identifier it had [MQTT-4.4.0-1].
        var session = try online(
            .init(maximumInFlight: 3),
            cleanStart: false,
            connAck: ConnAckPacket(sessionPresent: true)
        )
        let resent = try session.publish(message(.atLeastOnce), resending: 7, now: t0)
        #expect(resent.packetIdentifier == 7 && resent.dup)
        // Taken now (in flight): a fresh identifier without DUP; 0 is never an identifier.
        let again = try session.publish(message(.atLeastOnce), resending: 7, now: t0)
        #expect(again.packetIdentifier == 1 && !again.dup)
        let zero = try session.publish(message(.atLeastOnce), resending: 0, now: t0)
        #expect(zero.packetIdentifier == 2 && !zero.dup)
        #expect(session.inFlightCount == 3)
        expectError(.sendWindowFull(3), code: .receiveMaximumExceeded) { () throws(MQTTClientSessionError) in
            _ = try session.publish(message(.atLeastOnce), resending: 9, now: t0)
        }
        // The resent identifier is in flight like any other: its PUBACK completes it.
        let reaction = try session.received(.pubAck(PubAckPacket(packetIdentifier: 7)), now: t0)
        #expect(reaction.event == .published(packetIdentifier: 7, reasonCode: .success))
        #expect(session.inFlightCount == 2)
        // Fresh identifiers skip a resent one: 3 is taken by a resend, so 4 follows 2.
        #expect(try session.publish(message(.atLeastOnce), resending: 3, now: t0).packetIdentifier == 3)
        _ = try session.received(.pubAck(PubAckPacket(packetIdentifier: 1)), now: t0)
        #expect(try session.publish(message(.atLeastOnce), now: t0).packetIdentifier == 4)
    }

    @Test func resendingBeforeConnectingIsRefused() {
        var session = Session()
        expectError(.notConnected, code: .implementationSpecificError) { () throws(MQTTClientSessionError) in
            _ = try session.publish(message(.atLeastOnce), resending: 5, now: t0)
        }
    }

    @Test func deliveriesAwaitingTheCallersAcknowledgementAreCounted() throws {
        var session = try online(.init(acknowledgesOnDelivery: false))
        var inbound = message(.atLeastOnce)
        inbound.packetIdentifier = 4
        #expect(try session.received(.publish(inbound), now: t0).reply == nil)
        #expect(session.unacknowledgedDeliveryCount == 1)
        #expect(session.acknowledge(4, now: t0) == .pubAck(PubAckPacket(packetIdentifier: 4)))
        #expect(session.unacknowledgedDeliveryCount == 0)
    }

    @Test func packetIdentifiersStartAtOneAndSkipThoseInFlight() throws {
        var session = try online()
        let first = try session.publish(message(.atLeastOnce), now: t0)
        #expect(first.packetIdentifier == 1)
        let subscribe = try session.subscribe(
            [TopicSubscription(filter: "a", options: .init(qos: .atLeastOnce))],
            now: t0
        )
        #expect(subscribe.packetIdentifier == 2)
        // Go round the whole space with one message at a time: 1 and 2 stay taken, 0 is never given.
        var seen: Set<UInt16> = []
        for _ in 0..<70_000 {
            let id = try session.publish(message(.atLeastOnce), now: t0).packetIdentifier!
            seen.insert(id)
            _ = try session.received(.pubAck(PubAckPacket(packetIdentifier: id)), now: t0)
        }
        #expect(!seen.contains(0))
        #expect(!seen.contains(1))
        #expect(!seen.contains(2))
        #expect(seen.count == 65_533)
    }

    @Test func qos0IsNeitherNumberedNorTracked() throws {
        var session = try online(Session.Configuration(maximumInFlight: 1))
        _ = try session.publish(message(.atLeastOnce), now: t0)
        var qos0 = message(.atMostOnce)
        qos0.packetIdentifier = 9
        qos0.dup = true
        let sent = try session.publish(qos0, now: t0)
        #expect(sent.packetIdentifier == nil)
        #expect(!sent.dup)
        #expect(session.inFlightCount == 1)
    }

    // MARK: Sender

    @Test func qos1PublishCompletesOnPubAck() throws {
        var session = try online()
        let sent = try session.publish(message(.atLeastOnce), now: t0)
        #expect(session.inFlightCount == 1)
        let reaction = try session.received(.pubAck(PubAckPacket(packetIdentifier: sent.packetIdentifier!)), now: t0)
        #expect(reaction == .init(event: .published(packetIdentifier: 1, reasonCode: .success)))
        #expect(session.inFlightCount == 0)
    }

    @Test func refusingPubAckIsReportedWithItsCode() throws {
        var session = try online(version: .v5)
        _ = try session.publish(message(.atLeastOnce), now: t0)
        let reaction = try session.received(
            .pubAck(PubAckPacket(packetIdentifier: 1, reasonCode: .quotaExceeded)),
            now: t0
        )
        #expect(reaction.event == .published(packetIdentifier: 1, reasonCode: .quotaExceeded))
        #expect(session.inFlightCount == 0)
    }

    @Test func qos2PublishGoesThroughPubRecPubRelPubComp() throws {
        var session = try online()
        _ = try session.publish(message(.exactlyOnce), now: t0)
        let rec = try session.received(.pubRec(PubAckPacket(packetIdentifier: 1)), now: t0)
        #expect(rec == .init(reply: .pubRel(PubAckPacket(packetIdentifier: 1))))
        // A resent PUBREC gets the PUBREL again.
        #expect(try session.received(.pubRec(PubAckPacket(packetIdentifier: 1)), now: t0) == rec)
        #expect(session.inFlightCount == 1)
        let comp = try session.received(.pubComp(PubAckPacket(packetIdentifier: 1)), now: t0)
        #expect(comp == .init(event: .published(packetIdentifier: 1, reasonCode: .success)))
        #expect(session.inFlightCount == 0)
    }

    @Test func refusingPubRecEndsTheFlowWithoutPubRel() throws {
        var session = try online(version: .v5)
        _ = try session.publish(message(.exactlyOnce), now: t0)
        let rec = try session.received(.pubRec(PubAckPacket(packetIdentifier: 1, reasonCode: .notAuthorized)), now: t0)
        #expect(rec == .init(event: .published(packetIdentifier: 1, reasonCode: .notAuthorized)))
        #expect(session.inFlightCount == 0)
    }

    @Test func windowIsTheSmallerOfOursAndTheServersReceiveMaximum() throws {
        var session = try online(Session.Configuration(maximumInFlight: 2))
        _ = try session.publish(message(.atLeastOnce), now: t0)
        _ = try session.publish(message(.exactlyOnce), now: t0)
        #expect(!session.canPublish)
        expectError(.sendWindowFull(2), code: .receiveMaximumExceeded) { () throws(MQTTClientSessionError) in
            _ = try session.publish(message(.atLeastOnce), now: t0)
        }
        _ = try session.publish(message(.atMostOnce), now: t0)  // QoS 0 is outside the window
        _ = try session.received(.pubAck(PubAckPacket(packetIdentifier: 1)), now: t0)
        #expect(session.canPublish)

        var properties = Properties()
        properties.receiveMaximum = 1
        var limited = try online(version: .v5, connAck: ConnAckPacket(properties: properties))
        #expect(limited.sendWindow == 1)
        _ = try limited.publish(message(.atLeastOnce), now: t0)
        #expect(!limited.canPublish)
    }

    @Test func persistentSessionResendsWithDupInFirstSendOrder() throws {
        var session = try online(cleanStart: false)
        let a = try session.publish(message(.atLeastOnce, "a"), now: t0)
        let b = try session.publish(message(.exactlyOnce, "b"), now: t0)
        let c = try session.publish(message(.exactlyOnce, "c"), now: t0)
        _ = try session.received(.pubRec(PubAckPacket(packetIdentifier: b.packetIdentifier!)), now: t0)
        let lost = session.connectionClosed()
        #expect(lost.publishes == [])  // kept for the next connection
        #expect(session.state == .disconnected)
        #expect(!session.canPublish)

        let connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: false)
        _ = try session.connect(connect, now: at(1))
        let reaction = try session.received(.connAck(ConnAckPacket(sessionPresent: true)), now: at(1))
        var dupA = a
        dupA.dup = true
        var dupC = c
        dupC.dup = true
        #expect(
            reaction.event
                == .connected(
                    ConnAckPacket(sessionPresent: true),
                    resend: [.publish(dupA), .pubRel(PubAckPacket(packetIdentifier: 2)), .publish(dupC)]
                )
        )
        // The flows go on where they were.
        #expect(
            try session.received(.pubComp(PubAckPacket(packetIdentifier: 2)), now: at(1)).event
                == .published(packetIdentifier: 2, reasonCode: .success)
        )
        #expect(try session.publish(message(.atLeastOnce), now: at(1)).packetIdentifier == 4)
    }

    @Test func serverWithoutTheSessionGetsUnacknowledgedMessagesAsNew() throws {
        var session = try online(cleanStart: false)
        let a = try session.publish(message(.atLeastOnce, "a"), now: t0)
        let b = try session.publish(message(.exactlyOnce, "b"), now: t0)
        _ = try session.received(.pubRec(PubAckPacket(packetIdentifier: b.packetIdentifier!)), now: t0)
        _ = try session.received(
            .publish(PublishPacket(topic: "in", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 7)),
            now: t0
        )
        _ = session.connectionClosed()
        _ = try session.connect(
            ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: false),
            now: t0
        )
        let reaction = try session.received(.connAck(ConnAckPacket(sessionPresent: false)), now: t0)
        #expect(reaction.event == .connected(ConnAckPacket(), resend: [.publish(a)]))
        #expect(session.inFlightCount == 1)
        // Inbound QoS 2 state went with the session: id 7 is a new message now.
        let again = try session.received(
            .publish(PublishPacket(topic: "in", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 7)),
            now: t0
        )
        #expect(again.event != nil)
    }

    @Test func cleanSessionDropsInFlightAndReportsIt() throws {
        var session = try online()
        _ = try session.publish(message(.atLeastOnce), now: t0)
        _ = try session.publish(message(.exactlyOnce), now: t0)
        _ = try session.subscribe([TopicSubscription(filter: "x", options: .init(qos: .atMostOnce))], now: t0)
        _ = try session.unsubscribe(["y", "z"], now: t0)
        let lost = session.connectionClosed()
        #expect(lost == .init(subscribes: [["x"]], unsubscribes: [["y", "z"]], publishes: [1, 2]))
        _ = try session.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c"), now: t0)
        #expect(
            try session.received(.connAck(ConnAckPacket()), now: t0).event == .connected(ConnAckPacket(), resend: [])
        )
        #expect(session.inFlightCount == 0)
        #expect(session.pendingRequestCount == 0)
    }

    // MARK: Receiver

    @Test func inboundQoS1IsAcknowledgedAndDeliveredEachTime() throws {
        var session = try online()
        let publish = PublishPacket(
            topic: "t",
            payload: ByteBuffer(string: "x"),
            qos: .atLeastOnce,
            packetIdentifier: 5
        )
        let expected = Session.Reaction(reply: .pubAck(PubAckPacket(packetIdentifier: 5)), event: .message(publish))
        #expect(try session.received(.publish(publish), now: t0) == expected)
        #expect(try session.received(.publish(publish), now: t0) == expected)  // at least once
        let qos0 = PublishPacket(topic: "t", payload: ByteBuffer(string: "y"))
        #expect(try session.received(.publish(qos0), now: t0) == .init(event: .message(qos0)))
    }

    @Test func inboundQoS2IsDeliveredOnceUntilPubRel() throws {
        var session = try online()
        let publish = PublishPacket(
            topic: "t",
            payload: ByteBuffer(string: "x"),
            qos: .exactlyOnce,
            packetIdentifier: 5
        )
        let pubRec = Packet.pubRec(PubAckPacket(packetIdentifier: 5))
        #expect(try session.received(.publish(publish), now: t0) == .init(reply: pubRec, event: .message(publish)))
        var dup = publish
        dup.dup = true
        #expect(try session.received(.publish(dup), now: t0) == .init(reply: pubRec))
        #expect(
            try session.received(.pubRel(PubAckPacket(packetIdentifier: 5)), now: t0)
                == .init(reply: .pubComp(PubAckPacket(packetIdentifier: 5)))
        )
        // After the PUBREL the identifier is free: a new message with it is delivered.
        #expect(try session.received(.publish(publish), now: t0).event == .message(publish))
    }

    @Test func pubRelForAnUnknownIdentifierIsAnsweredAnyway() throws {
        var v311 = try online()
        #expect(
            try v311.received(.pubRel(PubAckPacket(packetIdentifier: 9)), now: t0)
                == .init(reply: .pubComp(PubAckPacket(packetIdentifier: 9)))
        )
        var v5 = try online(version: .v5)
        #expect(
            try v5.received(.pubRel(PubAckPacket(packetIdentifier: 9)), now: t0)
                == .init(reply: .pubComp(PubAckPacket(packetIdentifier: 9, reasonCode: .packetIdentifierNotFound)))
        )
    }

    @Test func manualAcknowledgementWaitsForTheCaller() throws {
        var session = try online(Session.Configuration(acknowledgesOnDelivery: false))
        let q1 = PublishPacket(topic: "t", payload: ByteBuffer(), qos: .atLeastOnce, packetIdentifier: 3)
        let q2 = PublishPacket(topic: "t", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 4)
        #expect(try session.received(.publish(q1), now: t0) == .init(event: .message(q1)))
        #expect(try session.received(.publish(q2), now: t0) == .init(event: .message(q2)))
        // Resent before the caller kept them: neither delivered again nor acknowledged yet.
        #expect(try session.received(.publish(q1), now: t0) == .init())
        #expect(try session.received(.publish(q2), now: t0) == .init())
        #expect(session.acknowledge(3, now: t0) == .pubAck(PubAckPacket(packetIdentifier: 3)))
        #expect(session.acknowledge(3, now: t0) == nil)
        #expect(session.acknowledge(4, now: t0) == .pubRec(PubAckPacket(packetIdentifier: 4)))
        // An acknowledgement owed on a closed connection is not sent on the next one.
        #expect(try session.received(.publish(q1), now: t0) == .init(event: .message(q1)))
        _ = session.connectionClosed()
        _ = try session.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c"), now: t0)
        _ = try session.received(.connAck(ConnAckPacket()), now: t0)
        #expect(session.acknowledge(3, now: t0) == nil)
    }

    // MARK: Keep-alive

    @Test func pingWhenIdleAndCloseWhenThePongIsOverdue() throws {
        var session = try online(keepAlive: 10)
        #expect(session.nextDeadline == at(10))
        #expect(try session.tick(now: at(9)) == nil)
        // Sending counts as activity: the ping moves.
        _ = try session.publish(message(.atMostOnce), now: at(5))
        #expect(try session.tick(now: at(10)) == nil)
        #expect(try session.tick(now: at(15)) == .pingReq)
        #expect(try session.tick(now: at(16)) == nil)  // one ping at a time
        #expect(session.nextDeadline == at(25))
        _ = try session.received(.pingResp, now: at(17))
        #expect(try session.tick(now: at(24)) == nil)
        #expect(try session.tick(now: at(25)) == .pingReq)
        #expect(try session.tick(now: at(34)) == nil)
        expectError(.keepAliveTimeout, code: .keepAliveTimeout) { () throws(MQTTClientSessionError) in
            _ = try session.tick(now: at(35))
        }
    }

    @Test func pingTimeoutAndServerKeepAliveAreHonoured() throws {
        var short = try online(
            Session.Configuration(keepAliveCheck: .pingResponse(timeout: .seconds(2))),
            keepAlive: 10
        )
        #expect(try short.tick(now: at(10)) == .pingReq)
        expectError(.keepAliveTimeout, code: .keepAliveTimeout) { () throws(MQTTClientSessionError) in
            _ = try short.tick(now: at(12))
        }
        var properties = Properties()
        properties.serverKeepAlive = 3
        var server = try online(version: .v5, keepAlive: 60, connAck: ConnAckPacket(properties: properties))
        #expect(try server.tick(now: at(3)) == .pingReq)
        var none = try online(keepAlive: 0)
        #expect(try none.tick(now: at(1_000)) == nil)
        #expect(none.nextDeadline == nil)
    }

    @Test func silenceCheckPingsALinkThatOnlySendsAndClosesAfterOneAndAHalfKeepAlives() throws {
        var session = try online(Session.Configuration(keepAliveCheck: .silence), keepAlive: 10)
        // Sending every second keeps the spec's check quiet, not this one: 10 s without a word is a ping.
        for second in 1...9 { _ = try session.publish(message(.atMostOnce), now: at(second)) }
        #expect(session.nextDeadline == at(10))
        #expect(try session.tick(now: at(9)) == nil)
        #expect(try session.tick(now: at(10)) == .pingReq)
        #expect(try session.tick(now: at(12)) == nil)  // one ping at a time
        #expect(session.nextDeadline == at(15))
        // Anything from the server counts as a sign of life, not only a PINGRESP; the ping stays out.
        let sent = try session.publish(message(.atLeastOnce), now: at(12))
        _ = try session.received(.pubAck(PubAckPacket(packetIdentifier: sent.packetIdentifier!)), now: at(13))
        #expect(try session.tick(now: at(27)) == nil)
        #expect(session.nextDeadline == at(28))
        expectError(.keepAliveTimeout, code: .keepAliveTimeout) { () throws(MQTTClientSessionError) in
            _ = try session.tick(now: at(28))
        }
    }

    @Test func silenceCheckPingsAgainOnceAnsweredAndWhenNothingWasSent() throws {
        var session = try online(Session.Configuration(keepAliveCheck: .silence), keepAlive: 10)
        #expect(try session.tick(now: at(10)) == .pingReq)
        _ = try session.received(.pingResp, now: at(11))
        #expect(session.nextDeadline == at(20))  // sent at 10: idle again at 20
        #expect(try session.tick(now: at(19)) == nil)
        #expect(try session.tick(now: at(20)) == .pingReq)
        // A violation from the server is still a sign of life.
        expectError(.unknownPacketIdentifier(.pubComp, 9), code: .packetIdentifierNotFound) {
            () throws(MQTTClientSessionError) in
            _ = try session.received(.pubComp(PubAckPacket(packetIdentifier: 9)), now: at(29))
        }
        #expect(try session.tick(now: at(36)) == nil)
        expectError(.keepAliveTimeout, code: .keepAliveTimeout) { () throws(MQTTClientSessionError) in
            _ = try session.tick(now: at(44))
        }
    }

    // MARK: SUBSCRIBE and UNSUBSCRIBE

    @Test func subAckIsMatchedToItsRequestFilterByFilter() throws {
        var session = try online()
        let first = try session.subscribe(
            [
                TopicSubscription(filter: "a/#", options: .init(qos: .exactlyOnce)),
                TopicSubscription(filter: "b", options: .init(qos: .atLeastOnce)),
            ],
            now: t0
        )
        let second = try session.subscribe([TopicSubscription(filter: "c", options: .init(qos: .atMostOnce))], now: t0)
        #expect(first.packetIdentifier != second.packetIdentifier)
        #expect(
            try session.received(
                .subAck(SubAckPacket(packetIdentifier: second.packetIdentifier, reasonCodes: [.grantedQoS0])),
                now: t0
            ).event
                == .subscribed(
                    packetIdentifier: second.packetIdentifier,
                    [FilterResult(filter: "c", reasonCode: .grantedQoS0)]
                )
        )
        #expect(
            try session.received(
                .subAck(
                    SubAckPacket(
                        packetIdentifier: first.packetIdentifier,
                        reasonCodes: [.grantedQoS1, .unspecifiedError]
                    )
                ),
                now: t0
            ).event
                == .subscribed(
                    packetIdentifier: first.packetIdentifier,
                    [
                        FilterResult(filter: "a/#", reasonCode: .grantedQoS1),
                        FilterResult(filter: "b", reasonCode: .unspecifiedError),
                    ]
                )
        )
        #expect(session.pendingRequestCount == 0)
    }

    @Test func unsubAckHasCodesInMQTT5AndSuccessBefore() throws {
        var v311 = try online()
        let request = try v311.unsubscribe(["a", "b"], now: t0)
        #expect(
            try v311.received(.unsubAck(UnsubAckPacket(packetIdentifier: request.packetIdentifier)), now: t0).event
                == .unsubscribed(
                    packetIdentifier: request.packetIdentifier,
                    [FilterResult(filter: "a", reasonCode: .success), FilterResult(filter: "b", reasonCode: .success)]
                )
        )
        var v5 = try online(version: .v5)
        let request5 = try v5.unsubscribe(["a"], now: t0)
        #expect(
            try v5.received(
                .unsubAck(
                    UnsubAckPacket(packetIdentifier: request5.packetIdentifier, reasonCodes: [.noSubscriptionExisted])
                ),
                now: t0
            ).event
                == .unsubscribed(
                    packetIdentifier: request5.packetIdentifier,
                    [FilterResult(filter: "a", reasonCode: .noSubscriptionExisted)]
                )
        )
        let again = try v5.unsubscribe(["a", "b"], now: t0)
        expectError(.reasonCodeCount(.unsubAck, again.packetIdentifier, expected: 2, got: 1), code: .protocolError) {
            () throws(MQTTClientSessionError) in
            _ = try v5.received(
                .unsubAck(UnsubAckPacket(packetIdentifier: again.packetIdentifier, reasonCodes: [.success])),
                now: t0
            )
        }
    }

    @Test func subAckWithTheWrongNumberOfCodesIsAProtocolErrorAndChangesNothing() throws {
        var session = try online()
        let request = try session.subscribe([TopicSubscription(filter: "a", options: .init(qos: .atMostOnce))], now: t0)
        expectError(.reasonCodeCount(.subAck, request.packetIdentifier, expected: 1, got: 2), code: .protocolError) {
            () throws(MQTTClientSessionError) in
            _ = try session.received(
                .subAck(SubAckPacket(packetIdentifier: request.packetIdentifier, reasonCodes: [.success, .success])),
                now: t0
            )
        }
        #expect(session.pendingRequestCount == 1)
    }

    // MARK: The server's violations and the caller's mistakes

    @Test func unknownPacketIdentifiersAreTypedErrors() throws {
        var session = try online()
        for packet: Packet in [
            .pubAck(PubAckPacket(packetIdentifier: 42)), .pubRec(PubAckPacket(packetIdentifier: 42)),
            .pubComp(PubAckPacket(packetIdentifier: 42)),
            .subAck(SubAckPacket(packetIdentifier: 42, reasonCodes: [.success])),
            .unsubAck(UnsubAckPacket(packetIdentifier: 42)),
        ] {
            expectError(.unknownPacketIdentifier(packet.type, 42), code: .packetIdentifierNotFound) {
                () throws(MQTTClientSessionError) in
                _ = try session.received(packet, now: t0)
            }
        }
    }

    @Test func acknowledgementsOfTheWrongKindAreProtocolErrors() throws {
        var session = try online()
        let q1 = try session.publish(message(.atLeastOnce), now: t0).packetIdentifier!
        let q2 = try session.publish(message(.exactlyOnce), now: t0).packetIdentifier!
        expectError(.wrongAcknowledgement(.pubRec, q1), code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try session.received(.pubRec(PubAckPacket(packetIdentifier: q1)), now: t0)
        }
        expectError(.wrongAcknowledgement(.pubComp, q1), code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try session.received(.pubComp(PubAckPacket(packetIdentifier: q1)), now: t0)
        }
        expectError(.wrongAcknowledgement(.pubAck, q2), code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try session.received(.pubAck(PubAckPacket(packetIdentifier: q2)), now: t0)
        }
        expectError(.wrongAcknowledgement(.pubComp, q2), code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try session.received(.pubComp(PubAckPacket(packetIdentifier: q2)), now: t0)
        }
        // Nothing changed: both flows still complete normally.
        #expect(session.inFlightCount == 2)
        #expect(try session.received(.pubAck(PubAckPacket(packetIdentifier: q1)), now: t0).event != nil)
        _ = try session.received(.pubRec(PubAckPacket(packetIdentifier: q2)), now: t0)
        #expect(try session.received(.pubComp(PubAckPacket(packetIdentifier: q2)), now: t0).event != nil)
    }

    @Test func packetsAServerNeverSendsAreProtocolErrors() throws {
        var session = try online()
        for packet: Packet in [
            .connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "x")), .connAck(ConnAckPacket()),
            .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [])),
            .unsubscribe(UnsubscribePacket(packetIdentifier: 1, filters: ["a"])), .pingReq, .auth(AuthPacket()),
        ] {
            expectError(.unexpectedPacket(packet.type, .connected), code: .protocolError) {
                () throws(MQTTClientSessionError) in
                _ = try session.received(packet, now: t0)
            }
        }
    }

    @Test func anythingButConnAckFirstIsAProtocolError() throws {
        var session = Session()
        expectError(.unexpectedPacket(.connAck, .disconnected), code: .protocolError) {
            () throws(MQTTClientSessionError) in
            _ = try session.received(.connAck(ConnAckPacket()), now: t0)
        }
        _ = try session.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c"), now: t0)
        let publish = PublishPacket(topic: "t", payload: ByteBuffer())
        expectError(.unexpectedPacket(.publish, .connecting), code: .protocolError) {
            () throws(MQTTClientSessionError) in
            _ = try session.received(.publish(publish), now: t0)
        }
        expectError(.sessionPresentOnCleanStart, code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try session.received(.connAck(ConnAckPacket(sessionPresent: true)), now: t0)
        }
        #expect(session.state == .connecting)
    }

    @Test func refusedConnAckAndDisconnectCloseTheSession() throws {
        var session = Session()
        _ = try session.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c"), now: t0)
        let refusal = ConnAckPacket(reasonCode: .notAuthorized)
        #expect(try session.received(.connAck(refusal), now: t0) == .init(event: .connectionRefused(refusal)))
        #expect(session.state == .closed)
        expectError(.notConnected, code: .implementationSpecificError) { () throws(MQTTClientSessionError) in
            _ = try session.publish(message(.atLeastOnce), now: t0)
        }

        var online = try online(version: .v5)
        let disconnect = DisconnectPacket(reasonCode: .serverShuttingDown)
        #expect(try online.received(.disconnect(disconnect), now: t0) == .init(event: .disconnected(disconnect)))
        expectError(.unexpectedPacket(.pingResp, .closed), code: .protocolError) { () throws(MQTTClientSessionError) in
            _ = try online.received(.pingResp, now: t0)
        }
        // A new connection may follow.
        _ = try online.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c"), now: t0)
        #expect(online.state == .connecting)
    }

    @Test func callersMistakesAreTypedErrors() throws {
        var session = try online()
        expectError(.notDisconnected, code: .implementationSpecificError) { () throws(MQTTClientSessionError) in
            _ = try session.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c"), now: t0)
        }
        expectError(.emptyRequest(.subscribe), code: .implementationSpecificError) {
            () throws(MQTTClientSessionError) in
            _ = try session.subscribe([], now: t0)
        }
        expectError(.emptyRequest(.unsubscribe), code: .implementationSpecificError) {
            () throws(MQTTClientSessionError) in
            _ = try session.unsubscribe([], now: t0)
        }
        #expect(
            MQTTClientSessionError.unknownPacketIdentifier(.pubAck, 7).description
                == "PUBACK for unknown packet identifier 7 (0x92 (packet identifier not found))"
        )
    }
}
