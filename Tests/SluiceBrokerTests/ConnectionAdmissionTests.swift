import MQTTCore
import Testing

@testable import SluiceBroker

// A connection's way in: authentication by the owner, then a takeover, with what the client sends
// meanwhile kept and handled once it is admitted. First the machine alone, then through the broker.

@Suite struct ConnectionAdmissionTests {
    let connect = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")

    @Test func authenticationDecidesWhetherTheRulesAreApplied() {
        let admission = ConnectionAdmission(connect, listener: 2)
        #expect(admission.state == .awaitingAuthentication)
        #expect(admission.authenticated(.accept) == .applyRules)
        #expect(admission.authenticated(.refuse(.badUserNameOrPassword)) == .refuse(.badUserNameOrPassword))
        #expect(admission.listener == 2 && admission.packet == connect)
    }

    @Test func packetsAreKeptInOrderUntilTheBoundThenRefused() {
        var admission = ConnectionAdmission(connect, listener: 0)
        for id in 1...UInt16(ConnectionAdmission.maxBufferedPackets) {
            #expect(admission.received(.pubRel(PubAckPacket(packetIdentifier: id))) == .wait)
        }
        #expect(admission.buffered.first == .pubRel(PubAckPacket(packetIdentifier: 1)))
        #expect(admission.buffered.last == .pubRel(PubAckPacket(packetIdentifier: 1000)))
        #expect(admission.received(.pingReq) == .refuse(.serverBusy))
        #expect(admission.buffered.count == ConnectionAdmission.maxBufferedPackets)
    }

    @Test func aTakeoverWaitsForItsPreviousConnectionOnly() {
        let admission = ConnectionAdmission(connect, listener: 0, state: .awaitingTakeover(previous: ConnectionID(7)))
        #expect(admission.state == .awaitingTakeover(previous: ConnectionID(7)))
        #expect(admission.awaits(ConnectionID(7)) && !admission.awaits(ConnectionID(8)))
        #expect(admission.previousGone(ConnectionID(8)) == .wait)
        #expect(admission.previousGone(ConnectionID(7)) == .applyRules)
        #expect(admission.authenticated(.accept) == .wait, "authentication is over")
    }
}

