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
    /// A session takeover: first read what the client has already sent (a DISCONNECT there means
    /// no will), then close as `after` (or silently), at the latest after `takeoverReadWindow`.
    case afterReading(DisconnectPacket?)
}

/// What the broker host holds for a connection: its handler, which writes the host's packets (both
/// live on the broker's loop).
struct ConnectionHandle {
    let channel: any Channel
    let handler: MQTTConnectionHandler
    /// The peer's address, formatted only when a log line names it: the channel's own (shared)
    /// value is one pointer where a formatted `String` is two words and, past 15 bytes, a heap
    /// allocation (issue 17, RSS per connection: the host keeps a handle per connection in a
    /// dictionary, whose every slot costs the stride).
    let remote: SocketAddress?

    var remoteAddress: String { remote.logText }
}

/// Frames and decodes bytes into packets, hands them to the broker host, and writes what the
/// host sends back. It holds no broker rules: only framing, the connect timeout, and the
/// spec's reaction to undecodable input. It lives on the broker host's loop, as every client
/// connection does (GatewayService's listeners).
final class MQTTConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    // Writes, but handles no outbound event: as an inbound handler it is not called to pass on the
    // channel's read request after every read.
    typealias OutboundOut = ByteBuffer

    /// What every connection of one listener shares: one object per listener, not per connection
    /// (an idle connection's cost is mostly such per-connection copies).
    private let shared: MQTTListenerContext
    private var host: BrokerHost { shared.host }
    private var logger: Logger { shared.logger }
    private var maximumPacketSize: Int { shared.maximumPacketSize }
    private let id: ConnectionID
    /// Frames and decodes with the verified (fuzzed) decoder; the buffer it keeps holds at most one
    /// partial packet, whose size the decoder checked against the maximum from its fixed header.
    private let decoder: NIOSingleStepByteToMessageProcessor<MQTTPacketDecoder>
    private static let noBytes = ByteBuffer()
    private var context: ChannelHandlerContext?
    /// The connect timeout until CONNECT, later the takeover read window: one slot, never both
    /// (a `Scheduled` is 24 bytes; the fields are ordered words first, so the object fits in 128 bytes).
    private var timer: PendingTimer?
    /// Why this side closed the socket, when the broker core cannot know (bad input, a socket error).
    private var closeCause: DepartureReason?
    private var version: ProtocolVersion?
    private var closing = false
    /// The pipeline has told this handler a read completed: from then on what it reads runs then.
    private var readsComplete = false
    /// Where the host's `ConnectionOutbox` keeps this connection's bytes for the turn (0: none).
    var outboxSlot: UInt32 = 0

    private enum PendingTimer {
        case connect(Scheduled<Void>)
        /// A taken-over connection reads what its client sent before it is closed.
        case takeoverClose(Scheduled<Void>)

        func cancel() {
            switch self {
            case .connect(let scheduled), .takeoverClose(let scheduled): scheduled.cancel()
            }
        }
    }

    private var closingAfterTakeover: Bool {
        if case .takeoverClose? = timer { true } else { false }
    }
    /// How long a taken-over connection is read before it is closed. The client's bytes sent before
    /// its new CONNECT are already in the socket: they are read at the loop's next poll, well within this.
    static let takeoverReadWindow = TimeAmount.milliseconds(100)

    /// Receive buffer sizes for MQTT connections. Each connection keeps its last receive buffer (NIO
    /// has no way to hand it back while idle), so it starts at 64 bytes: a sensor's CONNECT, SUBSCRIBE
    /// and small PUBLISHes fit, and an idle connection keeps 64 bytes instead of 256. A busy one
    /// doubles it on every full read, up to 64 KiB within ten reads.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 64, maximum: 65536)

    init(_ shared: MQTTListenerContext) {
        self.shared = shared
        self.id = shared.host.makeConnectionID()
        self.decoder = NIOSingleStepByteToMessageProcessor(
            MQTTPacketDecoder(maximumPacketSize: shared.maximumPacketSize),
            maximumBufferSize: shared.maximumPacketSize
        )
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // The host writes to this handler directly and runs what it hands over without a hop.
        precondition(context.eventLoop === host.loop, "client connections live on the broker host's loop")
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
        let remote = context.peerLogText
        let connectTimer = context.eventLoop.scheduleTask(in: shared.connectTimeout) { [logger] in
            logger.info("closing connection that sent no CONNECT", metadata: ["remote": "\(remote)"])
            loopBoundContext.value.close(promise: nil)
        }
        timer = .connect(connectTimer)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        closing = true
        host.handOver(.closed(id, cause: closeCause))
        host.runArrivalsSoon()
        context.fireChannelInactive()
    }

    /// A reader that stops reading must not make us buffer without bound: the broker holds its
    /// messages in the session queue (bounded, drops counted) until the socket drains.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        host.handOver(.writabilityChanged(id, writable: context.channel.isWritable))
        host.runArrivalsSoon()
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let input = unwrapInboundIn(data)
        let host = self.host
        host.traffic.received(input.readableBytes)
        do {
            // Each packet is handed over as it decodes: what decoded before a bad packet is the client's
            // too (a PUBLISH, then garbage).
            try decoder.process(buffer: input) { packet in
                if version == nil, case .connect(let connect) = packet {
                    version = connect.protocolVersion
                    if case .connect(let connectTimer)? = timer {
                        connectTimer.cancel()
                        timer = nil  // a kept `Scheduled` holds its promise and task for the connection's life
                    }
                    handOver(connect, context: context)
                } else {
                    host.handOver(.packet(id, packet))
                }
            }
            // A read that ended on a packet boundary leaves nothing to keep, but the processor still holds
            // the consumed buffer: hand it an empty one so it lets go, and the channel's pooled receive
            // buffer is uniquely owned again and reused for the next read instead of a new allocation.
            if decoder.unprocessedBytes == 0 { try decoder.process(buffer: Self.noBytes) { _ in } }
        } catch {
            reject(MQTTError(decoding: error, maximumPacketSize: maximumPacketSize), context: context)
        }
        if !readsComplete { host.runArrivalsSoon() }
    }

    /// What the read handed over reaches the broker now, in the order of the turn's reads.
    func channelReadComplete(context: ChannelHandlerContext) {
        readsComplete = true
        host.runArrivals()
        context.fireChannelReadComplete()
    }

    /// Hands the CONNECT over with what the TLS layer vouches for, and the handle the host writes through.
    private func handOver(_ connect: ConnectPacket, context: ChannelHandlerContext) {
        var connect = connect
        var identityVerified = false
        let useIdentityAsUsername = shared.useIdentityAsUsername
        if useIdentityAsUsername || shared.useSubjectAsUsername {
            // The certificate's CN (or, with use_subject_as_username, its whole subject) is the username;
            // the password is not checked (Mosquitto's rule; the CN wins when both are set, as there).
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
            connect.username = peer.flatMap {
                useIdentityAsUsername ? TLSContexts.identity(of: $0) : TLSContexts.subject(of: $0)
            }
            connect.password = nil
            identityVerified = connect.username != nil
        }
        let handle = ConnectionHandle(
            channel: context.channel,
            handler: self,
            remote: context.peerAddress
        )
        host.handOver(
            .connect(id, connect, handle: handle, listener: shared.listener, identityVerified: identityVerified)
        )
    }

    /// The spec's reaction to input that cannot be decoded [MQTT-4.13.1-1].
    private func reject(_ error: MQTTError, context: ChannelHandlerContext) {
        logger.notice(
            "closing connection after bad input",
            metadata: ["remote": "\(context.peerLogText)", "error": "\(error)"]
        )
        closeCause = .protocolError(error.message)
        switch version {
        case nil where error.code == .unsupportedProtocolVersion:
            // Answer in 3.1.1 framing, which every version can read: return code 0x01 [MQTT-3.1.2-2].
            write([.connAck(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))], close: .silently, as: .v3_1_1)
        case .v5?:
            var properties = Properties()
            properties.reasonString = error.message
            write(close: .after(DisconnectPacket(reasonCode: error.code, properties: properties)))
        default:
            write(close: .silently)
        }
    }

    /// The version the host's packets are encoded for; nil once closing (nobody to send to).
    var outgoingVersion: ProtocolVersion? {
        context != nil && !closing ? version : nil
    }

    /// Writes packets the host encoded over the turn (`ConnectionOutbox`).
    func writeQueued(_ bytes: ByteBuffer) {
        guard let context, !closing else { return }
        host.traffic.sent(bytes.readableBytes)
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    /// Writes `queued` (what the host encoded for this turn), then `packets`, in one flush; optionally
    /// closes after.
    func write(
        after queued: ByteBuffer? = nil,
        _ packets: [Packet] = [],
        close: CloseRequest?,
        as forcedVersion: ProtocolVersion? = nil
    ) {
        if case .afterReading(let disconnect)? = close, let context, !closing {
            write(after: queued, packets, close: nil)
            return closeAfterReading(disconnect, context: context)
        }
        guard let context, !closing, let version = forcedVersion ?? version else {
            if let context, close != nil { context.close(promise: nil) }
            return
        }
        var buffer = queued ?? context.channel.allocator.buffer(capacity: 0)
        for packet in packets { MQTTCodec.encode(packet, version: version, into: &buffer) }
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

    /// Keeps reading, and closes at the end of the window unless the client's DISCONNECT or end of stream
    /// closed it first.
    private func closeAfterReading(_ disconnect: DisconnectPacket?, context: ChannelHandlerContext) {
        guard !closingAfterTakeover else { return }
        timer?.cancel()  // a connect timer is gone by now: only a connection past CONNECT is taken over
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let takeoverClose = context.eventLoop.scheduleTask(in: Self.takeoverReadWindow) {
            handler.value.write(close: disconnect.map { .after($0) } ?? .silently)
        }
        timer = .takeoverClose(takeoverClose)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let remote = context.peerLogText
        let alert = (try? context.pipeline.syncOperations.handler(type: TLSAlertRecorder.self))?.alert
        if !TLSFailure.log(error, remote: remote, alert: alert, to: logger) {
            logger.debug("connection error", metadata: ["remote": "\(remote)", "error": "\(error)"])
        }
        if closeCause == nil { closeCause = .socketError(NetworkErrorText.describe(error)) }
        context.close(promise: nil)
    }
}

/// Loop-bound: used on the broker host's loop only.
@available(*, unavailable)
extension MQTTConnectionHandler: Sendable {}

extension MQTTError {
    /// The decoder throws `MQTTError`s; the processor around it adds only its buffer bound, which a
    /// packet checked from its fixed header cannot reach: should it ever, it is a packet too large.
    init(decoding error: any Error, maximumPacketSize: Int) {
        if let error = error as? MQTTError {
            self = error
        } else {
            self.init(.packetTooLarge, "more than \(maximumPacketSize) bytes buffered for one packet")
        }
    }
}

/// The settings every connection of one listener shares, and the broker host they talk to.
final class MQTTListenerContext: Sendable {
    let host: BrokerHost
    /// Index of the listener that accepted the connection.
    let listener: Int
    let useIdentityAsUsername: Bool
    /// `use_subject_as_username`: the certificate's whole subject (RFC 2253) is the username.
    let useSubjectAsUsername: Bool
    let maximumPacketSize: Int
    let connectTimeout: TimeAmount
    let logger: Logger

    init(
        host: BrokerHost,
        listener: Int,
        useIdentityAsUsername: Bool,
        useSubjectAsUsername: Bool,
        maximumPacketSize: Int,
        connectTimeout: TimeAmount,
        logger: Logger
    ) {
        self.host = host
        self.listener = listener
        self.useIdentityAsUsername = useIdentityAsUsername
        self.useSubjectAsUsername = useSubjectAsUsername
        self.maximumPacketSize = maximumPacketSize
        self.connectTimeout = connectTimeout
        self.logger = logger
    }
}
