import MQTTCore
import NIOCore
import NIOPosix

/// Monotonic nanoseconds (CLOCK_MONOTONIC through Dispatch): publisher and subscriber live in
/// this one process, so a timestamp written into a payload can be compared on receipt.
@inline(__always) func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One lean MQTT 3.1.1 connection used as publisher, subscriber or bare connection.
/// All state is touched only on its event loop; results are read after the loop has
/// signalled completion (or through `loop.submit`), hence `@unchecked Sendable`.
final class BenchConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let loop: EventLoop
    let clientID: String
    let cleanSession: Bool
    let keepAlive: UInt16
    let connAck: EventLoopPromise<Void>
    private var cumulation: ByteBuffer?
    private var context: ChannelHandlerContext?
    private var out: ByteBuffer
    private var subAck: EventLoopPromise<Void>?
    private(set) var closed = false
    /// Packet ids, the QoS 1/2 window and the acknowledgement flows (MQTTCore's client session). A
    /// subscriber's PUBLISHes take the fast path below instead, answered without it.
    private var session = MQTTClientSession<ContinuousClock.Instant>()

    // Subscriber side.
    var expected = 0
    private(set) var received = 0
    private(set) var firstReceive: UInt64 = 0
    private(set) var lastReceive: UInt64 = 0
    var recordLatency = false
    private(set) var latencies: [UInt64] = []
    /// Publisher side: the time from writing each QoS 1/2 PUBLISH to its PUBACK/PUBCOMP.
    var recordAckLatency = false
    private(set) var ackLatencies: [UInt64] = []
    private var sentAt: [UInt16: UInt64] = [:]
    var subscriberDone: EventLoopPromise<Void>?

    // Publisher side.
    private var topic = ""
    private var qos: QoS = .atMostOnce
    private var payloadSize = 64
    private var total = 0
    private(set) var sent = 0
    private(set) var completed = 0  // PUBACK / PUBCOMP received (QoS 0: written)
    private var window = 100
    private var publisherDone: EventLoopPromise<Void>?
    private var rate: Double = 0  // msg/s; 0 = as fast as flow control allows
    private var pubStart: UInt64 = 0
    private var pacer: RepeatedTask?
    private var scheduledMore = false

    init(loop: EventLoop, clientID: String, cleanSession: Bool = true, keepAlive: UInt16 = 600) {
        self.loop = loop
        self.clientID = clientID
        self.cleanSession = cleanSession
        self.keepAlive = keepAlive
        self.connAck = loop.makePromise()
        self.out = ByteBuffer()
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        out = context.channel.allocator.buffer(capacity: 64 * 1024)
        let connect = ConnectPacket(
            protocolVersion: .v3_1_1,
            clientIdentifier: clientID,
            cleanStart: cleanSession,
            keepAlive: keepAlive
        )
        guard let packet = try? session.connect(connect, now: .now) else { return }
        MQTTCodec.encode(packet, version: .v3_1_1, into: &out)
        flushOut()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        pacer?.cancel()
        let err = BenchError("\(clientID): connection closed")
        connAck.fail(err)
        subAck?.fail(err)
        publisherDone?.fail(err)
        subscriberDone?.fail(err)
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation!.writeBuffer(&incoming)
        }
        do {
            while let frame = try MQTTCodec.readFrame(
                from: &cumulation!,
                maximumPacketSize: MQTTCodec.maximumPacketSize
            ) {
                // Fast path for PUBLISH received by subscribers: QoS from the flags, packet id and
                // timestamp read directly, to keep the generator lean (the decoder is exercised too
                // for everything else).
                if frame.packetType == .publish {
                    handlePublish(frame)
                } else {
                    handle(try MQTTCodec.decode(frame, version: .v3_1_1))
                }
            }
        } catch {
            context.close(promise: nil)
            return
        }
        if cumulation!.readableBytes == 0 {
            cumulation = nil
        } else if cumulation!.readerIndex > 64 * 1024 {
            cumulation!.discardReadBytes()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if publisherDone != nil, rate == 0 { sendMore() }
        flushOut()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, publisherDone != nil, rate == 0 { sendMore() }
    }

    private func flushOut() {
        guard let context, out.readableBytes > 0 else { return }
        let chunk = out
        out = context.channel.allocator.buffer(capacity: 64 * 1024)
        context.writeAndFlush(wrapOutboundOut(chunk), promise: nil)
    }

    // MARK: Incoming

    private func handlePublish(_ frame: MQTTFrame) {
        let q = (frame.flags >> 1) & 0x03
        var body = frame.body
        guard let topicLength = body.readInteger(as: UInt16.self) else { return }
        body.moveReaderIndex(forwardBy: Int(topicLength))
        var packetID: UInt16 = 0
        if q > 0 { packetID = body.readInteger(as: UInt16.self) ?? 0 }
        let now = nowNanos()
        if recordLatency, let sentAt = body.readInteger(as: UInt64.self) {
            latencies.append(now &- sentAt)
        }
        if received == 0 { firstReceive = now }
        lastReceive = now
        received += 1
        if q == 1 {
            MQTTCodec.encode(.pubAck(PubAckPacket(packetIdentifier: packetID)), version: .v3_1_1, into: &out)
        } else if q == 2 {
            MQTTCodec.encode(.pubRec(PubAckPacket(packetIdentifier: packetID)), version: .v3_1_1, into: &out)
        }
        if received == expected { subscriberDone?.succeed(()) }
    }

    private func handle(_ packet: Packet) {
        let reaction: MQTTClientSession<ContinuousClock.Instant>.Reaction
        do {
            reaction = try session.received(packet, now: .now)
        } catch {
            context?.close(promise: nil)  // the broker broke the protocol: this run's figures are void
            return
        }
        if let reply = reaction.reply { MQTTCodec.encode(reply, version: .v3_1_1, into: &out) }
        switch reaction.event {
        case .connected:
            connAck.succeed(())
        case .connectionRefused(let ack):
            connAck.fail(BenchError("CONNACK \(ack.reasonCode)"))
        case .subscribed(_, let results):
            if results.allSatisfy({ !$0.reasonCode.isFailure }) {
                subAck?.succeed(())
            } else {
                subAck?.fail(BenchError("SUBACK \(results.map(\.reasonCode))"))
            }
        case .published(let id, _):
            ackOne(id)
        case .message, .unsubscribed, .disconnected, nil:
            break
        }
    }

    private func ackOne(_ packetID: UInt16) {
        if recordAckLatency, let sent = sentAt.removeValue(forKey: packetID) { ackLatencies.append(nowNanos() - sent) }
        completed += 1
        if completed == total { publisherDone?.succeed(()) }
    }

    // MARK: Commands (call on `loop`)

    func subscribe(_ filter: String, qos: QoS) -> EventLoopFuture<Void> {
        subscribe(filters: [filter], qos: qos)
    }

    /// One SUBSCRIBE carrying every filter of `filters`; completes on its SUBACK.
    func subscribe(filters: [String], qos: QoS) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        let p = loop.makePromise(of: Void.self)
        subAck = p
        do {
            let sub = try session.subscribe(
                filters.map { TopicSubscription(filter: $0, options: SubscriptionOptions(qos: qos)) },
                now: .now
            )
            MQTTCodec.encode(.subscribe(sub), version: .v3_1_1, into: &out)
        } catch {
            p.fail(BenchError("\(clientID): cannot subscribe: \(error)"))
        }
        flushOut()
        return p.futureResult
    }

    /// Publishes `count` messages. QoS 0: as fast as TCP back-pressure (channel writability)
    /// allows, in bursts with one flush each. QoS 1/2: keeps `window` messages in flight.
    /// `rate` > 0 paces the messages (checked every millisecond) instead.
    func startPublishing(
        topic: String,
        qos: QoS,
        payloadSize: Int,
        count: Int,
        window: Int,
        rate: Double = 0
    ) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        let p = loop.makePromise(of: Void.self)
        self.topic = topic
        self.qos = qos
        self.payloadSize = max(payloadSize, 8)
        self.total = count
        self.window = window
        self.rate = rate
        self.publisherDone = p
        self.pubStart = nowNanos()
        if count == 0 {
            p.succeed(())
            return p.futureResult
        }
        if rate > 0 {
            pacer = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] task in
                let elapsed = Double(nowNanos() - pubStart) / 1e9
                let target = min(total, Int(elapsed * rate) + 1)
                sendMore(upTo: target)
                flushOut()
                if sent >= total { task.cancel() }
            }
        } else {
            sendMore()
            flushOut()
        }
        return p.futureResult
    }

    private func sendMore(upTo limit: Int? = nil) {
        guard let context, !closed else { return }
        let target = limit ?? total
        let now = ContinuousClock.now  // for the session's keep-alive only: one reading per burst
        var burst = 0
        while sent < target {
            if qos == .atMostOnce {
                if !context.channel.isWritable { break }
                if burst >= 256 {
                    // Yield to reads; continue on the next loop tick.
                    if !scheduledMore {
                        scheduledMore = true
                        loop.execute { [self] in
                            scheduledMore = false
                            if rate == 0 { sendMore() }
                            flushOut()
                        }
                    }
                    break
                }
            } else if session.inFlightCount >= window || !session.canPublish {
                break
            }
            var payload = context.channel.allocator.buffer(capacity: payloadSize)
            payload.writeInteger(nowNanos())
            payload.writeRepeatingByte(0x61, count: payloadSize - 8)
            guard let publish = try? session.publish(PublishPacket(topic: topic, payload: payload, qos: qos), now: now)
            else { break }
            if recordAckLatency, let id = publish.packetIdentifier { sentAt[id] = nowNanos() }
            MQTTCodec.encode(.publish(publish), version: .v3_1_1, into: &out)
            sent += 1
            burst += 1
            if out.readableBytes >= 60 * 1024 { flushOut() }
        }
        if qos == .atMostOnce && sent == total && completed < total {
            // QoS 0 is "done" once the last byte is handed to the kernel.
            completed = total
            let done = publisherDone
            flushOut()
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                done?.succeed(())
            }
        }
    }

    /// Sends DISCONNECT and closes.
    func disconnect() {
        loop.preconditionInEventLoop()
        guard let context, !closed else { return }
        MQTTCodec.encode(.disconnect(DisconnectPacket()), version: .v3_1_1, into: &out)
        let chunk = out
        out = context.channel.allocator.buffer(capacity: 0)
        let channel = context.channel  // Sendable, unlike the context
        context.writeAndFlush(wrapOutboundOut(chunk)).whenComplete { _ in channel.close(promise: nil) }
    }
}

