/// The client side of one MQTT session, as a pure state machine: no channel and no clock. The caller
/// feeds it what the server sent and what the application wants, each with the current time, and
/// writes the packets it hands back. It owns what every MQTT client must get right the same way:
///
/// - packet identifiers: never 0 [MQTT-2.2.1-3], never one still in flight;
/// - the QoS 1/2 sender window: PUBLISH → PUBACK, PUBLISH → PUBREC → PUBREL → PUBCOMP, bounded by the
///   caller's window and the server's Receive Maximum, resent with DUP after reconnecting to a session
///   the server kept [MQTT-4.4.0-1];
/// - the QoS 1/2 receiver: PUBACK, PUBREC, PUBCOMP, and QoS 2 messages delivered once until their PUBREL;
/// - keep-alive: PINGREQ when nothing was sent for the keep-alive, close when its PINGRESP is overdue
///   (or, for a link that mostly sends, when the server has been silent too long: `KeepAliveCheck`);
/// - SUBSCRIBE and UNSUBSCRIBE: each acknowledgement matched to its request, one reason code per filter;
/// - the server's protocol violations, as `MQTTClientSessionError`s carrying the reason code a DISCONNECT
///   should give.
///
/// Packets outside a session's concern (AUTH) are the server's protocol error here: these clients do
/// not do enhanced authentication.
public struct MQTTClientSession<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public struct Configuration: Sendable, Hashable {
        /// QoS 1/2 messages in flight at most (the server's Receive Maximum may lower it). Capped below
        /// 65535 so a free packet identifier always exists for SUBSCRIBE and UNSUBSCRIBE.
        public var maximumInFlight: Int
        /// How keep-alive decides that the server is gone.
        public var keepAliveCheck: KeepAliveCheck
        /// False: an inbound QoS 1/2 message is acknowledged only when the caller says it was kept
        /// (`acknowledge(_:now:)`): a bridge acknowledges once the local broker has the message.
        public var acknowledgesOnDelivery: Bool

