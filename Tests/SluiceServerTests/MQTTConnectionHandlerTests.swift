import Logging
import MQTTCore
import NIOCore
import NIOEmbedded
import SluiceBroker
import Testing

@testable import SluiceServer

/// One broker host and its clients on one `EmbeddedEventLoop`: the real `MQTTConnectionHandler` in
/// an `EmbeddedChannel` per client, the real `BrokerHost` and broker core, no socket. Time moves
/// only when a test advances it.
final class EmbeddedBroker {
    let loop = EmbeddedEventLoop()
    let host: BrokerHost
    let maximumPacketSize: Int
    static let connectTimeout = TimeAmount.seconds(10)

    init(settings: BrokerSettings = BrokerSettings(), maximumPacketSize: Int = 1024) {
        var settings = settings
        settings.maximumPacketSize = maximumPacketSize
        self.maximumPacketSize = maximumPacketSize
        host = BrokerHost(
            loop: loop,
            settings: settings,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
    }

    func client(_ version: ProtocolVersion) throws -> TestClient {
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(MQTTConnectionHandler(listenerContext()))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return TestClient(channel: channel, loop: loop, version: version)
    }

    /// What the gateway shares among the connections of one plain TCP listener.
    func listenerContext() -> MQTTListenerContext {
        MQTTListenerContext(
            host: host,
            listener: 0,
            useIdentityAsUsername: false,
            useSubjectAsUsername: false,
            maximumPacketSize: maximumPacketSize,
            connectTimeout: Self.connectTimeout,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
    }

    /// Lets time pass on the loop (timers fire) and runs the broker's periodic tick, as the gateway does.
    func advance(by amount: TimeAmount) {
        loop.advanceTime(by: amount)
        host.tick()
        loop.run()
    }
}

/// The client side of an embedded connection: encodes what it sends and decodes what the handler
/// wrote (the reverse codec), so a test reads as a protocol trace.
struct TestClient {
    let channel: EmbeddedChannel
    let loop: EmbeddedEventLoop
    var version: ProtocolVersion

    /// Sends packets in one read and lets the broker loop run.
    func send(_ packets: Packet...) throws {
        var bytes = ByteBuffer()
        for packet in packets { MQTTCodec.encode(packet, version: version, into: &bytes) }
        try sendBytes(bytes)
    }

    func sendBytes(_ bytes: ByteBuffer) throws {
        try channel.writeInbound(bytes)
        loop.run()
    }

    func sendBytes(_ bytes: [UInt8]) throws {
        try sendBytes(ByteBuffer(bytes: bytes))
    }

    /// Everything the handler wrote since the last call, decoded as `version`.
    func received() throws -> [Packet] {
        loop.run()
        var bytes = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&chunk) }
        var packets: [Packet] = []
        while let packet = try MQTTCodec.decodePacket(from: &bytes, version: version) { packets.append(packet) }
        #expect(bytes.readableBytes == 0, "a partial packet was written")
        return packets
    }

    func connect(
        _ clientID: String,
        keepAlive: UInt16 = 60,
        cleanStart: Bool = true
    ) throws -> ConnAckPacket? {
        try send(
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: clientID,
                    cleanStart: cleanStart,
                    keepAlive: keepAlive
                )
            )
        )
        guard case .connAck(let ack)? = try received().first else { return nil }
        return ack
    }

    var isOpen: Bool { channel.isActive }

    static func subscribe(_ id: UInt16, _ filter: String, _ qos: QoS) -> Packet {
        .subscribe(
            SubscribePacket(
                packetIdentifier: id,
                subscriptions: [TopicSubscription(filter: filter, options: SubscriptionOptions(qos: qos))]
            )
        )
    }

    static func publish(_ topic: String, _ payload: String, _ qos: QoS, id: UInt16? = nil) -> Packet {
        .publish(PublishPacket(topic: topic, payload: ByteBuffer(string: payload), qos: qos, packetIdentifier: id))
    }
}

@Suite("MQTT connection handler with the broker host (EmbeddedChannel)")
struct MQTTConnectionHandlerTests {
    static let versions: [ProtocolVersion] = [.v3_1, .v3_1_1, .v5]

