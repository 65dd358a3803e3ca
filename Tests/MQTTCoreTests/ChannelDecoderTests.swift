import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import MQTTCore

@Suite("Channel decoder and encoder")
struct ChannelDecoderTests {
    /// Representative packets of every type for a version.
    static func representative(_ version: ProtocolVersion) -> [Packet] {
        var properties = Properties()
        properties.userProperties = [UserProperty("k", "v")]
        properties.reasonString = "why"
        properties.subscriptionIdentifiers = [3]
        properties.topicAlias = 2
        let p = version == .v5 ? properties : .none
        let big = ByteBuffer(repeating: 0x5A, count: 300)  // two-byte remaining length
        var packets: [Packet] = [
            .connect(
                ConnectPacket(protocolVersion: version, clientIdentifier: "verifier", username: "u", password: [1])
            ),
            .connAck(ConnAckPacket(sessionPresent: version >= .v3_1_1, reasonCode: .success)),
            .publish(PublishPacket(topic: "a/b", payload: payload("hello"), properties: p.filtered(for: .publish))),
            .publish(
                PublishPacket(
                    topic: "a/b",
                    payload: big,
                    qos: .exactlyOnce,
                    retain: true,
                    dup: true,
                    packetIdentifier: 9
                )
            ),
            .pubAck(PubAckPacket(packetIdentifier: 1)),
            .pubRec(PubAckPacket(packetIdentifier: 2)),
            .pubRel(PubAckPacket(packetIdentifier: 3)),
            .pubComp(PubAckPacket(packetIdentifier: 4)),
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 5,
                    subscriptions: [TopicSubscription(filter: "a/+", options: SubscriptionOptions(qos: .atLeastOnce))],
                    properties: p.filtered(for: .subscribe)
                )
            ),
            .subAck(SubAckPacket(packetIdentifier: 5, reasonCodes: [.grantedQoS1])),
            .unsubscribe(UnsubscribePacket(packetIdentifier: 6, filters: ["a/+"])),
            .unsubAck(UnsubAckPacket(packetIdentifier: 6, reasonCodes: version == .v5 ? [.success] : [])),
            .pingReq,
            .pingResp,
            .disconnect(DisconnectPacket()),
        ]
        if version == .v5 {
            packets.append(
                .pubAck(
                    PubAckPacket(
                        packetIdentifier: 7,
                        reasonCode: .noMatchingSubscribers,
                        properties: p.filtered(for: .pubAck)
                    )
                )
            )
            packets.append(
                .disconnect(DisconnectPacket(reasonCode: .serverShuttingDown, properties: p.filtered(for: .disconnect)))
            )
            packets.append(.auth(AuthPacket(reasonCode: .continueAuthentication, properties: p.filtered(for: .auth))))
        }
        return packets
    }

    @Test(arguments: allVersions)
    func verifierDripFeedsEveryPacketType(version: ProtocolVersion) throws {
        let pairs = Self.representative(version).map { packet in (encode(packet, version), [packet]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            MQTTPacketDecoder(version: version)
        }
    }

    @Test(arguments: allVersions)
    func decoderLearnsTheVersionFromConnect(version: ProtocolVersion) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MQTTPacketDecoder()))
        defer { _ = try? channel.finish() }
        var input = ByteBuffer()
        let connect = Packet.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c"))
        MQTTCodec.encode(connect, version: version, into: &input)
        // SUBSCRIBE has a property length in 5.0 only: it decodes only with the learned version.
        let subscribe = Packet.subscribe(
            SubscribePacket(
                packetIdentifier: 1,
                subscriptions: [TopicSubscription(filter: "x", options: SubscriptionOptions(qos: .atMostOnce))]
            )
        )
        MQTTCodec.encode(subscribe, version: version, into: &input)
        try channel.writeInbound(input)
        #expect(try channel.readInbound(as: Packet.self) == connect)
        #expect(try channel.readInbound(as: Packet.self) == subscribe)
    }

    @Test func decoderRejectsAnythingBeforeConnect() {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MQTTPacketDecoder()))
        defer { _ = try? channel.finish() }
        do {
            try channel.writeInbound(buffer([0xC0, 0]))
            Issue.record("no error")
        } catch let error as MQTTError {
            #expect(error.code == .protocolError)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func decoderRejectsOversizePacketFromItsHeader() {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(MQTTPacketDecoder(version: .v5, maximumPacketSize: 100))
        )
        defer { _ = try? channel.finish() }
        do {
            // Only the fixed header of a 16 KB packet arrives.
            try channel.writeInbound(buffer([0x30, 0x80, 0x80, 0x01]))
            Issue.record("no error")
        } catch let error as MQTTError {
            #expect(error.code == .packetTooLarge)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test(arguments: allVersions)
    func encoderWritesWhatTheDecoderReads(version: ProtocolVersion) throws {
        let channel = EmbeddedChannel(handlers: [
            ByteToMessageHandler(MQTTPacketDecoder(version: version)),
            MessageToByteHandler(MQTTPacketEncoder(version: version)),
        ])
        defer { _ = try? channel.finish() }
        for packet in Self.representative(version) {
            try channel.writeOutbound(packet)
            let bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
            try channel.writeInbound(bytes)
            #expect(try channel.readInbound(as: Packet.self) == packet)
        }
    }
}