@Suite struct BrokerAuthenticationTests {
    let subscribe = Packet.subscribe(
        SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [TopicSubscription(filter: "t", options: SubscriptionOptions(qos: .atMostOnce))]
        )
    )

    @discardableResult
    func authenticating(_ h: Harness, _ id: UInt64, _ clientID: String = "c") -> [Seen] {
        let packet = ConnectPacket(protocolVersion: .v5, clientIdentifier: clientID)
        return h.broker.connect(ConnectionID(id), packet, authenticate: true, now: h.now).map(Seen.init)
    }

    @discardableResult
    func authenticated(_ h: Harness, _ id: UInt64, _ decision: AuthenticationDecision) -> [Seen] {
        h.broker.authenticated(ConnectionID(id), decision, now: h.now).map(Seen.init)
    }

    @Test func theOwnerIsAskedAndAcceptanceAdmits() {
        let h = Harness()
        #expect(authenticating(h, 1) == [.authenticate(ConnectionID(1))])
        #expect(h.broker.awaitsAuthentication(ConnectionID(1)))
        #expect(!h.broker.isConnected(ConnectionID(1)))
        let seen = authenticated(h, 1, .accept)
        guard case .connAck(let ack)? = seen.packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.reasonCode == .success)
        #expect(h.broker.isConnected(ConnectionID(1)) && !h.broker.awaitsAuthentication(ConnectionID(1)))
    }

    @Test func theAskCarriesWhetherACertificateGaveTheUsername() {
        let h = Harness()
        let packet = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", username: "device-7")
        let seen = h.broker.connect(ConnectionID(1), packet, authenticate: true, identityVerified: true, now: h.now)
        #expect(seen.map(Seen.init) == [.authenticate(ConnectionID(1), identityVerified: true)])
        #expect(authenticating(h, 2, "d") == [.authenticate(ConnectionID(2), identityVerified: false)])
    }

    @Test func refusalSendsTheReasonAndCloses() {
        let h = Harness()
        authenticating(h, 1)
        let seen = authenticated(h, 1, .refuse(.badUserNameOrPassword))
        #expect(
            seen == [
                .send(
                    ConnectionID(1),
                    .connAck(ConnAckPacket(sessionPresent: false, reasonCode: .badUserNameOrPassword))
                ),
                .close(ConnectionID(1), nil),
            ]
        )
        #expect(!h.broker.isConnected(ConnectionID(1)) && h.broker.sessionCount == 0)
        #expect(authenticated(h, 1, .accept).isEmpty, "decided once")
    }

    @Test func packetsSentDuringAuthenticationAreHandledAfterTheConnackInOrder() {
        let h = Harness()
        h.connect(9, "pub")
        authenticating(h, 1)
        #expect(h.receive(subscribe, from: 1).isEmpty)
        #expect(h.receive(.pingReq, from: 1).isEmpty)
        // Not subscribed yet: the message published meanwhile is not for it.
        #expect(h.publish(9, "t", "early").publishes(to: 1).isEmpty)
        let packets = authenticated(h, 1, .accept).packets(to: 1)
        #expect(packets.count == 3)
        guard packets.count == 3 else { return }
        if case .connAck = packets[0] {} else { #expect(Bool(false), "CONNACK first: \(packets)") }
        if case .subAck = packets[1] {} else { #expect(Bool(false), "then the SUBACK: \(packets)") }
        #expect(packets[2] == .pingResp)
        #expect(h.publish(9, "t", "late").publishes(to: 1).map(\.text) == ["late"])
    }

    @Test func aDisconnectSentDuringAuthenticationEndsTheConnectionOnceAdmitted() {
        let h = Harness()
        authenticating(h, 1)
        h.receive(.disconnect(DisconnectPacket()), from: 1)
        let seen = authenticated(h, 1, .accept)
        #expect(seen.packets(to: 1).count == 1)
        #expect(seen.closes(1) == .some(nil))
        #expect(!h.broker.isConnected(ConnectionID(1)))
        #expect(h.broker.takeDepartures().map(\.reason) == [.clientDisconnect(.normalDisconnection)])
    }

    @Test func aFloodDuringAuthenticationCloses() {
        let h = Harness()
        authenticating(h, 1)
        for _ in 0..<ConnectionAdmission.maxBufferedPackets { #expect(h.receive(.pingReq, from: 1).isEmpty) }
        let seen = h.receive(.pingReq, from: 1)
        #expect(
            seen == [
                .send(ConnectionID(1), .connAck(ConnAckPacket(sessionPresent: false, reasonCode: .serverBusy))),
                .close(ConnectionID(1), nil),
            ]
        )
        #expect(authenticated(h, 1, .accept).isEmpty)
        #expect(!h.broker.isConnected(ConnectionID(1)))
    }

    @Test func aCloseDuringAuthenticationLeavesNothingBehind() {
        let h = Harness()
        authenticating(h, 1)
        h.receive(subscribe, from: 1)
        #expect(h.closed(1).isEmpty)
        #expect(!h.broker.awaitsAuthentication(ConnectionID(1)))
        #expect(authenticated(h, 1, .accept).isEmpty)
        #expect(h.broker.sessionCount == 0 && h.broker.subscriptionCount == 0)
        #expect(h.broker.takeDepartures().isEmpty, "it never connected")
    }

    @Test func anAuthenticatedClientTakesOverAfterThePreviousConnectionIsGone() {
        let h = Harness()
        h.connect(2, "c")
        authenticating(h, 3, "c")
        #expect(h.broker.isConnected(ConnectionID(2)), "authentication comes before the takeover")
        h.receive(subscribe, from: 3)
        let disconnect = DisconnectPacket(reasonCode: .sessionTakenOver)
        #expect(authenticated(h, 3, .accept) == [.takeOver(ConnectionID(2), disconnect)])
        #expect(h.broker.awaitsTakeover(ConnectionID(3)))
        h.receive(.pingReq, from: 3)
        let packets = h.closed(2).packets(to: 3)
        #expect(packets.count == 3)
        guard packets.count == 3 else { return }
        if case .connAck(let ack) = packets[0] { #expect(ack.reasonCode == .success) } else { #expect(Bool(false)) }
        if case .subAck = packets[1] {} else { #expect(Bool(false), "\(packets)") }
        #expect(packets[2] == .pingResp)
        #expect(h.broker.isConnected(ConnectionID(3)))
    }

    @Test func aRefusedClientNeverTakesOver() {
        let h = Harness()
        h.connect(2, "c")
        authenticating(h, 3, "c")
        authenticated(h, 3, .refuse(.notAuthorized))
        #expect(h.broker.isConnected(ConnectionID(2)))
        #expect(!h.broker.awaitsTakeover(ConnectionID(3)))
    }
}
