import MQTTCore
import NIOCore
import NIOPosix

/// A small MQTT client over NIO for the CLI's `pub` and `sub`: one connection, packets in and out
/// through an async channel. Protocol rules stay with the caller.
public struct MQTTClient: Sendable {
    public enum ClientError: Error, CustomStringConvertible {
        case refused(ReasonCode)
        case closed
        case unexpected(Packet)

        public var description: String {
            switch self {
            case .refused(let code): "connection refused by the broker (reason \(code))"
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
        _ body: (ConnAckPacket, inout NIOAsyncChannelInboundStream<Packet>.AsyncIterator, NIOAsyncChannelOutboundWriter<Packet>) async throws -> Result
    ) async throws -> Result {
        let version = connect.protocolVersion
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(MQTTPacketEncoder(version: version)))
                    return try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.connect(connect))
            var iterator = inbound.makeAsyncIterator()
            guard let first = try await iterator.next() else { throw ClientError.closed }
            guard case .connAck(let connAck) = first else { throw ClientError.unexpected(first) }
            guard !connAck.reasonCode.isFailure else { throw ClientError.refused(connAck.reasonCode) }
            return try await body(connAck, &iterator, outbound)
        }
    }
}
