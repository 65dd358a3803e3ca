import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

/// `Broker.receive(_:from:now:into:)`: the owner's one buffer for every packet's actions.
@Suite struct ReceiveIntoTests {
    private func broker() -> Broker {
        var broker = Broker(settings: BrokerSettings())
        _ = broker.connect(ConnectionID(1), ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "sub"), now: 0)
        _ = broker.connect(ConnectionID(2), ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "pub"), now: 0)
        let subscribe = SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [.init(filter: "t/#", options: SubscriptionOptions(qos: .atLeastOnce))]
        )
        _ = broker.receive(.subscribe(subscribe), from: ConnectionID(1), now: 0)
        return broker
    }

    private func publish(_ id: UInt16) -> Packet {
        .publish(
            PublishPacket(topic: "t/a", payload: ByteBuffer(string: "\(id)"), qos: .atLeastOnce, packetIdentifier: id)
        )
    }

    @Test func itGivesTheActionsReceiveReturns() {
        var returning = broker()
        var filling = broker()
        var buffer: [BrokerAction] = []
        for id in UInt16(1)...3 {
            let returned = returning.receive(publish(id), from: ConnectionID(2), now: 0).map(Seen.init)
            filling.receive(publish(id), from: ConnectionID(2), now: 0, into: &buffer)
            #expect(buffer.map(Seen.init) == returned)
            #expect(returned.count == 2)  // the PUBLISH to the subscriber and the PUBACK to the publisher
        }
    }

    @Test func whatTheBufferHeldIsReplacedAndABurstsRoomIsNotKept() {
        var broker = broker()
        var buffer: [BrokerAction] = Array(
            repeating: .close(ConnectionID(9), nil),
            count: Broker.keptActionsCapacity + 1
        )
        broker.receive(publish(1), from: ConnectionID(2), now: 0, into: &buffer)
        #expect(buffer.map(Seen.init).allSatisfy { $0 != .close(ConnectionID(9), nil) })
        // The large buffer was dropped, not handed to the broker to fill next time: the next packet's
        // actions come in the broker's own (small) array.
        broker.receive(publish(2), from: ConnectionID(2), now: 0, into: &buffer)
        #expect(buffer.count == 2)
        #expect(buffer.capacity <= Broker.keptActionsCapacity)
    }
}
