import GWMPCore
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceBroker
import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// `lorawan_udp_listener`: Semtech UDP packet forwarders in, ChirpStack-style MQTT messages out.
///
/// Everything runs on the broker host's loop (the UDP channel is bound there too): datagrams are
/// decoded by `GWMPCodec`, judged by the pure `GatewayTable`, and its actions are run here. Events
/// enter the broker as QoS 1 PUBLISHes of an in-process client, so a bridge `out` rule queues
/// uplinks durably exactly as it queues a local client's telemetry; the same client subscribes to
/// `PREFIX/gateway/+/command/down` for downlinks.
final class LoRaWANListener: @unchecked Sendable {
    private let host: BrokerHost
    private var loop: any EventLoop { host.loop }
    private let topics: GatewayTopics
    private let encoding: any GatewayEventEncoding
    private let logger: Logger
    private var table: GatewayTable<SocketAddress, SystemRandomNumberGenerator>
    private var channel: (any Channel)?
    private var client: ConnectionID?
    private var ticker: RepeatedTask?
    private let started = NIODeadline.now()
    /// The in-process client's packet identifiers and QoS flows. Its window bounds our QoS 1 publishes
    /// the broker has not acknowledged yet (it waits for the durable queues), so a stalled store holds
    /// at most that many; events beyond it are dropped and counted.
    private var session = MQTTClientSession<ContinuousClock.Instant>(configuration: .init(maximumInFlight: 4096))
    let counters = LoRaWANCounters()
    private var lastDropLog: NIODeadline?
    private var dropsSinceLog = 0

    init(host: BrokerHost, region: String, gatewayTimeoutSeconds: Int, logger: Logger) {
        self.host = host
        self.topics = GatewayTopics(prefix: region)
        self.encoding = ChirpStackJSONEncoding()
        self.logger = logger
        var settings = GatewayTable<SocketAddress, SystemRandomNumberGenerator>.Settings()
        settings.keepAliveTimeout = Int64(gatewayTimeoutSeconds) * 1000
        self.table = GatewayTable(settings: settings, random: SystemRandomNumberGenerator())
    }

    /// Monotonic milliseconds for the table.
    private var now: Int64 { (NIODeadline.now() - started).nanoseconds / 1_000_000 }

