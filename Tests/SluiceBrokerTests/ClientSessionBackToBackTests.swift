import MQTTCore
import Testing

@testable import SluiceBroker

/// MQTTCore's client session against the broker core, back to back: every packet goes through the
/// codec each way, as on a socket, and nothing else stands between the two machines.
@Suite("Client session back to back with the broker")
struct ClientSessionBackToBackTests {
    typealias Session = MQTTClientSession<ContinuousClock.Instant>

    final class Wire {
        var broker = Broker()
        var clients: [ConnectionID: Session] = [:]
        var events: [ConnectionID: [Session.Event]] = [:]
        var closed: Set<ConnectionID> = []
        var brokerTime: BrokerTime = 1_000
        let version: ProtocolVersion

        init(version: ProtocolVersion) { self.version = version }

        /// What the other side decodes from `packet`'s bytes.
        func overTheWire(_ packet: Packet) throws -> Packet {
            var buffer = ByteBuffer()
            MQTTCodec.encode(packet, version: version, into: &buffer)
            let frame = try #require(
                try MQTTCodec.readFrame(from: &buffer, maximumPacketSize: MQTTCodec.maximumPacketSize)
            )
            #expect(buffer.readableBytes == 0)
            return try MQTTCodec.decode(frame, version: packet.type == .connect ? nil : version)
        }

        func connect(_ id: UInt64, _ clientID: String, cleanStart: Bool = true) throws {
            let connection = ConnectionID(id)
            var session = clients[connection] ?? Session()
            let packet = try session.connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: clientID,
                    cleanStart: cleanStart,
                    keepAlive: 0
                ),
                now: .now
            )
            clients[connection] = session
            closed.remove(connection)
            guard case .connect(let connect) = try overTheWire(packet) else { throw Failure("not a CONNECT") }
            try run(broker.connect(connection, connect, now: brokerTime))
        }

        /// The client sends `packet` (made by its session) to the broker.
        func send(_ id: UInt64, _ packet: Packet) throws {
            try run(broker.receive(try overTheWire(packet), from: ConnectionID(id), now: brokerTime))
        }

        func drop(_ id: UInt64) {
            let connection = ConnectionID(id)
            _ = clients[connection]!.connectionClosed()
            closed.insert(connection)
            _ = broker.closed(connection, now: brokerTime)
        }

        /// Delivers the broker's actions, and the clients' replies back, until both are quiet.
        func run(_ actions: [BrokerAction]) throws {
            var pending = actions
            var rounds = 0
            while !pending.isEmpty {
                rounds += 1
                guard rounds < 10_000 else { throw Failure("the two sides never go quiet") }
                let action = pending.removeFirst()
                switch action {
                case .send(let connection, let packet):
                    guard !closed.contains(connection) else { continue }
                    let reaction = try clients[connection]!.received(try overTheWire(packet), now: .now)
                    var replies: [Packet] = reaction.reply.map { [$0] } ?? []
                    if let event = reaction.event {
                        events[connection, default: []].append(event)
                        if case .connected(_, let resend) = event { replies += resend }
                    }
                    for reply in replies {
                        pending += broker.receive(try overTheWire(reply), from: connection, now: brokerTime)
                    }
                case .close(let connection, _), .takeOver(let connection, _):
                    closed.insert(connection)
                case .persist:
                    throw Failure("nothing is configured durable here")
                case .authenticate:
                    throw Failure("connections are admitted without authentication here")
                }
            }
        }

        func take(_ id: UInt64) -> [Session.Event] {
            defer { events[ConnectionID(id)] = [] }
            return events[ConnectionID(id)] ?? []
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func subscribeAll(_ wire: Wire, _ id: UInt64, qos: QoS) throws {
        let subscribe = try wire.clients[ConnectionID(id)]!.subscribe(
            [TopicSubscription(filter: "t/#", options: SubscriptionOptions(qos: qos))],
            now: .now
        )
        try wire.send(id, .subscribe(subscribe))
        #expect(
            wire.take(id)
                == [
                    .subscribed(
                        packetIdentifier: subscribe.packetIdentifier,
                        [FilterResult(filter: "t/#", reasonCode: ReasonCode(rawValue: qos.rawValue))]
                    )
                ]
        )
    }

    @Test(arguments: [ProtocolVersion.v3_1_1, .v5], [QoS.atLeastOnce, .exactlyOnce])
    func everyMessageArrivesOnceAndEveryPublishCompletes(version: ProtocolVersion, qos: QoS) throws {
        let wire = Wire(version: version)
        try wire.connect(1, "sub")
        try wire.connect(2, "pub")
        #expect(wire.take(1).count == 1)  // .connected
        #expect(wire.take(2).count == 1)
        try subscribeAll(wire, 1, qos: qos)

        var sent: [UInt16] = []
        for index in 0..<300 {  // past the broker's default in-flight window, and over again
            let publish = try wire.clients[ConnectionID(2)]!.publish(
                PublishPacket(topic: "t/\(index)", payload: ByteBuffer(string: "\(index)"), qos: qos),
                now: .now
            )
            sent.append(publish.packetIdentifier!)
            try wire.send(2, .publish(publish))
        }
        let completed = wire.take(2).compactMap { event -> UInt16? in
            guard case .published(let id, let code) = event, !code.isFailure else { return nil }
            return id
        }
        #expect(completed == sent)
        let received = wire.take(1).compactMap { event -> String? in
            guard case .message(let message) = event else { return nil }
            return message.topic
        }
        #expect(received == (0..<300).map { "t/\($0)" })
        #expect(wire.clients[ConnectionID(1)]!.inFlightCount == 0)
        #expect(wire.clients[ConnectionID(2)]!.inFlightCount == 0)
        #expect(wire.closed.isEmpty)
    }

    /// A QoS 2 publisher whose PUBREC is lost with the connection resends the PUBLISH (DUP) on its
    /// persistent session and completes the flow; the subscriber gets the message once.
    @Test func persistentPublisherFinishesItsQoS2FlowAfterReconnecting() throws {
        let wire = Wire(version: .v3_1_1)
        try wire.connect(1, "sub")
        _ = wire.take(1)
        try subscribeAll(wire, 1, qos: .exactlyOnce)
        try wire.connect(2, "pub", cleanStart: false)
        _ = wire.take(1)
        _ = wire.take(2)

        let publish = try wire.clients[ConnectionID(2)]!.publish(
            PublishPacket(topic: "t/x", payload: ByteBuffer(string: "x"), qos: .exactlyOnce),
            now: .now
        )
        // The PUBLISH reaches the broker; its PUBREC is lost with the connection.
        let actions = wire.broker.receive(
            try wire.overTheWire(.publish(publish)),
            from: ConnectionID(2),
            now: wire.brokerTime
        )
        let pubRec = actions.contains { action in
            if case .send(ConnectionID(2), .pubRec) = action { return true }
            return false
        }
        #expect(pubRec)
        try wire.run(
            actions.filter { action in
                if case .send(ConnectionID(2), _) = action { return false }
                return true
            }
        )
        wire.drop(2)

        // The same client (its session object) on a new connection.
        wire.clients[ConnectionID(3)] = wire.clients.removeValue(forKey: ConnectionID(2))
        try wire.connect(3, "pub", cleanStart: false)
        let events = wire.take(3)
        #expect(events.contains(.published(packetIdentifier: publish.packetIdentifier!, reasonCode: .success)))
        #expect(wire.clients[ConnectionID(3)]!.inFlightCount == 0)
        let messages = wire.take(1).filter { if case .message = $0 { true } else { false } }
        #expect(messages.count == 1)
    }
}
