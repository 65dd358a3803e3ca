import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

/// `@Indirect` keeps wills out of the per-client structs (issue 17, RSS per idle connection).
@Suite struct IndirectTests {
    private func will(_ topic: String) -> Will {
        Will(topic: topic, payload: ByteBuffer(string: "gone"), qos: .atLeastOnce, retain: false)
    }

    @Test func copiesAreIndependent() {
        var original = ClientConnection(
            clientID: "c",
            username: nil,
            version: .v5,
            listener: 0,
            keepAlive: 60,
            lastActivity: 0,
            receiveMaximum: 20,
            maximumPacketSize: 1 << 20,
            topicAliasMaximum: 0,
            will: will("a/will")
        )
        var copy = original
        copy.will?.topic = "changed"
        #expect(original.will?.topic == "a/will")
        #expect(copy.will?.topic == "changed")
        original.will = nil
        #expect(original.will == nil)
        #expect(copy.will?.payload == ByteBuffer(string: "gone"))
    }

    @Test func sessionDelayedWillRoundTrips() {
        var session = Session(protocolVersion: .v5, expiryInterval: 0)
        #expect(session.delayedWill == nil)
        let message = Message(topic: "t", payload: ByteBuffer(string: "w"), qos: .atMostOnce)
        session.delayedWill = (message, 42)
        #expect(session.delayedWill?.message == message)
        #expect(session.delayedWill?.dueAt == 42)
        session.delayedWill = nil
        #expect(session.delayedWill == nil)
    }

    /// The structs the broker keeps one of per client (dictionary slots) hold a will as one pointer.
    /// Budgets: 128 and 136 bytes now; an inline will would make them 184 and 224.
    @Test func perClientStructsStaySmall() {
        #expect(MemoryLayout<Indirect<Will>>.size == MemoryLayout<UnsafeRawPointer>.size)
        #expect(
            MemoryLayout<Indirect<(message: Message, dueAt: BrokerTime)>>.size == MemoryLayout<UnsafeRawPointer>.size
        )
        #expect(MemoryLayout<ClientConnection>.stride <= 160)
        #expect(MemoryLayout<Session>.stride <= 176)
    }
}
