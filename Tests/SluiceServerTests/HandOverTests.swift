import MQTTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceServer

/// Connections hand their packets to the broker host when a read completes, and their close in a task.
@Suite("Broker host hand-off (EmbeddedChannel)")
struct HandOverTests {
    /// A PUBLISH and a DISCONNECT read just before the socket closes, with no read completion in between
    /// (NIO's path for a read that ends in an error), reach the broker before the close: the message is
    /// routed, and the will is not published.
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
            client.channel.pipeline.fireChannelRead(bytes)
        }
        try client.channel.close().wait()
        broker.loop.run()

        #expect(try watcher.received() == [TestClient.publish("t/last", "last", .atMostOnce)])
        #expect(broker.host.connectedClients == 1)
    }

    /// What a read hands over reaches the broker when the read completes, without a task of its own;
    /// what the broker sends still goes out at the turn's end.
    @Test func aReadReachesTheBrokerWhenItCompletes() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("reader")
        var bytes = ByteBuffer()
        MQTTCodec.encode(TestClient.publish("t/x", "now", .atLeastOnce, id: 3), version: .v5, into: &bytes)
        try client.channel.writeInbound(bytes)
        #expect(broker.host.stats.publishReceived == 1)
        #expect(try client.channel.readOutbound(as: ByteBuffer.self) == nil, "the PUBACK waits for the turn's end")
        broker.loop.run()
        #expect(try client.received() == [.pubAck(PubAckPacket(packetIdentifier: 3))])
    }
}