        public init(
            maximumInFlight: Int = 65_000,
            keepAliveCheck: KeepAliveCheck = .pingResponse(timeout: nil),
            acknowledgesOnDelivery: Bool = true
        ) {
            self.maximumInFlight = max(1, min(maximumInFlight, 65_000))
            self.keepAliveCheck = keepAliveCheck
            self.acknowledgesOnDelivery = acknowledgesOnDelivery
        }
    }

    public enum KeepAliveCheck: Sendable, Hashable {
        /// The spec's client: PINGREQ when nothing was sent for the keep-alive [MQTT-3.1.2-23]; gone when
        /// its PINGRESP is later than `timeout` (nil: the keep-alive).
        case pingResponse(timeout: Duration?)
        /// For a link that mostly sends (a bridge), whose sending alone never triggers a PINGREQ: PINGREQ
        /// also when nothing was received for the keep-alive; gone when nothing at all arrived for one and
        /// a half keep-alives, the rule a server applies to its clients [MQTT-3.1.2-24].
        case silence
    }

    /// What a packet from the server means to the application. The packet to write back, if any,
    /// comes separately (`Reaction.reply`).
    public enum Event: Sendable, Hashable {
        /// CONNACK accepted. `resend` are the QoS 1/2 PUBLISHes (DUP set) and PUBRELs still in flight
        /// from the previous connection, in the order first sent: write them first.
        case connected(ConnAckPacket, resend: [Packet])
        /// CONNACK refused the connection; the session is closed.
        case connectionRefused(ConnAckPacket)
        /// A message for the application. QoS 2 arrives once per packet identifier until its PUBREL;
        /// QoS 1 may arrive again (DUP) if the server resends it before seeing the PUBACK.
        case message(PublishPacket)
        /// The outbound QoS 1 message `packetIdentifier` got its PUBACK, or the QoS 2 one its PUBCOMP
        /// (or a PUBREC with a failure code, which ends the flow [MQTT-4.3.3]). `reasonCode` is the
        /// server's: a failure means it refused the message.
        case published(packetIdentifier: UInt16, reasonCode: ReasonCode)
        /// The SUBACK of `subscribe`: each requested filter with its code (granted QoS or failure).
        case subscribed(packetIdentifier: UInt16, [FilterResult])
        /// The UNSUBACK of `unsubscribe` (3.1.1 has no codes: each is success there).
        case unsubscribed(packetIdentifier: UInt16, [FilterResult])
        /// The server sent DISCONNECT (MQTT 5); the session is closed.
        case disconnected(DisconnectPacket)
    }

    /// What one packet from the server asks for: a packet to write back and an event for the application.
    public struct Reaction: Sendable, Hashable {
        public var reply: Packet?
        public var event: Event?

        public init(reply: Packet? = nil, event: Event? = nil) {
            self.reply = reply
            self.event = event
        }
    }

    public typealias State = MQTTClientSessionState

    /// What the connection lost when it closed: requests whose acknowledgement cannot come any more,
    /// for the caller to ask again or give up.
    public struct Lost: Sendable, Hashable {
        /// The filters of each SUBSCRIBE and UNSUBSCRIBE still unacknowledged, in packet identifier order.
        public var subscribes: [[String]] = []
        public var unsubscribes: [[String]] = []
        /// QoS 1/2 messages still in flight, in send order, dropped because the session was not persistent
        /// (a persistent one keeps them and resends them on the next connection).
        public var publishes: [UInt16] = []
    }

    /// A QoS 1/2 message in flight, in the step it waits at.
    private enum Outbound: Hashable {
        /// Sent; a PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
        case awaitingAcknowledgement(PublishPacket)
        /// PUBREL sent; a PUBCOMP awaited.
        case awaitingCompletion
    }

    private struct InFlight: Hashable {
        /// Send order, so a resend after reconnecting keeps the order of the first sending.
        var order: UInt64
        var step: Outbound
    }

    public let configuration: Configuration
    public private(set) var state: State = .disconnected
    public private(set) var protocolVersion: ProtocolVersion = .v3_1_1
    /// The CONNECT asked the server to keep the session (clean start off).
    private var persistent = false
    /// The smaller of `maximumInFlight` and the server's Receive Maximum.
    public private(set) var sendWindow: Int
    private var keepAlive: Duration?
    private var lastPacketIdentifier: UInt16 = 0
    private var sendOrder: UInt64 = 0
    private var inFlight: [UInt16: InFlight] = [:]
    private var pendingSubscribes: [UInt16: [String]] = [:]
    private var pendingUnsubscribes: [UInt16: [String]] = [:]
    /// Inbound QoS 2 identifiers between PUBREC and PUBREL: a resend is not delivered again.
    private var inboundQoS2: Set<UInt16> = []
    /// Inbound QoS 1/2 messages delivered and not yet acknowledged by the caller (manual acknowledgement).
    private var awaitingAcknowledgement: [UInt16: QoS] = [:]
    private var lastSent: Instant?
    private var lastReceived: Instant?
    private var pingSentAt: Instant?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.sendWindow = configuration.maximumInFlight
    }

    /// QoS 1/2 messages sent and not yet completed.
    public var inFlightCount: Int { inFlight.count }

    /// True when a QoS 1/2 `publish` would be accepted now.
    public var canPublish: Bool { state == .connected && inFlight.count < sendWindow }

    /// Inbound QoS 1/2 messages delivered and not yet acknowledged by the caller (`acknowledge(_:now:)`).
    public var unacknowledgedDeliveryCount: Int { awaitingAcknowledgement.count }

    /// SUBSCRIBEs and UNSUBSCRIBEs awaiting their acknowledgement.
    public var pendingRequestCount: Int { pendingSubscribes.count + pendingUnsubscribes.count }

    // MARK: Connection

    /// The connection is up: the CONNECT to write. Clean start drops what a previous connection left in flight.
    public mutating func connect(_ connect: ConnectPacket, now: Instant) throws(MQTTClientSessionError) -> Packet {
        guard state == .disconnected || state == .closed else { throw .notDisconnected }
        protocolVersion = connect.protocolVersion
        persistent = !connect.cleanStart
        if connect.cleanStart { forgetSession() }
        keepAlive = connect.keepAlive == 0 ? nil : .seconds(Int(connect.keepAlive))
        state = .connecting
        lastSent = now
        lastReceived = now
        pingSentAt = nil
        return .connect(connect)
    }

    /// The connection ended (closed by either side, or lost). What is in flight stays for the next
    /// connection of a persistent session and is dropped otherwise; see `Lost`.
    public mutating func connectionClosed() -> Lost {
        var lost = Lost(
            subscribes: pendingSubscribes.sorted { $0.key < $1.key }.map(\.value),
            unsubscribes: pendingUnsubscribes.sorted { $0.key < $1.key }.map(\.value)
        )
        pendingSubscribes = [:]
        pendingUnsubscribes = [:]
        // Acknowledgements owed on this connection are not sent on the next: the server resends.
        awaitingAcknowledgement = [:]
        if !persistent {
            lost.publishes = inFlight.sorted { $0.value.order < $1.value.order }.map(\.key)
            forgetSession()
        }
        state = .disconnected
        pingSentAt = nil
        return lost
    }

    private mutating func forgetSession() {
        inFlight = [:]
        inboundQoS2 = []
        awaitingAcknowledgement = [:]
    }

    // MARK: From the application

    /// Assigns `message` a packet identifier (QoS 1/2) and records it in flight: the PUBLISH to write.
    /// QoS 0 passes through. Throws `.sendWindowFull` when `canPublish` is false.
    public mutating func publish(_ message: PublishPacket, now: Instant) throws(MQTTClientSessionError) -> PublishPacket
    {
        guard state == .connected else { throw .notConnected }
        var message = message
        message.dup = false
        guard message.qos != .atMostOnce else {
            message.packetIdentifier = nil
            lastSent = now
            return message
        }
        guard inFlight.count < sendWindow else { throw .sendWindowFull(sendWindow) }
        let id = allocatePacketIdentifier()
        message.packetIdentifier = id
        return record(message, id, now: now)
    }

    /// For a caller that keeps its own copies of what it sends (a bridge reads them back from its
    /// queue) instead of the session's `resend`: a QoS 1/2 message from an earlier connection of a
    /// session the server kept, sent again with DUP and its old `packetIdentifier` [MQTT-4.4.0-1].
    /// When that identifier is taken on this connection, a fresh one without DUP. Throws as `publish`.
    public mutating func publish(
        _ message: PublishPacket,
        resending packetIdentifier: UInt16,
        now: Instant
    ) throws(MQTTClientSessionError) -> PublishPacket {
        guard packetIdentifier != 0, message.qos != .atMostOnce, !isInUse(packetIdentifier) else {
            return try publish(message, now: now)
        }
        guard state == .connected else { throw .notConnected }
        guard inFlight.count < sendWindow else { throw .sendWindowFull(sendWindow) }
        var message = message
        message.dup = true
        message.packetIdentifier = packetIdentifier
        return record(message, packetIdentifier, now: now)
    }

    private mutating func record(_ message: PublishPacket, _ id: UInt16, now: Instant) -> PublishPacket {
        sendOrder += 1
        inFlight[id] = InFlight(order: sendOrder, step: .awaitingAcknowledgement(message))
        lastSent = now
        return message
    }

    /// A SUBSCRIBE for `subscriptions`, its acknowledgement to be matched (`Event.subscribed`).
    public mutating func subscribe(
        _ subscriptions: [TopicSubscription],
        properties: Properties = .none,
        now: Instant
    ) throws(MQTTClientSessionError) -> SubscribePacket {
        guard state == .connected else { throw .notConnected }
        guard !subscriptions.isEmpty else { throw .emptyRequest(.subscribe) }  // [MQTT-3.8.3-3]
        let id = allocatePacketIdentifier()
        pendingSubscribes[id] = subscriptions.map(\.filter)
        lastSent = now
        return SubscribePacket(packetIdentifier: id, subscriptions: subscriptions, properties: properties)
    }

    /// An UNSUBSCRIBE for `filters`, its acknowledgement to be matched (`Event.unsubscribed`).
    public mutating func unsubscribe(
        _ filters: [String],
        properties: Properties = .none,
        now: Instant
    ) throws(MQTTClientSessionError) -> UnsubscribePacket {
        guard state == .connected else { throw .notConnected }
        guard !filters.isEmpty else { throw .emptyRequest(.unsubscribe) }  // [MQTT-3.10.3-2]
        let id = allocatePacketIdentifier()
        pendingUnsubscribes[id] = filters
        lastSent = now
        return UnsubscribePacket(packetIdentifier: id, filters: filters, properties: properties)
    }

    /// With `acknowledgesOnDelivery` off: the caller has kept inbound message `packetIdentifier`; the
    /// PUBACK or PUBREC to write. Nil when nothing is owed (already acknowledged, or from an earlier connection).
    public mutating func acknowledge(_ packetIdentifier: UInt16, now: Instant) -> Packet? {
        guard state == .connected, let qos = awaitingAcknowledgement.removeValue(forKey: packetIdentifier) else {
            return nil
        }
        lastSent = now
        return acknowledgement(packetIdentifier, qos)
    }

    /// Keep-alive: call at least once a second while connected (or at `nextDeadline`). Returns a
    /// PINGREQ to write when one is due (`KeepAliveCheck`); throws `.keepAliveTimeout` when the server
    /// counts as gone (close the connection, MQTT 5 with reason 0x8D in DISCONNECT).
    public mutating func tick(now: Instant) throws(MQTTClientSessionError) -> Packet? {
        guard state == .connected, let keepAlive, let lastSent, let lastReceived else { return nil }
        let idle = lastSent.duration(to: now) >= keepAlive
        switch configuration.keepAliveCheck {
        case .pingResponse(let timeout):
            if let pingSentAt {
                if pingSentAt.duration(to: now) >= timeout ?? keepAlive { throw .keepAliveTimeout }
                return nil
            }
            guard idle else { return nil }
        case .silence:
            let silence = lastReceived.duration(to: now)
            if silence >= keepAlive * 1.5 { throw .keepAliveTimeout }
            guard pingSentAt == nil, idle || silence >= keepAlive else { return nil }
        }
        pingSentAt = now
        self.lastSent = now
        return .pingReq
    }

    /// When `tick` next has something to do; nil: nothing (no keep-alive, or not connected).
    public var nextDeadline: Instant? {
        guard state == .connected, let keepAlive, let lastSent, let lastReceived else { return nil }
        switch configuration.keepAliveCheck {
        case .pingResponse(let timeout):
            if let pingSentAt { return pingSentAt.advanced(by: timeout ?? keepAlive) }
            return lastSent.advanced(by: keepAlive)
        case .silence:
            let gone = lastReceived.advanced(by: keepAlive * 1.5)
            guard pingSentAt == nil else { return gone }
            return min(gone, lastSent.advanced(by: keepAlive), lastReceived.advanced(by: keepAlive))
        }
    }

    // MARK: From the server

    /// One packet from the server. A violation throws and leaves the session as it was but for the time
    /// the server was last heard from: close the connection (MQTT 5: DISCONNECT with `error.reasonCode`),
    /// or log and go on where the caller is lenient.
    public mutating func received(_ packet: Packet, now: Instant) throws(MQTTClientSessionError) -> Reaction {
        lastReceived = now
        switch state {
        case .disconnected, .closed:
            throw .unexpectedPacket(packet.type, state)
        case .connecting:
            guard case .connAck(let connAck) = packet else { throw .unexpectedPacket(packet.type, state) }
            return try connected(connAck)
        case .connected:
            break
        }
        switch packet {
        case .publish(let publish):
            return try receivedPublish(publish, now: now)
        case .pubAck(let ack):
            guard let entry = inFlight[ack.packetIdentifier] else {
                throw .unknownPacketIdentifier(.pubAck, ack.packetIdentifier)
            }
            guard case .awaitingAcknowledgement(let message) = entry.step, message.qos == .atLeastOnce else {
                throw .wrongAcknowledgement(.pubAck, ack.packetIdentifier)
            }
            inFlight[ack.packetIdentifier] = nil
            return Reaction(event: .published(packetIdentifier: ack.packetIdentifier, reasonCode: ack.reasonCode))
        case .pubRec(let rec):
            guard let entry = inFlight[rec.packetIdentifier] else {
                throw .unknownPacketIdentifier(.pubRec, rec.packetIdentifier)
            }
            switch entry.step {
            case .awaitingAcknowledgement(let message) where message.qos == .exactlyOnce:
                if rec.reasonCode.isFailure {
                    // A refusing PUBREC ends the flow: no PUBREL [MQTT-4.3.3].
                    inFlight[rec.packetIdentifier] = nil
                    return Reaction(
                        event: .published(packetIdentifier: rec.packetIdentifier, reasonCode: rec.reasonCode)
                    )
                }
                inFlight[rec.packetIdentifier]!.step = .awaitingCompletion
            case .awaitingCompletion:
                break  // a PUBREC resent: the PUBREL again
            case .awaitingAcknowledgement:
                throw .wrongAcknowledgement(.pubRec, rec.packetIdentifier)
            }
            lastSent = now
            return Reaction(reply: .pubRel(PubAckPacket(packetIdentifier: rec.packetIdentifier)))
        case .pubComp(let comp):
            guard let entry = inFlight[comp.packetIdentifier] else {
                throw .unknownPacketIdentifier(.pubComp, comp.packetIdentifier)
            }
            guard entry.step == .awaitingCompletion else {
                throw .wrongAcknowledgement(.pubComp, comp.packetIdentifier)
            }
            inFlight[comp.packetIdentifier] = nil
            return Reaction(event: .published(packetIdentifier: comp.packetIdentifier, reasonCode: comp.reasonCode))
        case .pubRel(let rel):
            // A PUBREL for an identifier not held is answered too: the PUBCOMP may have been lost
            // (MQTT 5 says so with 0x92).
            let known = inboundQoS2.remove(rel.packetIdentifier) != nil
            let code: ReasonCode = known || protocolVersion != .v5 ? .success : .packetIdentifierNotFound
            lastSent = now
            return Reaction(reply: .pubComp(PubAckPacket(packetIdentifier: rel.packetIdentifier, reasonCode: code)))
        case .subAck(let ack):
            guard let filters = pendingSubscribes[ack.packetIdentifier] else {
                throw .unknownPacketIdentifier(.subAck, ack.packetIdentifier)
            }
            // [MQTT-3.8.4-6]: one code per filter, in order.
            guard ack.reasonCodes.count == filters.count else {
                throw .reasonCodeCount(
                    .subAck,
                    ack.packetIdentifier,
                    expected: filters.count,
                    got: ack.reasonCodes.count
                )
            }
            pendingSubscribes[ack.packetIdentifier] = nil
            let result = zip(filters, ack.reasonCodes).map { FilterResult(filter: $0, reasonCode: $1) }
            return Reaction(event: .subscribed(packetIdentifier: ack.packetIdentifier, result))
        case .unsubAck(let ack):
            guard let filters = pendingUnsubscribes[ack.packetIdentifier] else {
                throw .unknownPacketIdentifier(.unsubAck, ack.packetIdentifier)
            }
            let codes = protocolVersion == .v5 ? ack.reasonCodes : Array(repeating: .success, count: filters.count)
            guard codes.count == filters.count else {
                throw .reasonCodeCount(.unsubAck, ack.packetIdentifier, expected: filters.count, got: codes.count)
            }
            pendingUnsubscribes[ack.packetIdentifier] = nil
            let result = zip(filters, codes).map { FilterResult(filter: $0, reasonCode: $1) }
            return Reaction(event: .unsubscribed(packetIdentifier: ack.packetIdentifier, result))
        case .pingResp:
            pingSentAt = nil
            return Reaction()
        case .disconnect(let disconnect):
            state = .closed
            return Reaction(event: .disconnected(disconnect))
        case .connect, .connAck, .subscribe, .unsubscribe, .pingReq, .auth:
            throw .unexpectedPacket(packet.type, state)
        }
    }

    private mutating func connected(_ connAck: ConnAckPacket) throws(MQTTClientSessionError) -> Reaction {
        guard !connAck.reasonCode.isFailure else {
            state = .closed
            return Reaction(event: .connectionRefused(connAck))
        }
        // [MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-2] (5.0): a session the client did not ask to keep cannot be present.
        if connAck.sessionPresent && !persistent { throw .sessionPresentOnCleanStart }
        state = .connected
        sendWindow = min(configuration.maximumInFlight, Int(connAck.properties.receiveMaximum ?? .max))
        if let serverKeepAlive = connAck.properties.serverKeepAlive {
            keepAlive = serverKeepAlive == 0 ? nil : .seconds(Int(serverKeepAlive))  // [MQTT-3.2.2-21]
        }
        var resend: [Packet] = []
        if connAck.sessionPresent {
            // [MQTT-4.4.0-1]: unacknowledged PUBLISHes and PUBRELs again, with their identifiers.
            for (id, entry) in inFlight.sorted(by: { $0.value.order < $1.value.order }) {
                switch entry.step {
                case .awaitingAcknowledgement(var message):
                    message.dup = true
                    resend.append(.publish(message))
                case .awaitingCompletion:
                    resend.append(.pubRel(PubAckPacket(packetIdentifier: id)))
                }
            }
        } else {
            // The server has no session: what was in flight starts over as new messages; a QoS 2
            // message past PUBREC was received, and its PUBREL now has nothing to release.
            for (id, entry) in inFlight.sorted(by: { $0.value.order < $1.value.order }) {
                switch entry.step {
                case .awaitingAcknowledgement(let message): resend.append(.publish(message))
                case .awaitingCompletion: inFlight[id] = nil
                }
            }
            inboundQoS2 = []
        }
        return Reaction(event: .connected(connAck, resend: resend))
    }

    private mutating func receivedPublish(_ publish: PublishPacket, now: Instant) throws(MQTTClientSessionError)
        -> Reaction
    {
        guard let id = publish.packetIdentifier, publish.qos != .atMostOnce else {
            return Reaction(event: .message(publish))
        }
        if awaitingAcknowledgement[id] != nil {
            // Resent while the caller still keeps the first copy: acknowledged when that is kept.
            return Reaction()
        }
        if publish.qos == .exactlyOnce && inboundQoS2.contains(id) {
            // Delivered already; the server did not see the PUBREC [MQTT-4.3.3-10].
            lastSent = now
            return Reaction(reply: .pubRec(PubAckPacket(packetIdentifier: id)))
        }
        if publish.qos == .exactlyOnce { inboundQoS2.insert(id) }
        guard configuration.acknowledgesOnDelivery else {
            awaitingAcknowledgement[id] = publish.qos
            return Reaction(event: .message(publish))
        }
        lastSent = now
        return Reaction(reply: acknowledgement(id, publish.qos), event: .message(publish))
    }

    private func acknowledgement(_ id: UInt16, _ qos: QoS) -> Packet {
        qos == .exactlyOnce ? .pubRec(PubAckPacket(packetIdentifier: id)) : .pubAck(PubAckPacket(packetIdentifier: id))
    }

    /// The next identifier after the last one given, skipping 0 and any still in use. The window is
    /// capped below 65535, so one is always free.
    private mutating func allocatePacketIdentifier() -> UInt16 {
        repeat {
            lastPacketIdentifier = lastPacketIdentifier == .max ? 1 : lastPacketIdentifier + 1
        } while isInUse(lastPacketIdentifier)
        return lastPacketIdentifier
    }

    private func isInUse(_ id: UInt16) -> Bool {
        inFlight[id] != nil || pendingSubscribes[id] != nil || pendingUnsubscribes[id] != nil
    }
}

