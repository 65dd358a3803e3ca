import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// A client's PUBLISH that is refused after its topic was accepted (`message_size_limit`, the ACL):
// the QoS flow completes with the reason code the client's version can carry, nothing is routed, and
// the drop is counted.

/// Publishing is refused on `refused`; everything else is allowed.
private struct RefusingPolicy: AccessPolicy {
    var refused: String
    func mayPublish(clientID: String, username: String?, topic: String) -> Bool { topic != refused }
    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool { true }
    func mayReceive(clientID: String, username: String?, topic: String) -> Bool { true }
}

@Suite struct InboundPublishTests {
    @Test(arguments: [ProtocolVersion.v5, .v3_1_1])
    func aPayloadOverTheSizeLimitIsAcknowledgedAndNotRouted(version: ProtocolVersion) {
        let h = Harness { $0.messageSizeLimit = 4 }
        h.connect(1, "sub")
        h.connect(2, "pub", version: version)
        h.subscribe(1, "t", qos: .atLeastOnce)
        let seen = h.publish(2, "t", "12345", qos: .atLeastOnce, packetID: 7)
        #expect(seen.publishes(to: 1).isEmpty)
        let code: ReasonCode = version >= .v5 ? .packetTooLarge : .success
        #expect(seen.packets(to: 2) == [.pubAck(PubAckPacket(packetIdentifier: 7, reasonCode: code))])
        #expect(h.broker.stats.dropped[.payloadTooLarge] == 1)
        // At the limit it goes through.
        #expect(h.publish(2, "t", "1234", qos: .atLeastOnce, packetID: 8).publishes(to: 1).count == 1)
    }

    @Test func anOversizedQoS2PublishRefusedWithAFailureFreesItsPacketIdentifier() {
        let h = Harness { $0.messageSizeLimit = 4 }
        h.connect(1, "sub")
        h.connect(2, "pub")
        h.subscribe(1, "t", qos: .exactlyOnce)
        let refused = h.publish(2, "t", "12345", qos: .exactlyOnce, packetID: 9)
        #expect(refused.packets(to: 2) == [.pubRec(PubAckPacket(packetIdentifier: 9, reasonCode: .packetTooLarge))])
        // No PUBREL follows a failed PUBREC: the same identifier starts a new message, delivered.
        let next = h.publish(2, "t", "ok", qos: .exactlyOnce, packetID: 9)
        #expect(next.packets(to: 2) == [.pubRec(PubAckPacket(packetIdentifier: 9))])
        #expect(next.publishes(to: 1).map(\.text) == ["ok"])
    }

    @Test(arguments: [ProtocolVersion.v5, .v3_1_1])
    func aPublishTheACLRefusesIsAcknowledgedAndNotRouted(version: ProtocolVersion) {
        let h = Harness()
        h.broker.accessPolicy = RefusingPolicy(refused: "secret")
        h.connect(1, "sub")
        h.connect(2, "pub", version: version)
        h.subscribe(1, "#", qos: .atLeastOnce)
        let seen = h.publish(2, "secret", "x", qos: .atLeastOnce, packetID: 3)
        #expect(seen.publishes(to: 1).isEmpty)
        let code: ReasonCode = version >= .v5 ? .notAuthorized : .success
        #expect(seen.packets(to: 2) == [.pubAck(PubAckPacket(packetIdentifier: 3, reasonCode: code))])
        #expect(h.broker.stats.dropped[.notAuthorized] == 1)
        #expect(h.publish(2, "open", "y", qos: .atLeastOnce, packetID: 4).publishes(to: 1).map(\.text) == ["y"])
    }
}
