import Atomics
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

/// What the broker host holds for a connection: a way to hand packets to its event loop.
struct ConnectionHandle: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<MQTTConnectionHandler>
    /// The peer's address, formatted only when a log line names it: the channel's own (shared)
    /// value is one pointer where a formatted `String` is two words and, past 15 bytes, a heap
    /// allocation (issue 17, RSS per connection: the host keeps a handle per connection in a
    /// dictionary, whose every slot costs the stride).
    let remote: SocketAddress?

    var remoteAddress: String { remote.logText }

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
    /// This loop's way to the broker loop (set in `handlerAdded`).
    private var handoff: LoopHandoff?
    private let flow = ReadFlow()
    /// The connect timeout until CONNECT, later the takeover read window: one slot, never both
    /// (a `Scheduled` is 24 bytes; the fields are ordered words first, so the object fits in 128 bytes).
    private var timer: PendingTimer?
    /// Why this side closed the socket, when the broker core cannot know (bad input, a socket error).
    private var closeCause: DepartureReason?
    private var version: ProtocolVersion?
    private var closing = false

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
    /// Backpressure towards a fast publisher: decoded batches handed to the broker loop and not yet
    /// processed there. At `maxPendingBatches` the socket is not read until the broker catches up,
    /// so a flood waits in the kernel and in TCP instead of in the broker loop's task queue. Both
    /// are atomics so the broker loop only hops back here when reading is actually held.
    private static let maxPendingBatches = 4

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
        self.context = context
        handoff = host.handoffs.handoff(on: context.eventLoop)
    }

    /// Runs `work` on the broker loop, after what this connection handed over before.
    private func toBroker(_ work: @escaping @Sendable () -> Void) {
        if let handoff { handoff.send(work) } else { host.loop.execute(work) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The context holds this handler: keeping it after removal would be a cycle that leaks
        // the whole pipeline of every closed connection.
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // A socket that never sends CONNECT is closed after the connect timeout (half-open sockets).
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let remote = context.remoteAddress.logText
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
        let host = self.host
        let id = self.id
        let cause = closeCause
        toBroker { host.closed(id, cause: cause) }
        context.fireChannelInactive()
    }

    /// A reader that stops reading must not make us buffer without bound: the broker holds its
    /// messages in the session queue (bounded, drops counted) until the socket drains.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let host = self.host
        let id = self.id
        let writable = context.channel.isWritable
        toBroker { host.writabilityChanged(id, writable: writable) }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let input = unwrapInboundIn(data)
        host.traffic.received(input.readableBytes)
        var packets: [Packet] = []
        var connect: ConnectPacket? = nil
        do {
            try decoder.process(buffer: input) { packet in
                if version == nil, case .connect(let first) = packet {
                    version = first.protocolVersion
                    if case .connect(let connectTimer)? = timer {
                        connectTimer.cancel()
                        timer = nil  // a kept `Scheduled` holds its promise and task for the connection's life
                    }
                    connect = first
                } else {
                    packets.append(packet)
                }
            }
            // A read that ended on a packet boundary leaves nothing to keep, but the processor still holds
            // the consumed buffer: hand it an empty one so it lets go, and the channel's pooled receive
            // buffer is uniquely owned again and reused for the next read instead of a new allocation.
            if decoder.unprocessedBytes == 0 { try decoder.process(buffer: Self.noBytes) { _ in } }
            dispatch(connect: connect, packets: packets, context: context)
        } catch {
            // What decoded before the bad packet is the client's too (a PUBLISH, then garbage).
            dispatch(connect: connect, packets: packets, context: context)
            reject(MQTTError(decoding: error, maximumPacketSize: maximumPacketSize), context: context)
        }
    }

    private func dispatch(connect: ConnectPacket?, packets: [Packet], context: ChannelHandlerContext) {
        guard connect != nil || !packets.isEmpty else { return }
        let host = self.host
        let id = self.id
        if var connect {
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
                handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                // The channel's cached address is shared; the context's is read anew (a copy to keep).
                remote: context.channel.remoteAddress ?? context.remoteAddress
            )
            let listener = shared.listener
            let verified = identityVerified
            let connect = connect
            let batch = batchStarted(context: context)
            toBroker {
                host.connect(id, connect, handle: handle, listener: listener, identityVerified: verified)
                if !packets.isEmpty { host.receive(id, packets) }
                batch.finished()
            }
        } else {
            // One closure per batch (not a second one for its completion): a PUBLISH is often a batch alone.
            let batch = batchStarted(context: context)
            toBroker {
                host.receive(id, packets)
                batch.finished()
            }
        }
    }

    /// Counts a batch handed to the broker loop; `finished()` on the result, run there, counts it done.
    private func batchStarted(context: ChannelHandlerContext) -> BatchInFlight {
        flow.started()
        return BatchInFlight(flow: flow, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
    }

    /// A batch on its way to the broker loop, and how to resume this connection's reading after it.
    private struct BatchInFlight: Sendable {
        let flow: ReadFlow
        let handler: NIOLoopBound<MQTTConnectionHandler>

        /// On the broker loop: counts the batch done and, only if reading was held for it, resumes
        /// reading on the connection's loop.
        func finished() {
            let left = flow.finished()
            if left.pending < MQTTConnectionHandler.maxPendingBatches, left.held {
                let handler = self.handler
                handler.eventLoop.execute { handler.value.resumeReading() }
            }
        }
    }

    private func resumeReading() {
        guard flow.resume(), let context else { return }
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        guard !closingAfterTakeover, flow.pending >= Self.maxPendingBatches
        else {
            return context.read()
        }
        flow.hold()
        // The broker may have finished a batch between the check and the store without seeing
        // `held`: check again, or reading would stay held with nobody to resume it.
        if flow.pending < Self.maxPendingBatches {
            resumeReading()
        }
    }

    /// The spec's reaction to input that cannot be decoded [MQTT-4.13.1-1].
    private func reject(_ error: MQTTError, context: ChannelHandlerContext) {
        logger.notice(
            "closing connection after bad input",
            metadata: ["remote": "\(context.remoteAddress.logText)", "error": "\(error)"]
        )
        closeCause = .protocolError(error.message)
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
        if case .afterReading(let disconnect)? = close, let context, !closing {
            write(packets, close: nil)
            return closeAfterReading(disconnect, context: context)
        }
        guard let context, !closing, let version = forcedVersion ?? version else {
            if let context, close != nil { context.close(promise: nil) }
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
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

    /// Keeps reading (past any read hold, so a DISCONNECT queued behind a flood is seen), and closes at
    /// the end of the window unless the client's DISCONNECT or end of stream closed it first.
    private func closeAfterReading(_ disconnect: DisconnectPacket?, context: ChannelHandlerContext) {
        guard !closingAfterTakeover else { return }
        timer?.cancel()  // a connect timer is gone by now: only a connection past CONNECT is taken over
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let takeoverClose = context.eventLoop.scheduleTask(in: Self.takeoverReadWindow) {
            handler.value.write([], close: disconnect.map { .after($0) } ?? .silently)
        }
        timer = .takeoverClose(takeoverClose)
        context.read()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let remote = context.remoteAddress.logText
        let alert = (try? context.pipeline.syncOperations.handler(type: TLSAlertRecorder.self))?.alert
        if !TLSFailure.log(error, remote: remote, alert: alert, to: logger) {
            logger.debug("connection error", metadata: ["remote": "\(remote)", "error": "\(error)"])
        }
        if closeCause == nil { closeCause = .socketError(NetworkErrorText.describe(error)) }
        context.close(promise: nil)
    }
}

/// Loop-bound: other loops reach it only through `NIOLoopBound` (`ConnectionHandle`).
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

/// Batches in flight to the broker loop, and whether reading waits for them, in one atomic word (the
/// count below `heldBit`): one allocation per connection where two atomics and their box were three.
private struct ReadFlow: Sendable {
    private let state = ManagedAtomic<Int>(0)
    private static let heldBit = 1 << 62

    var pending: Int { state.load(ordering: .sequentiallyConsistent) & (Self.heldBit - 1) }

    func started() { state.wrappingIncrement(ordering: .sequentiallyConsistent) }

    /// Counts a batch done; returns the batches still pending and whether reading is held.
    func finished() -> (pending: Int, held: Bool) {
        let now = state.wrappingDecrementThenLoad(ordering: .sequentiallyConsistent)
        return (now & (Self.heldBit - 1), now & Self.heldBit != 0)
    }

    func hold() { _ = state.loadThenBitwiseOr(with: Self.heldBit, ordering: .sequentiallyConsistent) }

    /// Clears the hold; true when reading was held (the caller resumes it).
    func resume() -> Bool {
        state.loadThenBitwiseAnd(with: ~Self.heldBit, ordering: .sequentiallyConsistent) & Self.heldBit != 0
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