/// What went wrong in a client session: the server broke the protocol, or the caller asked for
/// something the session cannot do now. `reasonCode` is what an MQTT 5 DISCONNECT would say.
public enum MQTTClientSessionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The server sent a packet that has no place in this state (a PUBLISH before CONNACK, a SUBSCRIBE...).
    case unexpectedPacket(PacketType, MQTTClientSessionState)
    /// An acknowledgement for an identifier nothing is waiting on.
    case unknownPacketIdentifier(PacketType, UInt16)
    /// An acknowledgement of the wrong kind for its identifier's flow (PUBACK for QoS 2, PUBCOMP before PUBREC...).
    case wrongAcknowledgement(PacketType, UInt16)
    /// A SUBACK or UNSUBACK whose reason codes do not match the request's filters one to one.
    case reasonCodeCount(PacketType, UInt16, expected: Int, got: Int)
    /// CONNACK says session present although the CONNECT asked for a clean start.
    case sessionPresentOnCleanStart
    /// No PINGRESP within the ping timeout, or (`KeepAliveCheck.silence`) nothing from the server for 1.5
    /// keep-alives.
    case keepAliveTimeout
    /// The caller: QoS 1/2 while the window (this many) is full; wait for `Event.published`.
    case sendWindowFull(Int)
    /// The caller: a request before CONNACK or after the connection ended.
    case notConnected
    /// The caller: `connect` while a connection is already up.
    case notDisconnected
    /// The caller: SUBSCRIBE or UNSUBSCRIBE without any filter.
    case emptyRequest(PacketType)

    public var reasonCode: ReasonCode {
        switch self {
        case .unexpectedPacket, .wrongAcknowledgement, .reasonCodeCount, .sessionPresentOnCleanStart: .protocolError
        case .unknownPacketIdentifier: .packetIdentifierNotFound
        case .keepAliveTimeout: .keepAliveTimeout
        case .sendWindowFull: .receiveMaximumExceeded
        case .notConnected, .notDisconnected, .emptyRequest: .implementationSpecificError
        }
    }

    public var description: String {
        func name(_ type: PacketType) -> String { "\(type)".uppercased() }  // PUBACK, as the spec writes it
        let text =
            switch self {
            case .unexpectedPacket(let type, let state): "unexpected \(name(type)) from the server while \(state)"
            case .unknownPacketIdentifier(let type, let id): "\(name(type)) for unknown packet identifier \(id)"
            case .wrongAcknowledgement(let type, let id):
                "\(name(type)) does not fit the flow of packet identifier \(id)"
            case .reasonCodeCount(let type, let id, let expected, let got):
                "\(name(type)) \(id) carries \(got) reason codes for \(expected) filters"
            case .sessionPresentOnCleanStart: "CONNACK says session present after a clean start"
            case .keepAliveTimeout: "no answer from the server within the keep-alive"
            case .sendWindowFull(let window): "\(window) messages in flight already"
            case .notConnected: "not connected"
            case .notDisconnected: "already connected"
            case .emptyRequest(let type): "\(name(type)) without a topic filter"
            }
        return "\(text) (\(reasonCode.named))"
    }
}

public enum MQTTClientSessionState: Sendable, Hashable {
    /// No connection (before the first, or after one ended).
    case disconnected
    /// CONNECT written, CONNACK awaited.
    case connecting
    case connected
    /// CONNACK refused, or DISCONNECT from the server: nothing more on this connection.
    case closed
}

/// One filter of a SUBSCRIBE or UNSUBSCRIBE with the server's code for it.
public struct FilterResult: Sendable, Hashable {
    public var filter: String
    public var reasonCode: ReasonCode

    public init(filter: String, reasonCode: ReasonCode) {
        self.filter = filter
        self.reasonCode = reasonCode
    }
}
