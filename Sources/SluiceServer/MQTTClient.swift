import MQTTCore
import NIOCore
import NIOPosix
import SluiceConfig

/// A small MQTT client over NIO for the CLI's `pub` and `sub`: one connection, packets in and out
/// through an async channel. Protocol rules stay with the caller.
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
        case unexpected(Packet)

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
            case .unexpected(let packet): "unexpected packet from the broker: \(packet.type)"
            }
        }
    }

    /// Connects, sends CONNECT and waits for a successful CONNACK, then runs `body` with the
    /// connection's inbound stream and outbound writer. The connection is closed afterwards.
    public static func withConnection<Result: Sendable>(
        host: String,
        port: Int,
        connect: ConnectPacket,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (
            ConnAckPacket, inout NIOAsyncChannelInboundStream<Packet>.AsyncIterator,
            NIOAsyncChannelOutboundWriter<Packet>
        ) async throws -> Result
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
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.connect(connect))
            var iterator = inbound.makeAsyncIterator()
            guard let first = try await iterator.next() else { throw ClientError.closed }
            guard case .connAck(let connAck) = first else { throw ClientError.unexpected(first) }
            guard !connAck.reasonCode.isFailure else { throw ClientError.connectRefused(connAck.reasonCode) }
            return try await body(connAck, &iterator, outbound)
        }
    }
}
