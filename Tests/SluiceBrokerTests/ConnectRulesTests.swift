import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The CONNECT rules that need no other connection: each refusal with its reason code, the client
// identifier the broker admits, and the keep-alive and CONNACK limits it announces.

@Suite struct ConnectRulesTests {
    func identity(
        _ packet: ConnectPacket,
        listener: Int = 0,
        _ configure: (inout BrokerSettings) -> Void = { _ in }
    ) -> Result<ConnectIdentity, ConnectRefusal> {
        var settings = BrokerSettings()
        configure(&settings)
        var broker = Broker(settings: settings)
        return Result { () throws(ConnectRefusal) in try broker.connectIdentity(packet, listener: listener) }
    }

    func refusal(_ result: Result<ConnectIdentity, ConnectRefusal>) -> ReasonCode? {
        if case .failure(let refusal) = result { refusal.reason } else { nil }
    }

    func will(qos: QoS = .atMostOnce, retain: Bool = false, payload: String = "w") -> Will {
        Will(topic: "w", payload: ByteBuffer(string: payload), qos: qos, retain: retain)
    }

    @Test func eachRefusalCarriesItsReasonCode() {
        var enhanced = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")
        enhanced.properties.authenticationMethod = "SCRAM-SHA-1"
        #expect(refusal(identity(enhanced)) == .badAuthenticationMethod)
        let retained = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", will: will(retain: true))
        #expect(refusal(identity(retained) { $0.retainAvailable = false }) == .retainNotSupported)
        let large = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", will: will(payload: "12345"))
        #expect(refusal(identity(large) { $0.messageSizeLimit = 4 }) == .packetTooLarge)
        let large311 = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", will: will(payload: "12345"))
        #expect(refusal(identity(large311) { $0.messageSizeLimit = 4 }) == .notAuthorized)
        let qos2 = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", will: will(qos: .exactlyOnce))
        #expect(refusal(identity(qos2) { $0.maxQoS = 1 }) == .qosNotSupported)
        let noID311 = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "", cleanStart: false)
        #expect(refusal(identity(noID311)) == .clientIdentifierNotValid)
        let noID31 = ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "")
        #expect(refusal(identity(noID31)) == .clientIdentifierNotValid)
        let noUsername = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")
        #expect(refusal(identity(noUsername) { $0.listenersUsingUsernameAsClientID = [0] }) == .notAuthorized)
    }

    @Test func anEmptyIdentifierIsAssignedAndTheUsernameCanReplaceIt() throws {
        let empty = ConnectPacket(protocolVersion: .v5, clientIdentifier: "")
        let assigned = try identity(empty).get()
        #expect(assigned.clientID.hasPrefix("auto-") && assigned.assigned == assigned.clientID)
        var named = empty
        named.username = "alice"
        let byUser = try identity(named) { $0.listenersUsingUsernameAsClientID = [0] }.get()
        #expect(byUser == ConnectIdentity(clientID: "alice", assigned: "alice", will: nil))
    }

    @Test func theWillIsMountedUnderTheListenersPrefix() throws {
        let packet = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", will: will())
        let admitted = try identity(packet, listener: 1) { $0.listenerMountPoints = [1: "site/"] }.get()
        #expect(admitted.will?.topic == "site/w")
    }

    @Test func maxKeepaliveLowersOrSetsTheKeepAlive() {
        var settings = BrokerSettings()
        #expect(settings.keepAlive(asked: 0) == (0, nil))
        settings.maxKeepalive = 60
        #expect(settings.keepAlive(asked: 30) == (30, nil))
        #expect(settings.keepAlive(asked: 90) == (60, 60))
        #expect(settings.keepAlive(asked: 0) == (60, 60))
    }

    @Test func aConnackThatDoesNotFitTheClientIsNotSent() {
        var small = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")
        small.properties.maximumPacketSize = 8
        let properties = BrokerSettings().connAckProperties(assigned: "auto-0123456789", serverKeepAlive: nil)
        #expect(!Broker.connAck(with: properties, fits: small))
        small.properties.maximumPacketSize = nil
        #expect(Broker.connAck(with: properties, fits: small))
    }
}
