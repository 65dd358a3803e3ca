import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceConfig

/// A small MQTT client over NIO for the CLI's `pub` and `sub`: one connection, one request at a time.
/// The protocol rules (packet identifiers, QoS flows, keep-alive, acknowledgement matching) are
/// `MQTTClientSession`'s; this type only moves its packets over the socket.
public struct MQTTClient: Sendable {
    /// Each says what failed in one line (the CLI prints it after `sluice: `).
    public enum ClientError: Error, CustomStringConvertible {
        /// No TCP connection: the cause in plain words (`connection refused`).
        case cannotConnect(host: String, port: Int, cause: String)
        /// The CONNACK refused the connection (bad credentials, not authorized...).
        case connectRefused(ReasonCode)
        /// A PUBACK/PUBREC refused a message: the connection itself was fine.
        case publishRefused(topic: String, ReasonCode)
        /// The SUBACK refused a subscription.
        case subscribeRefused(filter: String, ReasonCode)
        /// The broker sent DISCONNECT.
        case disconnected(ReasonCode)
        case closed
        /// The broker broke the protocol (or stopped answering pings).
        case protocolViolation(MQTTClientSessionError)

        public var description: String {
            switch self {
            case .cannotConnect(let host, let port, let cause):
                "cannot connect to \(HostPort(host: host, port: port)): \(cause)"
            case .connectRefused(let code): "the broker refused the connection: \(code.named)"
            case .publishRefused(let topic, let code): "the broker refused the message on '\(topic)': \(code.named)"
            case .subscribeRefused(let filter, let code):
                "the broker refused the subscription '\(filter)': \(code.named)"
            case .disconnected(let code): "the broker disconnected: \(code.named)"
            case .closed: "the broker closed the connection"
            case .protocolViolation(let error): "the broker broke the protocol: \(error)"
            }
        }
    }

    typealias Session = MQTTClientSession<ContinuousClock.Instant>

    /// The session and why the keep-alive ended the connection, shared by the caller's task and the pinger.
    final class SharedSession: Sendable {
        private struct State {
            var session = Session()
            var keepAliveFailure: MQTTClientSessionError?
        }
        private let state = NIOLockedValueBox(State())

        /// Runs `body` on the session; its typed error becomes `ClientError.protocolViolation`.
        func run<T>(_ body: (inout Session) throws(MQTTClientSessionError) -> T) throws(ClientError) -> T {
            let result = state.withLockedValue { state -> Swift.Result<T, MQTTClientSessionError> in
                do throws(MQTTClientSessionError) {
                    return .success(try body(&state.session))
                } catch {
                    return .failure(error)
                }
            }
            switch result {
            case .success(let value): return value
            case .failure(let error): throw .protocolViolation(error)
            }
        }

        /// Keep-alive: the PINGREQ to write, or false when the PINGRESP is overdue (the connection must close).
        func tick() -> (ping: Packet?, alive: Bool) {
            state.withLockedValue { state in
                do throws(MQTTClientSessionError) {
                    return (try state.session.tick(now: .now), true)
                } catch {
                    state.keepAliveFailure = error
                    return (nil, false)
                }
            }
        }

        var keepAliveFailure: MQTTClientSessionError? { state.withLockedValue { $0.keepAliveFailure } }
    }

    /// One connection after its successful CONNACK. Used by one task at a time (the `withConnection` body).
    public final class Connection {
        public let connAck: ConnAckPacket
        private var inbound: NIOAsyncChannelInboundStream<Packet>.AsyncIterator
        private let outbound: NIOAsyncChannelOutboundWriter<Packet>
        private let session: SharedSession
        /// Messages that arrived while a request waited for its acknowledgement, for `nextMessage`.
        private var messages: [PublishPacket] = []

        init(
            connAck: ConnAckPacket,
            inbound: NIOAsyncChannelInboundStream<Packet>.AsyncIterator,
            outbound: NIOAsyncChannelOutboundWriter<Packet>,
            session: SharedSession
        ) {
            self.connAck = connAck
            self.inbound = inbound
            self.outbound = outbound
            self.session = session
        }