enum Net {
    /// Opens a TCP connection and completes when CONNACK arrives.
    static func connect(
        group: EventLoopGroup,
        port: Int,
        clientID: String,
        cleanSession: Bool = true,
        keepAlive: UInt16 = 600
    ) -> EventLoopFuture<(Channel, BenchConnection)> {
        let loop = group.next()
        let conn = BenchConnection(loop: loop, clientID: clientID, cleanSession: cleanSession, keepAlive: keepAlive)
        return ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in channel.pipeline.addHandler(conn) }
            .connect(host: "127.0.0.1", port: port)
            .flatMap { channel in
                conn.connAck.futureResult.map { (channel, conn) }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    static func closeAll(_ channels: [Channel]) async {
        for ch in channels {
            try? await ch.close()
        }
    }

    /// A free loopback port (bind to 0, read the port, close).
    static func freePort(group: EventLoopGroup) async throws -> Int {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        try await server.close()
        return port
    }

    /// True when something accepts a TCP connection on the port.
    static func canConnect(group: EventLoopGroup, port: Int) async -> Bool {
        do {
            let ch = try await ClientBootstrap(group: group).connectTimeout(.milliseconds(500))
                .connect(host: "127.0.0.1", port: port).get()
            try? await ch.close()
            return true
        } catch {
            return false
        }
    }
}
