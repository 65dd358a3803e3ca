import MQTTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceServer

/// Connections hand their packets and their close to the broker host at the end of the loop turn.
@Suite("Broker host hand-off (EmbeddedChannel)")
struct HandOverTests {
    /// A PUBLISH and a DISCONNECT read in the turn the socket closes reach the broker before the close:
    /// the message is routed, and the will is not published.
    @Test func packetsReadInTheTurnOfTheCloseReachTheBrokerBeforeIt() throws {
        let broker = EmbeddedBroker()
        let watcher = try broker.client(.v5)
        _ = try watcher.connect("watcher")
        try watcher.send(TestClient.subscribe(1, "t/#", .atMostOnce), TestClient.subscribe(2, "will/#", .atMostOnce))
        #expect(try watcher.received().map(\.type) == [.subAck, .subAck])

        let client = try broker.client(.v5)
        let will = Will(topic: "will/gone", payload: ByteBuffer(string: "bye"), qos: .atMostOnce, retain: false)
        try client.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "leaver", will: will)))
        #expect(try client.received().map(\.type) == [.connAck])

        // One turn: the last reads, then the socket closes; the loop runs only after.
        for packet in [TestClient.publish("t/last", "last", .atMostOnce), .disconnect(DisconnectPacket())] {
            var bytes = ByteBuffer()
            MQTTCodec.encode(packet, version: .v5, into: &bytes)
            try client.channel.writeInbound(bytes)
        }
        try client.channel.close().wait()
        broker.loop.run()

        #expect(try watcher.received() == [TestClient.publish("t/last", "last", .atMostOnce)])
        #expect(broker.host.connectedClients == 1)
    }
}