        /// Sends `message` and, at QoS 1 or 2, waits until its flow completes. Throws `publishRefused`
        /// when the broker refuses it.
        public func publish(_ message: PublishPacket) async throws {
            let packet = try session.run { session throws(MQTTClientSessionError) in
                try session.publish(message, now: .now)
            }
            try await outbound.write(.publish(packet))
            guard let id = packet.packetIdentifier else { return }
            while true {
                guard case .published(id, let code) = try await nextEvent() else { continue }
                if code.isFailure { throw ClientError.publishRefused(topic: message.topic, code) }
                return
            }
        }

        /// Sends one SUBSCRIBE and waits for its SUBACK. Throws `subscribeRefused` for the first refused filter.
        public func subscribe(_ subscriptions: [TopicSubscription]) async throws {
            let packet = try session.run { session throws(MQTTClientSessionError) in
                try session.subscribe(subscriptions, now: .now)
            }
            try await outbound.write(.subscribe(packet))
            while true {
                guard case .subscribed(packet.packetIdentifier, let results) = try await nextEvent() else { continue }
                if let refused = results.first(where: \.reasonCode.isFailure) {
                    throw ClientError.subscribeRefused(filter: refused.filter, refused.reasonCode)
                }
                return
            }
        }

        /// The next message from the broker, acknowledged as its QoS asks (QoS 2: delivered once per flow).
        public func nextMessage() async throws -> PublishPacket {
            while messages.isEmpty { _ = try await nextEvent() }
            return messages.removeFirst()
        }

        public func disconnect() async throws {
            try await outbound.write(.disconnect(DisconnectPacket()))
        }

        /// Reads packets until one means something to the caller, writing the session's replies.
        /// Messages go to `messages` (and are returned too).
        private func nextEvent() async throws -> Session.Event {
            while true {
                guard let packet = try await inbound.next() else {
                    if let failure = session.keepAliveFailure { throw ClientError.protocolViolation(failure) }
                    throw ClientError.closed
                }
                let reaction = try session.run { session throws(MQTTClientSessionError) in
                    try session.received(packet, now: .now)
                }
                if let reply = reaction.reply { try await outbound.write(reply) }
                switch reaction.event {
                case nil: continue
                case .disconnected(let disconnect): throw ClientError.disconnected(disconnect.reasonCode)
                case .message(let message)?:
                    messages.append(message)
                    return .message(message)
                case let event?: return event
                }
            }
        }
    }

    /// Connects, sends CONNECT and waits for a successful CONNACK, then runs `body` with the connection,
    /// pinging the broker as the keep-alive asks. The connection is closed afterwards.
    public static func withConnection<Result: Sendable>(
        host: String,
        port: Int,
        connect: ConnectPacket,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (Connection) async throws -> Result
    ) async throws -> Result {
        let version = connect.protocolVersion
        let channel: NIOAsyncChannel<Packet, Packet>
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(MQTTPacketDecoder(version: version))
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            MessageToByteHandler(MQTTPacketEncoder(version: version))
                        )
                        return try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ClientError.cannotConnect(host: host, port: port, cause: NetworkErrorText.describe(error))
        }
        let session = SharedSession()
        let underlying = channel.channel
        return try await channel.executeThenClose { inbound, outbound in
            let packet = try session.run { session throws(MQTTClientSessionError) in
                try session.connect(connect, now: .now)
            }
            try await outbound.write(packet)
            var iterator = inbound.makeAsyncIterator()
            guard let first = try await iterator.next() else { throw ClientError.closed }
            let reaction = try session.run { session throws(MQTTClientSessionError) in
                try session.received(first, now: .now)
            }
            guard case .connected(let connAck, _) = reaction.event else {
                if case .connectionRefused(let connAck) = reaction.event {
                    throw ClientError.connectRefused(connAck.reasonCode)
                }
                throw ClientError.closed
            }
            let keepAlive = Task {
                // Ends with the connection: cancelled when `body` returns, or closes it when a PINGRESP is overdue.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    let (ping, alive) = session.tick()
                    guard alive else {
                        underlying.close(promise: nil)
                        return
                    }
                    if let ping { try? await outbound.write(ping) }
                }
            }
            defer { keepAlive.cancel() }
            return try await body(
                Connection(connAck: connAck, inbound: iterator, outbound: outbound, session: session)
            )
        }
    }
}
