import MQTTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceServer

/// The broker host queues what it sends over a loop turn and writes it once per connection.
@Suite("Broker host outbox (EmbeddedChannel)")
struct OutboxTests {
    /// Everything `client`'s handler wrote since the last read, as the writes it made.
    static func writes(_ client: TestClient) throws -> [ByteBuffer] {
        var chunks: [ByteBuffer] = []
        while let chunk = try client.channel.readOutbound(as: ByteBuffer.self) { chunks.append(chunk) }
        return chunks
    }

    static func decode(_ chunks: [ByteBuffer], _ version: ProtocolVersion) throws -> [Packet] {
        var bytes = ByteBuffer()
        for var chunk in chunks { bytes.writeBuffer(&chunk) }
        var packets: [Packet] = []
        while let packet = try MQTTCodec.decodePacket(from: &bytes, version: version) { packets.append(packet) }
        #expect(bytes.readableBytes == 0)
        return packets
    }

    @Test func twoPublishersReadInOneTurnReachTheSubscriberInOneWrite() throws {
        let broker = EmbeddedBroker()
        let subscriber = try broker.client(.v3_1_1)
        _ = try subscriber.connect("sub")
        try subscriber.send(TestClient.subscribe(1, "t/#", .atMostOnce))
        _ = try subscriber.received()
        let first = try broker.client(.v3_1_1)
        _ = try first.connect("p1")
        let second = try broker.client(.v3_1_1)
        _ = try second.connect("p2")

        // Both reads happen before the loop runs: one turn.
        for (client, payload) in [(first, "one"), (second, "two")] {
            var bytes = ByteBuffer()
            MQTTCodec.encode(TestClient.publish("t/x", payload, .atMostOnce), version: .v3_1_1, into: &bytes)
            try client.channel.writeInbound(bytes)
        }
        broker.loop.run()

        let chunks = try Self.writes(subscriber)
        #expect(chunks.count == 1, "one write for the turn, not one per publisher")
        #expect(
            try Self.decode(chunks, .v3_1_1) == [
                TestClient.publish("t/x", "one", .atMostOnce), TestClient.publish("t/x", "two", .atMostOnce),
            ]
        )
    }

    /// A PUBACK queued in the turn goes out before the DISCONNECT of a close decided later in it.
    @Test func queuedPacketsGoBeforeAClose() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("c")
        // A QoS 1 publish, then in a second read of the same turn a second CONNECT (a protocol violation).
        for packet in [
            TestClient.publish("t/x", "kept", .atLeastOnce, id: 9),
            .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")),
        ] {
            var bytes = ByteBuffer()
            MQTTCodec.encode(packet, version: .v5, into: &bytes)
            try client.channel.writeInbound(bytes)
        }
        let answer = try client.received()
        #expect(answer.first == .pubAck(PubAckPacket(packetIdentifier: 9)))
        #expect(answer.count == 2)
        guard case .disconnect(let disconnect)? = answer.last else {
            Issue.record("no DISCONNECT after the PUBACK: \(answer)")
            return
        }
        #expect(disconnect.reasonCode == .protocolError)
        #expect(!client.isOpen)
    }

    /// A connection closed in the turn takes its own queued packets with its close; the others queued
    /// before and after it in the turn still get theirs, and the next turn queues afresh.
    @Test func aCloseInTheTurnTakesOnlyItsOwnQueuedPackets() throws {
        let broker = EmbeddedBroker()
        var subscribers: [TestClient] = []
        for name in ["a", "b", "c"] {
            let subscriber = try broker.client(.v5)
            _ = try subscriber.connect(name)
            try subscriber.send(TestClient.subscribe(1, "t/#", .atMostOnce))
            _ = try subscriber.received()
            subscribers.append(subscriber)
        }
        let publisher = try broker.client(.v5)
        _ = try publisher.connect("p")
        let message = TestClient.publish("t/x", "one", .atMostOnce)
        // The publish, then in a second read of the same turn a second CONNECT from "b" (a protocol violation).
        let reconnect = Packet.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "b"))
        let reads: [(TestClient, Packet)] = [(publisher, message), (subscribers[1], reconnect)]
        for (client, packet) in reads {
            var bytes = ByteBuffer()
            MQTTCodec.encode(packet, version: .v5, into: &bytes)
            try client.channel.writeInbound(bytes)
        }
        broker.loop.run()

        #expect(try subscribers[1].received().map(\.type) == [.publish, .disconnect])
        #expect(!subscribers[1].isOpen)
        #expect(try Self.decode(Self.writes(subscribers[0]), .v5) == [message])
        #expect(try Self.decode(Self.writes(subscribers[2]), .v5) == [message])
        try publisher.send(message)
        #expect(try Self.decode(Self.writes(subscribers[0]), .v5) == [message])
        #expect(try Self.decode(Self.writes(subscribers[2]), .v5) == [message])
    }

    /// A buffer kept from a written turn serves the next one emptied: it carries that turn's bytes only.
    @Test func aKeptBufferCarriesOnlyTheNextTurnsBytes() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("c")
        let handler = try client.channel.pipeline.syncOperations.handler(type: MQTTConnectionHandler.self)
        let first = TestClient.publish("t/first", "one", .atMostOnce)
        let second = TestClient.publish("t/second", "two", .atMostOnce)
        var outbox = ConnectionOutbox()
        outbox.add(first, for: handler)
        var written = outbox.takeAll()
        #expect(try Self.decode(written.map(\.bytes), .v5) == [first])
        outbox.recycle(&written)
        #expect(written.isEmpty)

        outbox.add(second, for: handler)
        let next = outbox.takeAll()
        #expect(next.count == 1)
        #expect(try Self.decode(next.map(\.bytes), .v5) == [second])
    }

    /// A write that fails makes NIO read what the peer sent last and hand it on at once, in the middle
    /// of the host's turn-end writes: what the broker sends for it joins the next turn, none of it
    /// lost, and the writes under way carry on (here, before the fix, an exclusivity trap).
    @Test func packetsSentWhileTheTurnIsWrittenGoOutNext() throws {
        let broker = EmbeddedBroker()
        let late = TestClient.publish("t/late", "two", .atMostOnce)
        var subscribers: [TestClient] = []
        for name in ["a", "b"] {
            let subscriber = try broker.client(.v5)
            _ = try subscriber.connect(name)
            try subscriber.send(TestClient.subscribe(1, "t/#", .atMostOnce))
            _ = try subscriber.received()
            subscribers.append(subscriber)
        }
        var lateBytes = ByteBuffer()
        MQTTCodec.encode(late, version: .v5, into: &lateBytes)
        try subscribers[0].channel.pipeline.syncOperations.addHandler(ReadOnFirstWrite(lateBytes), position: .first)
        let publisher = try broker.client(.v5)
        _ = try publisher.connect("p")

        let first = TestClient.publish("t/first", "one", .atMostOnce)
        var bytes = ByteBuffer()
        MQTTCodec.encode(first, version: .v5, into: &bytes)
        try publisher.channel.writeInbound(bytes)
        broker.loop.run()

        for subscriber in subscribers {
            #expect(try Self.decode(Self.writes(subscriber), .v5) == [first, late])
        }
    }
}

/// Stands in for NIO's failed-write path: on the first write it passes `bytes` inbound and completes
/// the read, before the write goes on.
private final class ReadOnFirstWrite: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    private var bytes: ByteBuffer?

    init(_ bytes: ByteBuffer) { self.bytes = bytes }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let bytes {
            self.bytes = nil
            context.fireChannelRead(NIOAny(bytes))
            context.fireChannelReadComplete()
        }
        context.write(data, promise: promise)
    }
}