    func start(_ address: HostPort) async throws -> any Channel {
        try await loop.submit { self.connectClient() }.get()
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // One byte more than the codec accepts, so an oversize datagram is seen as such, not cut.
            .channelOption(
                .recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: GWMPCodec.maximumDatagramSize + 1)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(GWMPDatagramHandler(listener: self))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
        try await loop.submit {
            self.channel = channel
            self.ticker = self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                self.tick()
            }
        }.get()
        let bound = HostPort(host: address.host, port: channel.localAddress?.port ?? address.port)
        logger.info(
            "LoRaWAN UDP listening on \(bound) (Semtech packet forwarder; events on \(topics.prefix)/gateway/…)"
        )
        return channel
    }

    /// Publishes OFFLINE for every online gateway, then closes the socket and the in-process client.
    func stop() async {
        try? await loop.submit {
            self.ticker?.cancel()
            self.run(self.table.shutdown())
        }.get()
        try? await channel?.close()
        try? await loop.submit {
            if let client = self.client { self.host.disconnectInProcess(client) }
            self.client = nil
        }.get()
    }

    // MARK: Broker side

    private func connectClient() {
        let connect = BrokerHost.inProcessConnect(clientID: "\(BrokerHost.inProcessClientPrefix)lorawan")
        do {
            _ = try session.connect(connect, now: .now)  // the host sends the CONNECT itself
        } catch {
            logger.error("LoRaWAN listener: \(error)")
            return
        }
        client = host.connectInProcess(connect) { [weak self] packets, closed in
            guard let self else { return }
            // Called from inside the host's action loop: answer on the next turn, never re-entrantly.
            self.loop.execute { self.fromBroker(packets, closed: closed) }
        }
    }

    private func fromBroker(_ packets: [Packet], closed: Bool) {
        for packet in packets {
            let reaction: MQTTClientSession<ContinuousClock.Instant>.Reaction
            do {
                reaction = try session.received(packet, now: .now)
            } catch {
                logger.warning("LoRaWAN listener: ignored from the broker: \(error)")
                continue
            }
            if let reply = reaction.reply { send(reply) }
            switch reaction.event {
            case .connected:
                subscribeToCommands()
            case .connectionRefused(let ack):
                logger.error("LoRaWAN listener: the broker refused its client: \(ack.reasonCode.named)")
            case .message(let publish):
                downlink(publish)
            case .subscribed(_, let results):
                for refused in results where refused.reasonCode.isFailure {
                    logger.error(
                        "LoRaWAN listener: the broker refused the subscription '\(refused.filter)': \(refused.reasonCode.named)"
                    )
                }
            case .published, .unsubscribed, .disconnected, nil:
                break
            }
        }
        if closed {
            logger.error("LoRaWAN listener: the broker closed its client; connecting again in a second")
            client = nil
            _ = session.connectionClosed()  // clean session: unacknowledged events are the broker's loss, counted by it
            loop.scheduleTask(in: .seconds(1)) { if self.client == nil && self.ticker != nil { self.connectClient() } }
        }
    }

    private func downlink(_ publish: PublishPacket) {
        guard let gateway = topics.gateway(inCommandTopic: publish.topic) else { return }
        do {
            let frame = try encoding.decodeDownlink(Array(publish.payload.readableBytesView))
            run(table.downlink(frame, for: gateway, now: now))
        } catch {
            dropped("bad_downlink", gateway: gateway, detail: error.description)
        }
    }

    private func send(_ packet: Packet) {
        guard let client else { return }
        host.receive(client, packet)
    }

    private func subscribeToCommands() {
        let commands = TopicSubscription(filter: topics.commandFilter, options: SubscriptionOptions(qos: .atLeastOnce))
        do {
            send(.subscribe(try session.subscribe([commands], now: .now)))
        } catch {
            logger.error("LoRaWAN listener: cannot subscribe to \(topics.commandFilter): \(error)")
        }
    }

    private func publish(_ event: GatewayEvent, gateway: GatewayEUI) {
        guard client != nil, session.canPublish else {
            let detail =
                session.state == .connected
                ? "\(session.inFlightCount) events await the broker" : "the broker has not accepted its client yet"
            return dropped("broker_backlog", gateway: gateway, detail: detail)
        }
        let retain = if case .conn = event { true } else { false }
        let message = PublishPacket(
            topic: topics.topic(for: event, gateway: gateway),
            payload: ByteBuffer(bytes: encoding.encode(event)),
            qos: .atLeastOnce,
            retain: retain
        )
        do {
            send(.publish(try session.publish(message, now: .now)))
        } catch {
            return dropped("broker_backlog", gateway: gateway, detail: "\(error)")
        }
        counters.add(event.name, to: .events)
    }

    // MARK: UDP side

    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        loop.preconditionInEventLoop()
        do {
            let packet = try GWMPCodec.decode(Array(envelope.data.readableBytesView))
            counters.add(packet.identifier.name, to: .datagrams)
            let wallClock = WallClock.millisecondsSince1970()
            run(table.received(packet, from: envelope.remoteAddress, now: now, wallClock: wallClock))
        } catch {
            dropped(error.code.rawValue, gateway: nil, detail: "from \(envelope.remoteAddress): \(error)")
        }
    }

    private func tick() {
        run(table.tick(now: now))
        // Keeps the in-process client alive when `max_keepalive` imposes a keep-alive on it.
        send(.pingReq)
        counters.setOnline(table.onlineGateways.count)
    }

    private func run(_ actions: [GatewayTable<SocketAddress, SystemRandomNumberGenerator>.Action]) {
        for action in actions {
            switch action {
            case .send(let packet, let address):
                let bytes = GWMPCodec.encode(packet)
                channel?.writeAndFlush(
                    AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)),
                    promise: nil
                )
            case .publish(let event, let gateway):
                publish(event, gateway: gateway)
                if case .conn(let state) = event {
                    logger.info(
                        "LoRaWAN gateway \(state.state == "ONLINE" ? "online" : "offline")",
                        metadata: ["gateway": "\(gateway)"]
                    )
                }
            case .dropped(let reason, let gateway, let detail):
                dropped(reason.rawValue, gateway: gateway, detail: detail)
            }
        }
        counters.setOnline(table.onlineGateways.count)
    }

    /// Counts a drop; logs the first at once and then at most one summary a minute.
    private func dropped(_ reason: String, gateway: GatewayEUI?, detail: String) {
        counters.add(reason, to: .dropped)
        let nowDeadline = NIODeadline.now()
        if let last = lastDropLog, nowDeadline - last < .seconds(60) {
            dropsSinceLog += 1
            return
        }
        logger.notice(
            "LoRaWAN: dropped \(reason)",
            metadata: [
                "gateway": "\(gateway.map { "\($0)" } ?? "-")", "detail": "\(detail)",
                "dropped_since_last_log": "\(dropsSinceLog)",
            ]
        )
        lastDropLog = nowDeadline
        dropsSinceLog = 0
    }
}

/// Counters read by the metrics endpoint from any thread.
final class LoRaWANCounters: Sendable {
    struct Values: Sendable {
        /// Datagrams decoded, by packet type.
        var datagrams: [String: Int64] = [:]
        /// Datagrams, rxpk and downlinks dropped, by reason.
        var dropped: [String: Int64] = [:]
        /// Events published, by kind (up, stats, ack, conn).
        var events: [String: Int64] = [:]
        var gatewaysOnline = 0
    }

    private let box = NIOLockedValueBox(Values())

    var values: Values { box.withLockedValue { $0 } }

    enum Counter { case datagrams, dropped, events }

    func add(_ key: String, to counter: Counter) {
        box.withLockedValue { values in
            switch counter {
            case .datagrams: values.datagrams[key, default: 0] += 1
            case .dropped: values.dropped[key, default: 0] += 1
            case .events: values.events[key, default: 0] += 1
            }
        }
    }

    func setOnline(_ count: Int) { box.withLockedValue { $0.gatewaysOnline = count } }
}

/// Hands datagrams to the listener; writes go straight to the channel.
private final class GWMPDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let listener: LoRaWANListener

    init(listener: LoRaWANListener) { self.listener = listener }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        listener.received(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable for a gateway that went away, and the like: not fatal for a UDP socket.
    }
}

@available(*, unavailable) extension GWMPDatagramHandler: Sendable {}

extension GatewayEvent {
    var name: String {
        switch self {
        case .up: "up"
        case .stats: "stats"
        case .ack: "ack"
        case .conn: "conn"
        }
    }
}

extension GWMPIdentifier {
    var name: String {
        switch self {
        case .pushData: "push_data"
        case .pushAck: "push_ack"
        case .pullData: "pull_data"
        case .pullResp: "pull_resp"
        case .pullAck: "pull_ack"
        case .txAck: "tx_ack"
        }
    }
}