    @Test(arguments: versions)
    func connectIsAnsweredWithConnAck(version: ProtocolVersion) throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(version)
        let ack = try #require(try client.connect("c1"))
        #expect(ack.reasonCode == .success)
        #expect(ack.sessionPresent == false)
        #expect(client.isOpen)
        #expect(broker.host.connectedClients == 1)
        try client.send(.pingReq)
        #expect(try client.received() == [.pingResp])
    }

    @Test func connAckOfVersion5AnnouncesTheMaximumPacketSize() throws {
        let broker = EmbeddedBroker(maximumPacketSize: 2000)
        let client = try broker.client(.v5)
        let ack = try #require(try client.connect("c5"))
        #expect(ack.properties.maximumPacketSize == 2000)
    }

    @Test func unsupportedProtocolLevelGetsConnAck1InOldFramingAndClose() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v3_1_1)
        // CONNECT "MQTT" level 9, clean session, keep alive 60, client id "x".
        try client.sendBytes([0x10, 13, 0, 4, 0x4D, 0x51, 0x54, 0x54, 9, 0x02, 0, 60, 0, 1, 0x78])
        #expect(try client.received() == [.connAck(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))])
        #expect(!client.isOpen)
        #expect(broker.host.connectedClients == 0)
    }

    @Test(arguments: [QoS.atMostOnce, .atLeastOnce, .exactlyOnce], [ProtocolVersion.v3_1_1, .v5])
    func publishReachesASubscriberWithItsQoSFlow(qos: QoS, version: ProtocolVersion) throws {
        let broker = EmbeddedBroker()
        let subscriber = try broker.client(version)
        _ = try subscriber.connect("sub")
        try subscriber.send(TestClient.subscribe(1, "t/#", .exactlyOnce))
        let subAck = try subscriber.received()
        #expect(subAck.count == 1)
        guard case .subAck(let granted)? = subAck.first else {
            Issue.record("no SUBACK: \(subAck)")
            return
        }
        #expect(granted.reasonCodes == [.grantedQoS2])

        let publisher = try broker.client(version)
        _ = try publisher.connect("pub")
        let id: UInt16? = qos == .atMostOnce ? nil : 7
        try publisher.send(TestClient.publish("t/1", "hello", qos, id: id))

        // The publisher's side of the flow.
        switch qos {
        case .atMostOnce:
            #expect(try publisher.received() == [])
        case .atLeastOnce:
            #expect(try publisher.received() == [.pubAck(PubAckPacket(packetIdentifier: 7))])
        case .exactlyOnce:
            #expect(try publisher.received() == [.pubRec(PubAckPacket(packetIdentifier: 7))])
            try publisher.send(.pubRel(PubAckPacket(packetIdentifier: 7)))
            #expect(try publisher.received() == [.pubComp(PubAckPacket(packetIdentifier: 7))])
        }

        // The subscriber's side: the message once, at the publish QoS, then its acknowledgements.
        let delivered = try subscriber.received()
        #expect(delivered.count == 1)
        guard case .publish(let message)? = delivered.first else {
            Issue.record("no PUBLISH: \(delivered)")
            return
        }
        #expect(message.topic == "t/1")
        #expect(message.payload == ByteBuffer(string: "hello"))
        #expect(message.qos == qos)
        switch qos {
        case .atMostOnce:
            #expect(message.packetIdentifier == nil)
        case .atLeastOnce:
            let outgoing = try #require(message.packetIdentifier)
            try subscriber.send(.pubAck(PubAckPacket(packetIdentifier: outgoing)))
            #expect(try subscriber.received() == [])
        case .exactlyOnce:
            let outgoing = try #require(message.packetIdentifier)
            try subscriber.send(.pubRec(PubAckPacket(packetIdentifier: outgoing)))
            #expect(try subscriber.received() == [.pubRel(PubAckPacket(packetIdentifier: outgoing))])
            try subscriber.send(.pubComp(PubAckPacket(packetIdentifier: outgoing)))
            #expect(try subscriber.received() == [])
        }
        #expect(broker.host.stats.publishReceived == 1)
        #expect(subscriber.isOpen && publisher.isOpen)
    }

    @Test(arguments: [ProtocolVersion.v3_1_1, .v5])
    func keepAliveTimeoutClosesASilentClientAfterOneAndAHalfPeriods(version: ProtocolVersion) throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(version)
        _ = try client.connect("sleepy", keepAlive: 10)
        broker.advance(by: .seconds(14))
        #expect(client.isOpen, "closed before one and a half keep-alive periods [MQTT-3.1.2-22]")
        #expect(try client.received() == [])
        broker.advance(by: .seconds(2))
        #expect(!client.isOpen)
        let expected: [Packet] = version == .v5 ? [.disconnect(DisconnectPacket(reasonCode: .keepAliveTimeout))] : []
        #expect(try client.received().map(\.type) == expected.map(\.type))
        #expect(broker.host.connectedClients == 0)
    }

    @Test func keepAliveCountsAnyPacketAsActivity() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("pinger", keepAlive: 10)
        for _ in 0..<4 {
            broker.advance(by: .seconds(10))
            try client.send(.pingReq)
            #expect(try client.received() == [.pingResp])
        }
        #expect(client.isOpen)
    }

    @Test func socketThatSendsNoConnectIsClosedAfterTheConnectTimeout() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        broker.advance(by: EmbeddedBroker.connectTimeout - .seconds(1))
        #expect(client.isOpen)
        broker.advance(by: .seconds(1))
        #expect(!client.isOpen)
        #expect(try client.received() == [])
    }

    @Test func connectTimeoutIsCancelledByConnect() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v3_1_1)
        _ = try client.connect("slow-to-talk", keepAlive: 0)
        broker.advance(by: .seconds(30))
        #expect(client.isOpen)
    }

    // MARK: Bad input

    /// Bad input from a connected client, and the reason code an MQTT 5 client is told before the close
    /// (3.1 and 3.1.1 clients are closed without a word).
    static let badInput: [(name: String, bytes: [UInt8], reason: ReasonCode)] = [
        // PINGREQ has no body [MQTT-3.12.1].
        ("PINGREQ with a body", [0xC0, 0x01, 0x00], .malformedPacket),
        // Remaining length 0 written in two bytes [MQTT-1.5.5-1].
        ("non-minimal remaining length", [0xC0, 0x80, 0x00], .malformedPacket),
        // Five remaining-length bytes [MQTT-1.5.5-1].
        ("remaining length over four bytes", [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], .malformedPacket),
        // MQTT 5 SUBSCRIBE (packet id, no properties) with no topic filter [MQTT-3.8.3-3]; to 3.1.1 it
        // is a truncated filter.
        ("SUBSCRIBE without filters", [0x82, 0x03, 0x00, 0x01, 0x00], .protocolError),
        // Only the fixed header of a 200-byte PUBLISH (limit 100): enough to refuse it, unbuffered.
        ("oversize PUBLISH header", [0x30, 0xC5, 0x01], .packetTooLarge),
        // A second CONNECT [MQTT-3.1.0-2] (MQTT 3.1.1 framing, which 5.0 decoding also refuses as such).
        ("second CONNECT", [0x10, 13, 0, 4, 0x4D, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, 0, 1, 0x78], .protocolError),
        // CONNACK is a server-to-client packet.
        ("CONNACK from a client", [0x20, 0x03, 0x00, 0x00, 0x00], .protocolError),
    ]

    @Test(arguments: [ProtocolVersion.v3_1, .v3_1_1, .v5], 0..<badInput.count)
    func badInputGetsItsReasonCodeAndTheClose(version: ProtocolVersion, index: Int) throws {
        let (name, bytes, reason) = Self.badInput[index]
        let broker = EmbeddedBroker(maximumPacketSize: 100)
        let client = try broker.client(version)
        _ = try client.connect("bad")
        try client.sendBytes(bytes)
        let answer = try client.received()
        if version == .v5 {
            guard answer.count == 1, case .disconnect(let disconnect) = answer[0] else {
                Issue.record("\(name): no DISCONNECT but \(answer)")
                return
            }
            #expect(disconnect.reasonCode == reason, "\(name)")
        } else {
            #expect(answer == [], "\(name)")
        }
        #expect(!client.isOpen, "\(name)")
        #expect(broker.host.connectedClients == 0, "\(name)")
    }

    @Test func decodingErrorsTellTheirCauseInTheReasonString() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("why")
        try client.sendBytes([0xC0, 0x01, 0x00])
        guard case .disconnect(let disconnect)? = try client.received().first else {
            Issue.record("no DISCONNECT")
            return
        }
        #expect(disconnect.properties.reasonString?.contains("remaining length 1") == true)
    }

    @Test func packetOfExactlyTheMaximumSizeIsAccepted() throws {
        let broker = EmbeddedBroker(maximumPacketSize: 100)
        let client = try broker.client(.v3_1_1)
        _ = try client.connect("edge")
        // PUBLISH QoS 0: 2-byte fixed header + 2 + 1 (topic "t") + 95 payload bytes = 100.
        let payload = String(repeating: "x", count: 95)
        try client.send(TestClient.publish("t", payload, .atMostOnce))
        #expect(client.isOpen)
        #expect(broker.host.stats.publishReceived == 1)
        try client.sendBytes([0x30, 99, 0, 1, 0x74] + [UInt8](repeating: 0x78, count: 96))
        #expect(!client.isOpen, "101 bytes is over the maximum")
    }

    @Test(arguments: versions)
    func packetBeforeConnectClosesWithoutAnswer(version: ProtocolVersion) throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(version)
        try client.send(TestClient.publish("t", "early", .atMostOnce))
        #expect(try client.received() == [])
        #expect(!client.isOpen)
        #expect(broker.host.stats.publishReceived == 0)
    }

    // MARK: Framing across reads

    @Test(arguments: [ProtocolVersion.v3_1_1, .v5])
    func packetsSplitByteByByteAreDecodedOnceWhole(version: ProtocolVersion) throws {
        let broker = EmbeddedBroker()
        let subscriber = try broker.client(version)
        _ = try subscriber.connect("sub")
        try subscriber.send(TestClient.subscribe(1, "drip", .atLeastOnce))
        _ = try subscriber.received()

        let client = try broker.client(version)
        var stream = ByteBuffer()
        MQTTCodec.encode(
            .connect(ConnectPacket(protocolVersion: version, clientIdentifier: "drip")),
            version: version,
            into: &stream
        )
        MQTTCodec.encode(
            TestClient.publish("drip", String(repeating: "p", count: 300), .atLeastOnce, id: 3),
            version: version,
            into: &stream
        )
        let bytes = Array(stream.readableBytesView)
        var seen: [Packet] = []
        for (index, byte) in bytes.enumerated() {
            try client.sendBytes([byte])
            seen += try client.received()
            if index < bytes.count - 1 {
                #expect(seen.filter { $0.type == .pubAck }.isEmpty, "PUBACK before the PUBLISH was whole")
            }
        }
        #expect(seen.map(\.type) == [.connAck, .pubAck])
        let delivered = try subscriber.received()
        guard case .publish(let message)? = delivered.first else {
            Issue.record("no PUBLISH: \(delivered)")
            return
        }
        #expect(message.payload.readableBytes == 300)
        #expect(client.isOpen)
    }

    @Test func packetsSplitAtEveryBoundaryOfTwoReads() throws {
        var stream = ByteBuffer()
        MQTTCodec.encode(
            .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "split")),
            version: .v5,
            into: &stream
        )
        MQTTCodec.encode(TestClient.publish("a/b", "payload", .exactlyOnce, id: 9), version: .v5, into: &stream)
        MQTTCodec.encode(.pingReq, version: .v5, into: &stream)
        for cut in 1..<stream.readableBytes {
            let broker = EmbeddedBroker()
            let client = try broker.client(.v5)
            try client.sendBytes(stream.getSlice(at: 0, length: cut)!)
            try client.sendBytes(stream.getSlice(at: cut, length: stream.readableBytes - cut)!)
            #expect(try client.received().map(\.type) == [.connAck, .pubRec, .pingResp], "cut at \(cut)")
            #expect(client.isOpen)
        }
    }

    /// Connections start with a 64-byte receive buffer (idle ones keep theirs): a larger packet
    /// arrives in several reads and is decoded whole.
    @Test func aPacketLargerThanTheFirstReceiveBufferArrivesInSeveralReads() throws {
        let broker = EmbeddedBroker()
        let subscriber = try broker.client(.v5)
        _ = try subscriber.connect("reader")
        try subscriber.send(TestClient.subscribe(1, "big/#", .atLeastOnce))
        #expect(try subscriber.received().map(\.type) == [.subAck])
        let publisher = try broker.client(.v5)
        var stream = ByteBuffer()
        MQTTCodec.encode(
            .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "writer")),
            version: .v5,
            into: &stream
        )
        let payload = String(repeating: "x", count: 300)
        MQTTCodec.encode(TestClient.publish("big/one", payload, .atLeastOnce, id: 3), version: .v5, into: &stream)
        let first = MQTTConnectionHandler.receiveBuffers.nextBufferSize() ?? 0
        #expect(first == 64)
        while stream.readableBytes > 0 {
            try publisher.sendBytes(stream.readSlice(length: min(first, stream.readableBytes))!)
        }
        #expect(try publisher.received().map(\.type) == [.connAck, .pubAck])
        guard case .publish(let message)? = try subscriber.received().first else {
            Issue.record("no PUBLISH delivered")
            return
        }
        #expect(String(buffer: message.payload) == payload)
    }

    /// The receive buffer starts small and doubles on full reads up to 64 KiB, so a busy publisher
    /// reaches large reads within a few; small reads shrink it again.
    @Test func receiveBuffersStartSmallAndGrowForBusyConnections() {
        var sizes = MQTTConnectionHandler.receiveBuffers
        var seen = [sizes.nextBufferSize() ?? 0]
        while let size = sizes.nextBufferSize(), size < 65536, seen.count < 20 {
            _ = sizes.record(actualReadBytes: size)
            seen.append(sizes.nextBufferSize() ?? 0)
        }
        #expect(seen == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536])
        _ = sizes.record(actualReadBytes: 10)
        _ = sizes.record(actualReadBytes: 10)
        #expect(sizes.nextBufferSize() == 32768)
    }

    /// The handlers of one listener share one settings object; each connection still has its own id.
    @Test func connectionsOfOneListenerShareItsSettings() throws {
        let broker = EmbeddedBroker()
        let shared = broker.listenerContext()
        var clients: [TestClient] = []
        for _ in 0..<2 {
            let channel = EmbeddedChannel(loop: broker.loop)
            try channel.pipeline.syncOperations.addHandler(MQTTConnectionHandler(shared))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
            clients.append(TestClient(channel: channel, loop: broker.loop, version: .v3_1_1))
        }
        #expect(try clients[0].connect("one")?.reasonCode == .success)
        #expect(try clients[1].connect("two")?.reasonCode == .success)
        #expect(clients[0].isOpen && clients[1].isOpen)
        #expect(broker.host.stats.connectionsTotal == 2)
    }

    @Test func severalPacketsInOneReadAreHandledInOrder() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        // CONNECT, SUBSCRIBE, PUBLISH to itself (QoS 1), PINGREQ: one read.
        try client.send(
            .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "burst")),
            TestClient.subscribe(1, "self", .atLeastOnce),
            TestClient.publish("self", "one", .atLeastOnce, id: 2),
            TestClient.publish("self", "two", .atMostOnce),
            .pingReq
        )
        let answer = try client.received()
        // The broker routes a QoS 1 message before acknowledging it, so its own copy comes first.
        #expect(answer.map(\.type) == [.connAck, .subAck, .publish, .pubAck, .publish, .pingResp])
        let payloads = answer.compactMap { packet -> String? in
            guard case .publish(let publish) = packet else { return nil }
            return String(buffer: publish.payload)
        }
        #expect(payloads == ["one", "two"])
    }

    /// The channel reuses its receive buffer only when nothing else holds it: a read of whole packets
    /// whose bytes nothing keeps (no PUBLISH payload) must leave the handler holding none of it.
    @Test func aReadEndingOnAPacketBoundaryIsNotKeptByTheHandler() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("reuse")
        var bytes = ByteBuffer()
        MQTTCodec.encode(.pingReq, version: .v5, into: &bytes)
        MQTTCodec.encode(.pingReq, version: .v5, into: &bytes)
        try client.sendBytes(bytes)
        #expect(try client.received() == [.pingResp, .pingResp])
        #expect(bytes.modifyIfUniquelyOwned { _ in true } == true)
        // A read ending mid-packet is kept, as it must be.
        var partial = ByteBuffer(bytes: [0xC0, 0x00, 0xC0])
        try client.sendBytes(partial)
        #expect(partial.modifyIfUniquelyOwned { _ in true } == nil)
    }

    @Test func goodPacketsBeforeABadOneInTheSameReadAreStillHandled() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("mixed")
        var bytes = ByteBuffer()
        MQTTCodec.encode(TestClient.publish("m", "kept", .atLeastOnce, id: 4), version: .v5, into: &bytes)
        bytes.writeBytes([0xC0, 0x01, 0x00])  // malformed PINGREQ
        try client.sendBytes(bytes)
        // The PUBLISH reaches the broker, but the DISCONNECT closes the socket before its PUBACK comes
        // back: the client sends it again on its next connection (at least once).
        #expect(try client.received().map(\.type) == [.disconnect])
        #expect(broker.host.stats.publishReceived == 1)
        #expect(!client.isOpen)
    }

    @Test func bytesAfterTheCloseAreIgnored() throws {
        let broker = EmbeddedBroker()
        let client = try broker.client(.v5)
        _ = try client.connect("late")
        try client.sendBytes([0xC0, 0x01, 0x00])
        _ = try client.received()
        #expect(!client.isOpen)
        // A read already in flight when the channel closed must not reach the broker.
        try? client.send(TestClient.publish("late", "x", .atMostOnce))
        #expect(broker.host.stats.publishReceived == 0)
    }

    @Test func sessionTakeoverClosesTheOldConnectionWith0x8EAndAcceptsTheNewOne() throws {
        let broker = EmbeddedBroker()
        let old = try broker.client(.v5)
        _ = try old.connect("same")
        let new = try broker.client(.v5)
        try new.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "same")))
        // The old connection is read for a moment (a DISCONNECT it sent would cancel its will), then closed.
        #expect(old.isOpen)
        broker.advance(by: MQTTConnectionHandler.takeoverReadWindow)
        #expect(try old.received() == [.disconnect(DisconnectPacket(reasonCode: .sessionTakenOver))])
        #expect(!old.isOpen)
        let answer = try new.received()
        guard case .connAck(let ack)? = answer.first else {
            Issue.record("no CONNACK: \(answer)")
            return
        }
        #expect(ack.reasonCode == .success)
        #expect(new.isOpen)
        #expect(broker.host.connectedClients == 1)
    }

    @Test func disconnectByTheClientEndsTheSessionWithoutWill() throws {
        let broker = EmbeddedBroker()
        let watcher = try broker.client(.v5)
        _ = try watcher.connect("watcher")
        try watcher.send(TestClient.subscribe(1, "will/#", .atMostOnce))
        _ = try watcher.received()

        let client = try broker.client(.v5)
        let will = Will(topic: "will/gone", payload: ByteBuffer(string: "bye"), qos: .atMostOnce, retain: false)
        try client.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "mortal", will: will)))
        _ = try client.received()
        try client.send(.disconnect(DisconnectPacket()))
        #expect(!client.isOpen)
        #expect(try watcher.received() == [])

        // The same client dropped without DISCONNECT: its will is published.
        let again = try broker.client(.v5)
        try again.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "mortal", will: will)))
        _ = try again.received()
        try again.channel.close().wait()
        broker.loop.run()
        #expect(try watcher.received().map(\.type) == [.publish])
    }
}
