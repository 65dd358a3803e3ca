import MQTTCore
import Testing

@testable import SluiceBroker

/// A takeover waits for the old connection to be read out and gone, so that a DISCONNECT its
/// client sent before reconnecting still cancels the will (issue 16 item 5).
@Suite struct TakeoverTests {
    let will = Will(topic: "wills/a", payload: ByteBuffer(string: "gone"), qos: .atMostOnce, retain: false)

    /// Connection 1 watches the will topic; connection 2 is client "a" with a will; connection 3
    /// sends a CONNECT for "a", handled directly (not through the harness, which completes takeovers).
    @discardableResult
    func takeoverPending(_ h: Harness, version: ProtocolVersion = .v5, clean: Bool = true) -> [Seen] {
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        h.connect(2, "a", version: version, will: will)
        let packet = ConnectPacket(protocolVersion: version, clientIdentifier: "a", cleanStart: clean)
        return h.broker.connect(ConnectionID(3), packet, now: h.now).map(Seen.init)
    }

    @Test(arguments: [ProtocolVersion.v3_1_1, .v5])
    func theOldConnectionIsReadBeforeItCloses(version: ProtocolVersion) {
        let h = Harness()
        let seen = takeoverPending(h, version: version)
        let disconnect: DisconnectPacket? = version >= .v5 ? DisconnectPacket(reasonCode: .sessionTakenOver) : nil
        #expect(seen == [.takeOver(ConnectionID(2), disconnect)])
        #expect(!h.broker.isConnected(ConnectionID(3)))
        #expect(h.broker.isConnected(ConnectionID(2)))
    }

    @Test func aDisconnectReadAfterTheNewConnectCancelsTheWill() {
        let h = Harness()
        takeoverPending(h)
        let seen = h.receive(.disconnect(DisconnectPacket()), from: 2)
        #expect(seen.publishes(to: 1).isEmpty)
        #expect(seen.packets(to: 3).count == 1)
        guard case .connAck(let ack)? = seen.packets(to: 3).first else { return #expect(Bool(false)) }
        #expect(ack.reasonCode == .success)
        #expect(h.broker.isConnected(ConnectionID(3)))
        #expect(h.closed(2).isEmpty)
    }

    @Test func aDisconnectAskingForTheWillSendsIt() {
        let h = Harness()
        takeoverPending(h)
        let seen = h.receive(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)), from: 2)
        #expect(seen.publishes(to: 1).map(\.text) == ["gone"])
        #expect(h.broker.isConnected(ConnectionID(3)))
    }

    @Test func anOldConnectionThatSentNothingMoreYieldsItsWillBeforeTheNewConnack() {
        let h = Harness()
        takeoverPending(h)
        let seen = h.closed(2)
        #expect(seen.publishes(to: 1).map(\.text) == ["gone"])
        let willIndex = seen.firstIndex { if case .send(ConnectionID(1), .publish) = $0 { true } else { false } }
        let connAckIndex = seen.firstIndex { if case .send(ConnectionID(3), .connAck) = $0 { true } else { false } }
        #expect(willIndex != nil && connAckIndex != nil && willIndex! < connAckIndex!)
        #expect(h.broker.isConnected(ConnectionID(3)))
    }

    @Test func packetsOfTheWaitingConnectionAreHandledOnceItIsAdmitted() {
        let h = Harness()
        takeoverPending(h)
        #expect(h.subscribe(3, "x/#").isEmpty)
        #expect(h.receive(.pingReq, from: 3).isEmpty)
        let packets = h.closed(2).packets(to: 3)
        #expect(packets.count == 3)
        guard packets.count == 3, case .connAck = packets[0], case .subAck = packets[1] else {
            return #expect(Bool(false))
        }
        #expect(packets[2] == .pingResp)
    }

    @Test func aWaitingConnectionThatClosesIsForgotten() {
        let h = Harness()
        takeoverPending(h)
        #expect(h.closed(3).isEmpty)
        #expect(h.closed(2).packets(to: 3).isEmpty)
        #expect(!h.broker.isConnected(ConnectionID(3)))
        #expect(h.broker.connectedClientCount == 1)
    }

    @Test func aSecondWaiterTakesOverFromTheFirstOnceItIsAdmitted() {
        let h = Harness()
        takeoverPending(h)
        let second = h.broker.connect(
            ConnectionID(4),
            ConnectPacket(protocolVersion: .v5, clientIdentifier: "a"),
            now: h.now
        )
        #expect(second.isEmpty)  // the old connection was already asked to close
        let seen = h.closed(2)
        #expect(seen.packets(to: 3).count == 1)
        #expect(seen.contains(.takeOver(ConnectionID(3), DisconnectPacket(reasonCode: .sessionTakenOver))))
        #expect(!h.broker.isConnected(ConnectionID(4)))
        #expect(h.closed(3).packets(to: 4).count == 1)
        #expect(h.broker.isConnected(ConnectionID(4)))
    }

    @Test func aFloodWhileWaitingIsRefused() {
        let h = Harness()
        takeoverPending(h)
        var last: [Seen] = []
        for _ in 0...1000 { last = h.receive(.pingReq, from: 3) }
        #expect(last.closes(3) == .some(nil))
        #expect(last.packets(to: 3) == [.connAck(ConnAckPacket(reasonCode: .serverBusy))])
        #expect(h.closed(2).packets(to: 3).isEmpty)
    }

    @Test func aCleanStartAfterTakeoverSendsTheDelayedWillOfTheEndedSession() {
        let h = Harness()
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        var properties = Properties()
        properties.sessionExpiryInterval = 60
        var delayed = will
        delayed.properties.willDelayInterval = 30
        h.connect(2, "a", will: delayed, properties: properties)
        // The new connection starts clean: the old session ends, and its will goes out [MQTT-3.1.3-9].
        #expect(h.connect(3, "a", clean: true).publishes(to: 1).map(\.text) == ["gone"])
        #expect(h.advance(seconds: 40).publishes(to: 1).isEmpty)
    }

    @Test func resumingTheSessionAfterTakeoverCancelsTheDelayedWill() {
        let h = Harness()
        h.connect(1, "watcher")
        h.subscribe(1, "wills/#", qos: .atMostOnce)
        var properties = Properties()
        properties.sessionExpiryInterval = 60
        var delayed = will
        delayed.properties.willDelayInterval = 30
        h.connect(2, "a", will: delayed, properties: properties)
        #expect(h.connect(3, "a", clean: false, properties: properties).publishes(to: 1).isEmpty)
        #expect(h.advance(seconds: 40).publishes(to: 1).isEmpty)
    }
}
