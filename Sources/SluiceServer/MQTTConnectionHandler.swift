import Logging
import MQTTCore
import NIOCore
import NIOSSL
import SluiceBroker

/// How a batch of outgoing packets ends.
enum CloseRequest: Sendable {
    /// Close after the packets.
    case silently
    /// Send this DISCONNECT (MQTT 5 clients only), then close.
    case after(DisconnectPacket)
}

/// What the broker host holds for a connection: a way to hand packets to its event loop.
struct ConnectionHandle: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<MQTTConnectionHandler>
    let remoteAddress: String
    /// Index of the listener that accepted the connection.
    let listener: Int
    /// The username came from a verified TLS client certificate (`use_identity_as_username`).
    let identityVerified: Bool

    func deliver(_ packets: [Packet], close: CloseRequest?) {
        if channel.eventLoop.inEventLoop {
            handler.value.write(packets, close: close)
        } else {
            let handler = self.handler
            channel.eventLoop.execute { handler.value.write(packets, close: close) }
        }
    }
}

/// Frames and decodes bytes into packets, hands them to the broker host, and writes what the
/// host sends back. It holds no broker rules: only framing, the connect timeout, and the
/// spec's reaction to undecodable input.
final class MQTTConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let host: BrokerHost
    private let id: ConnectionID
    private let listener: Int
    private let useIdentityAsUsername: Bool
    private let maximumPacketSize: Int
    private let connectTimeout: TimeAmount
    private let logger: Logger
    private var version: ProtocolVersion?
    private var cumulation: ByteBuffer?
    private var context: ChannelHandlerContext?
    private var connectTimer: Scheduled<Void>?
    private var closing = false
    /// Backpressure towards a fast publisher: decoded batches handed to the broker loop and not yet
    /// processed there. At `maxPendingBatches` the socket is not read until the broker catches up,
    /// so a flood waits in the kernel and in TCP instead of in the broker loop's task queue.
    private var pendingBatches = 0
    private var readHeld = false
    private static let maxPendingBatches = 4
    /// Bytes already decoded at the front of the cumulation before they are given back.
    private static let reclaimThreshold = 64 << 10

    init(
        host: BrokerHost,
        listener: Int,
        useIdentityAsUsername: Bool,
        maximumPacketSize: Int,
        connectTimeout: TimeAmount,
        logger: Logger
    ) {
        self.host = host
        self.listener = listener
        self.useIdentityAsUsername = useIdentityAsUsername
        self.id = host.makeConnectionID()
        self.maximumPacketSize = maximumPacketSize
        self.connectTimeout = connectTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The context holds this handler: keeping it after removal would be a cycle that leaks
        // the whole pipeline of every closed connection.
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // A socket that never sends CONNECT is closed after the connect timeout (half-open sockets).
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        connectTimer = context.eventLoop.scheduleTask(in: connectTimeout) { [logger] in
            logger.info("closing connection that sent no CONNECT", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            loopBoundContext.value.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectTimer?.cancel()
        closing = true
        let host = self.host
        let id = self.id
        host.loop.execute { host.closed(id) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var input = unwrapInboundIn(data)
        host.traffic.received(input.readableBytes)
        if cumulation == nil {
            cumulation = input
        } else {
            cumulation!.writeBuffer(&input)
        }
        var packets: [Packet] = []
        var connect: ConnectPacket? = nil
        do {
            while var buffer = cumulation, let frame = try MQTTCodec.readFrame(from: &buffer, maximumPacketSize: maximumPacketSize) {
                cumulation = buffer
                let packet = try MQTTCodec.decode(frame, version: version)
                if version == nil, case .connect(let first) = packet {
                    version = first.protocolVersion
                    connectTimer?.cancel()
                    connect = first
                } else {
                    packets.append(packet)
                }
            }
            if cumulation?.readableBytes == 0 {
                cumulation = nil
            } else if let consumed = cumulation?.readerIndex, consumed >= Self.reclaimThreshold {
                // Under a steady stream a partial packet is almost always left over, so the
                // cumulation would never be dropped and would keep every byte ever received.
                cumulation!.discardReadBytes()
            }
            dispatch(connect: connect, packets: packets, context: context)
        } catch {
            dispatch(connect: connect, packets: packets, context: context)
            reject(error, context: context)
        }
    }

    private func dispatch(connect: ConnectPacket?, packets: [Packet], context: ChannelHandlerContext) {
        guard connect != nil || !packets.isEmpty else { return }
        let host = self.host
        let id = self.id
        if var connect {
            var identityVerified = false
            if useIdentityAsUsername {
                // The certificate's CN is the username; the password is not checked (Mosquitto's rule).
                let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
                connect.username = peer.flatMap { TLSContexts.identity(of: $0) }
                connect.password = nil
                identityVerified = connect.username != nil
            }
            let handle = ConnectionHandle(
                channel: context.channel,
                handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                remoteAddress: context.remoteAddress.map { "\($0)" } ?? "?",
                listener: listener,
                identityVerified: identityVerified
            )
            let done = batchStarted(context: context)
            host.loop.execute {
                host.connect(id, connect, handle: handle)
                if !packets.isEmpty { host.receive(id, packets) }
                done()
            }
        } else {
            let done = batchStarted(context: context)
            host.loop.execute {
                host.receive(id, packets)
                done()
            }
        }
    }

    /// Counts a batch handed to the broker loop; the returned closure (run there) counts it done.
    private func batchStarted(context: ChannelHandlerContext) -> @Sendable () -> Void {
        pendingBatches += 1
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        return { loop.execute { handler.value.batchFinished() } }
    }

    private func batchFinished() {
        pendingBatches -= 1
        if readHeld, pendingBatches < Self.maxPendingBatches, let context {
            readHeld = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if pendingBatches >= Self.maxPendingBatches {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// The spec's reaction to input that cannot be decoded [MQTT-4.13.1-1].
    private func reject(_ error: MQTTError, context: ChannelHandlerContext) {
        logger.notice(
            "closing connection after bad input",
            metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"]
        )
        cumulation = nil
        switch version {
        case nil where error.code == .unsupportedProtocolVersion:
            // Answer in 3.1.1 framing, which every version can read: return code 0x01 [MQTT-3.1.2-2].
            write([.connAck(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))], close: .silently, as: .v3_1_1)
        case .v5?:
            var properties = Properties()
            properties.reasonString = error.message
            write([], close: .after(DisconnectPacket(reasonCode: error.code, properties: properties)))
        default:
            write([], close: .silently)
        }
    }

    /// Encodes and writes packets from the broker host in one flush; optionally closes after.
    func write(_ packets: [Packet], close: CloseRequest?, as forcedVersion: ProtocolVersion? = nil) {
        guard let context, !closing, let version = forcedVersion ?? version else {
            if let context, close != nil { context.close(promise: nil) }
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        let writable = context.channel.isWritable
        for packet in packets {
            // A reader that stops reading must not make us buffer without bound: QoS 0 messages
            // are dropped while the socket is backed up; QoS 1/2 are bounded by the in-flight window.
            if !writable, case .publish(let publish) = packet, publish.qos == .atMostOnce {
                host.traffic.droppedForSlowReader()
                continue
            }
            MQTTCodec.encode(packet, version: version, into: &buffer)
        }
        if case .after(let disconnect)? = close, version >= .v5 {
            MQTTCodec.encode(.disconnect(disconnect), version: version, into: &buffer)
        }
        if buffer.readableBytes > 0 {
            host.traffic.sent(buffer.readableBytes)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        if close != nil {
            closing = true
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let remote = context.remoteAddress.map { "\($0)" } ?? "?"
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            logger.notice("TLS handshake failed", metadata: ["remote": "\(remote)", "error": "\(error)"])
        } else {
            logger.debug("connection error", metadata: ["remote": "\(remote)", "error": "\(error)"])
        }
        context.close(promise: nil)
    }
}
