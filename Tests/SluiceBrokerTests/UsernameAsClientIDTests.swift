import MQTTCore
import Testing

@testable import SluiceBroker

// `use_username_as_clientid` (per listener, as Mosquitto): the username replaces the client id, so
// sessions and takeovers go by user; without a username the CONNECT is refused as not authorised.

@Suite struct UsernameAsClientIDTests {
    /// Listener 1 uses the username as client id; listener 0 does not.
    let h = Harness { $0.listenersUsingUsernameAsClientID = [1] }

    @discardableResult
    func connect(
        _ id: UInt64,
        _ clientID: String,
        username: String?,
        listener: Int = 1,
        version: ProtocolVersion = .v5,
        clean: Bool = true
    ) -> [Seen] {
        let packet = ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientID,
            cleanStart: clean,
            username: username
        )
        return h.completingTakeover(
            h.broker.connect(ConnectionID(id), packet, listener: listener, now: h.now).map(Seen.init)
        )
    }

    @Test func theUsernameIsTheClientID() {
        connect(1, "sent-id", username: "alice")
        #expect(h.broker.clientID(of: ConnectionID(1)) == "alice")
        // Another listener keeps the id the client sent.
        connect(2, "sent-id", username: "alice", listener: 0)
        #expect(h.broker.clientID(of: ConnectionID(2)) == "sent-id")
        #expect(h.broker.isConnected(ConnectionID(1)))
    }

    @Test(arguments: [ProtocolVersion.v3_1_1, .v5])
    func noUsernameIsRefusedAsNotAuthorised(version: ProtocolVersion) {
        for (id, username) in [(UInt64(1), String?.none), (2, "")] {
            let seen = connect(id, "x", username: username, version: version)
            #expect(seen.packets(to: id) == [.connAck(ConnAckPacket(reasonCode: .notAuthorized))])
            #expect(seen.closes(id) == .some(nil))
        }
    }

    @Test func aSecondConnectionOfTheSameUserTakesTheFirstOver() {
        connect(1, "device-1", username: "alice")
        let seen = connect(2, "device-2", username: "alice")
        #expect(seen.contains(.takeOver(ConnectionID(1), DisconnectPacket(reasonCode: .sessionTakenOver))))
        #expect(h.broker.clientID(of: ConnectionID(2)) == "alice")
        #expect(!h.broker.isConnected(ConnectionID(1)))
        // A different user with the same sent id is a different client: no takeover.
        let other = connect(3, "device-2", username: "bob")
        #expect(!other.contains { if case .takeOver = $0 { true } else { false } })
        #expect(h.broker.isConnected(ConnectionID(2)) && h.broker.isConnected(ConnectionID(3)))
    }

    @Test func thePersistentSessionIsTheUsers() {
        connect(1, "first", username: "alice", version: .v3_1_1, clean: false)
        h.subscribe(1, "t/#", qos: .atLeastOnce)
        h.closed(1)
        connect(2, "plain", username: nil, listener: 0)
        h.publish(2, "t/x", "queued", qos: .atLeastOnce, packetID: 1)
        #expect(h.broker.queuedMessageCount(clientID: "alice") == 1)
        let seen = connect(3, "second", username: "alice", version: .v3_1_1, clean: false)
        guard case .connAck(let ack)? = seen.packets(to: 3).first else { return #expect(Bool(false)) }
        #expect(ack.sessionPresent)
        #expect(seen.publishes(to: 3).map(\.text) == ["queued"])
    }

    @Test func anAssignedIDIsTheUsername() {
        let seen = connect(1, "", username: "alice")
        guard case .connAck(let ack)? = seen.packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.reasonCode == .success)
        #expect(ack.properties.assignedClientIdentifier == "alice")
    }
}
