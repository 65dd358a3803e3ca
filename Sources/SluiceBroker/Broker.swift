import DequeModule
import MQTTCore

// Note on the broker core:
// - It is a pure state machine: no sockets, no clock, no threads. Its owner feeds it events
//   (`connect`, `receive`, `closed`, `tick`, `persisted`, `publish`) with the current time and
//   carries out the returned actions in order.
// - Sessions outlive connections; a connection belongs to at most one session.
// - Durability: a PUBLISH matching a bridge's `out` rule (an internal durable subscriber, see
//   DurableRoutes.swift) yields `.persist` with its remapped appends; the PUBACK/PUBREC is produced only
//   by the `persisted` event for that token (the durability contract).
// - Protocol violations close the connection, with a DISCONNECT reason code for MQTT 5
//   [MQTT-4.13.1-1]; 3.1/3.1.1 connections are simply closed.

/// The broker rules as a value: sessions, subscriptions, retained messages, QoS flows, wills.
public struct Broker: Sendable {
    public var settings: BrokerSettings
    public var accessPolicy: (any AccessPolicy)?
    public private(set) var stats = BrokerStats()

    var sessions = SessionTable()
    private var connections: [ConnectionID: ClientConnection] = [:]
    /// Where a connection is in `connections`, for reads and changes in place; valid until one is added or removed.
    private typealias ConnectionSlot = Dictionary<ConnectionID, ClientConnection>.Index
    private var connectionsPerListener: [Int: Int] = [:]
    var subscriptions = SubscriptionTree()
    /// The bridges' outbound rules, subscribed in `subscriptions` as internal durable subscribers.
    var outboundTable: [BridgeOutbound] = []
    var retained = RetainedStore()
    var timers = WillAndExpiryTimers()
    /// What the next save writes and which acknowledgements wait for it.
    var saveJournal = SaveJournal()

    /// Whether changes are recorded for `takeChanges()`. Only persistence drains them, so without
    /// it they must not accumulate (every client identifier and retained topic ever seen would).
    public var tracksChanges: Bool {
        get { sessions.tracksChanges }
        set {
            sessions.tracksChanges = newValue
            retained.tracksChanges = newValue
            if !newValue {
                saveJournal.forgetSaved()
            }
        }
    }
    private var pendingAcks: [UInt64: PendingAck] = [:]
    private var nextToken: UInt64 = 1
    var assignedIDCounter: UInt64 = 0
    /// Random per broker instance, so an assigned id never names a session restored from disk
    /// (the counter starts again at every start; Mosquitto uses a random UUID).
    let assignedIDEpoch = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    private var actions: [BrokerAction] = []
    /// `route`'s match, kept empty between publishes for its storage.
    private var lastMatch = SubscriptionTree.Match()
    /// Connections that ended, not yet taken by the owner (`takeDepartures()`).
    private var departures: [Departure] = []
    /// Connections on their way in: authenticating, or waiting for the connection that holds their
    /// client identifier to be gone (`ConnectionAdmission`).
    private var admissions: [ConnectionID: ConnectionAdmission] = [:]
    /// When each publisher's PUBACK/PUBREC may go: in PUBLISH order, each once on disk (`pendingAcks`
    /// decides what it says) and once the subscribers it fed have no backlog (flow control).
    private var ackHolds = AckHolds()
    /// The first connected subscriber the message being routed left with a backlog (`enqueue`).
    private var routeGate: String?

    /// A PUBACK/PUBREC held until everything the message changed is on disk: its durable append
    /// (bridge queues) and/or the save of the broker state it changed (retained, persistent sessions).
    private struct PendingAck {
        /// A connection that is gone by the time the commits are in hears nothing.
        var connection: ConnectionID
        var packetID: UInt16
        var qos: QoS
        /// A QoS 2 message's publisher: its commits outlive the connection, since the session keeps the
        /// packet identifier and a resend on the next connection is answered from them.
        var clientID: String? = nil
        /// Commits still to come (1 or 2).
        var awaiting: Int
        var outcome = CommitOutcome.committed
        /// A SUBACK/UNSUBACK to send instead of a PUBACK/PUBREC.
        var reply: Packet? = nil
    }

    /// Whether acknowledgements wait for a save: the owner should save soon rather than at its interval.
    public var hasAcknowledgementsAwaitingSave: Bool { saveJournal.hasAcknowledgementsAwaitingSave }

    public init(settings: BrokerSettings = BrokerSettings()) {
        self.settings = settings
    }

    // MARK: Observers

    public var connectedClientCount: Int { connections.count }
    public var sessionCount: Int { sessions.count }
    public var retainedCount: Int { retained.count }
    public var subscriptionCount: Int { subscriptions.count }
    public var sharedSubscriptionCount: Int { subscriptions.sharedCount }
    /// Messages the broker holds (retained, and queued or in flight for sessions) and their payload bytes:
    /// `$SYS/broker/store/messages/{count,bytes}`. Walks every session: call at `sys_interval`, not per message.
    public var storedMessages: (count: Int, bytes: Int) {
        var count = retained.count
        var bytes = retained.payloadBytes
        for session in sessions.all.values {
            count += session.outbound.queue.count + session.outbound.inflight.count
            bytes += session.outbound.queuedBytes + session.outbound.inflightPayloadBytes
        }
        return (count, bytes)
    }
    public func clientID(of connection: ConnectionID) -> String? { connections[connection]?.clientID }
    public func isConnected(_ connection: ConnectionID) -> Bool { connections[connection] != nil }
    /// The index of the listener that accepted the connection, from its CONNECT on.
    public func listener(of connection: ConnectionID) -> Int? {
        admissions[connection]?.listener ?? connections[connection]?.listener
    }
    /// Its CONNECT waits until the connection holding its client identifier is gone.
    public func awaitsTakeover(_ connection: ConnectionID) -> Bool {
        if case .awaitingTakeover = admissions[connection]?.state { true } else { false }
    }
    /// Its CONNECT waits for the owner's `authenticated`.
    public func awaitsAuthentication(_ connection: ConnectionID) -> Bool {
        admissions[connection]?.state == .awaitingAuthentication
    }
    /// Messages waiting for a client beyond its in-flight window (for tests and metrics).
    public func queuedMessageCount(clientID: String) -> Int { sessions[clientID]?.outbound.queue.count ?? 0 }
    public func inflightMessageCount(clientID: String) -> Int { sessions[clientID]?.outbound.inflight.count ?? 0 }

    /// Connections that ended since the last call, each with why (for the disconnect log line).
    public mutating func takeDepartures() -> [Departure] {
        guard !departures.isEmpty else { return [] }
        defer { departures.removeAll() }
        return departures
    }

    private mutating func takeActions() -> [BrokerAction] {
        // Handed over whole: the caller's copy shares the buffer, so keeping its capacity here would
        // allocate one as large on every call (and keep a burst's size for good).
        var taken: [BrokerAction] = []
        swap(&taken, &actions)
        return taken
    }

    // MARK: Events

    /// A decoded CONNECT on a new connection. With `authenticate`, the owner checks the credentials
    /// first (`BrokerAction.authenticate`, which carries `identityVerified`: the username came from a
    /// verified client certificate) and answers with `authenticated`; what the client sends meanwhile
    /// is handled once it is admitted.
    public mutating func connect(
        _ connection: ConnectionID,
        _ packet: ConnectPacket,
        listener: Int = 0,
        authenticate: Bool = false,
        identityVerified: Bool = false,
        now: BrokerTime
    ) -> [BrokerAction] {
        if authenticate {
            admissions[connection] = ConnectionAdmission(packet, listener: listener)
            actions.append(.authenticate(connection, packet, identityVerified: identityVerified))
        } else {
            handleConnect(connection, packet, listener: listener, now: now)
        }
        return takeActions()
    }

    /// The owner's answer to `.authenticate`. Nothing when the connection closed meanwhile.
    public mutating func authenticated(
        _ connection: ConnectionID,
        _ decision: AuthenticationDecision,
        now: BrokerTime
    ) -> [BrokerAction] {
        if let admission = admissions[connection] {
            advance(connection, admission, to: admission.authenticated(decision), now: now)
        }
        return takeActions()
    }

    /// Carries out what a connection's admission decided.
    private mutating func advance(
        _ connection: ConnectionID,
        _ admission: ConnectionAdmission,
        to next: ConnectionAdmission.Next,
        now: BrokerTime
    ) {
        switch next {
        case .wait:
            return
        case .refuse(let reason):
            endAdmission(connection)
            refuse(connection, reason)
        case .applyRules:
            endAdmission(connection)
            let tookOver = if case .awaitingTakeover = admission.state { true } else { false }
            handleConnect(connection, admission.packet, listener: admission.listener, now: now, tookOver: tookOver)
            // Kept anew if it waits again (for a takeover).
            for packet in admission.buffered { handle(packet, from: connection, now: now) }
        }
    }

    /// The connection's admission is over; an empty table lets its storage go (a connect storm grows
    /// it, and a dictionary keeps its peak capacity after removals).
    @discardableResult
    private mutating func endAdmission(_ connection: ConnectionID) -> ConnectionAdmission? {
        let admission = admissions.removeValue(forKey: connection)
        if admissions.isEmpty { admissions = [:] }
        return admission
    }

    /// Authentication failed before the broker rules were consulted: CONNACK with `reason`
    /// (0x86 bad user name or password, 0x87 not authorized; the codec maps them for 3.1.1), then close.
    public mutating func refuseConnect(_ connection: ConnectionID, reason: ReasonCode) -> [BrokerAction] {
        refuse(connection, reason)
        return takeActions()
    }

    private mutating func refuse(_ connection: ConnectionID, _ reason: ReasonCode) {
        send(.connAck(ConnAckPacket(sessionPresent: false, reasonCode: reason)), to: connection)
        actions.append(.close(connection, nil))
    }

    /// Any packet after CONNECT.
    public mutating func receive(_ packet: Packet, from connection: ConnectionID, now: BrokerTime) -> [BrokerAction] {
        handle(packet, from: connection, now: now)
        return takeActions()
    }

    /// `receive` for an owner that keeps one buffer for the actions of every packet: its buffer (emptied)
    /// and the broker's change places, so that in a steady flow neither allocates an array per packet.
    public mutating func receive(
        _ packet: consuming Packet,
        from connection: ConnectionID,
        now: BrokerTime,
        into actions: inout [BrokerAction]
    ) {
        handle(packet, from: connection, now: now)
        // A burst's capacity is not kept for the quiet that follows it (nor handed back here).
        if actions.capacity > Self.keptActionsCapacity {
            actions = []
        } else if !actions.isEmpty {  // an owner that empties it after running it pays nothing here
            actions.removeAll(keepingCapacity: true)
        }
        swap(&actions, &self.actions)
    }

    /// Actions kept room for between packets by `receive(_:from:now:into:)`: a PUBLISH's fan-out to this many
    /// clients, or their acknowledgements, allocate nothing.
    static let keptActionsCapacity = 64

    private mutating func handle(_ packet: consuming Packet, from connection: ConnectionID, now: BrokerTime) {
        if admissions[connection] != nil {
            let next = admissions[connection]!.received(packet)
            return advance(connection, admissions[connection]!, to: next, now: now)
        }
        guard let slot = connections.index(forKey: connection) else {
            // Not (or no longer) connected: only a CONNECT is acceptable [MQTT-3.1.0-1].
            if case .connect(let connect) = packet {
                handleConnect(connection, connect, listener: 0, now: now)
            } else {
                actions.append(.close(connection, nil))
            }
            return
        }
        // In place: one lookup and no copy of the connection's state for every packet.
        connections.values[slot].lastActivity = now
        stats.messagesReceived += 1
        switch consume packet {
        case .publish(let publish): handlePublish(publish, at: slot, now: now)
        case .pubAck(let ack):
            finishOutgoing(
                ack.packetIdentifier,
                .awaitingPubAck,
                of: connections.read(at: slot) { $0.clientID },
                now: now
            )
        case .pubRec(let rec): handlePubRec(rec, from: connection, now: now)
        case .pubRel(let rel): handlePubRel(rel, from: connection)
        case .pubComp(let comp):
            let clientID = connections.read(at: slot) { $0.clientID }
            finishOutgoing(comp.packetIdentifier, .awaitingPubComp, of: clientID, now: now)
        case .subscribe(let subscribe): handleSubscribe(subscribe, from: connection, now: now)
        case .unsubscribe(let unsubscribe): handleUnsubscribe(unsubscribe, from: connection)
        case .pingReq: send(.pingResp, to: connection)
        case .disconnect(let disconnect): handleDisconnect(disconnect, from: connection, now: now)
        case .connect:
            // A second CONNECT is a protocol violation [MQTT-3.1.0-2].
            protocolViolation(connection, .protocolError, "second CONNECT", now: now)
        case .auth:
            protocolViolation(connection, .protocolError, "AUTH without an authentication method", now: now)
        case .connAck, .subAck, .unsubAck, .pingResp:
            protocolViolation(connection, .protocolError, "server-to-client packet from a client", now: now)
        }
    }

    /// The connection's socket closed (by the peer, by us, or by an error).
    public mutating func closed(_ connection: ConnectionID, now: BrokerTime) -> [BrokerAction] {
        if endAdmission(connection) == nil {
            let takenOver = admissions.values.contains { $0.awaits(connection) }
            detach(connection, now: now, reason: takenOver ? .takenOver : .socketClosed)
        }
        return takeActions()
    }

    /// The connection's outgoing socket buffer crossed its high-water mark (`writable == false`) or
    /// drained below the low one. While backed up, messages for the client wait in its session
    /// queue, within `max_queued_messages`/`max_queued_bytes`, instead of piling up in the socket
    /// buffer: a reader that stops reading costs bounded memory and its drops are counted.
    public mutating func writabilityChanged(_ connection: ConnectionID, writable: Bool, now: BrokerTime)
        -> [BrokerAction]
    {
        guard let client = connections[connection], client.backedUp == writable else { return [] }
        connections[connection]?.backedUp = !writable
        if writable { pump(client.clientID, now: now) }
        return takeActions()
    }

    /// Time passed: keep-alive enforcement, will delays, session and message expiry.
    public mutating func tick(now: BrokerTime) -> [BrokerAction] {
        for (id, client) in connections where client.keepAlive > 0 {
            // The server disconnects after one and a half keep-alive periods of silence [MQTT-3.1.2-22].
            if now > client.lastActivity + BrokerTime(client.keepAlive) * 1500 {
                close(id, reason: .keepAliveTimeout)
                detach(id, now: now, reason: .keepAliveTimeout)
            }
        }
        if !ackHolds.isEmpty { sendReleased(ackHolds.releaseOverdue(now: now)) }
        for due in timers.takeDue(now: now) {
            // The session is the truth; a timer only says when to look.
            guard let session = sessions[due.clientID], !session.isConnected else { continue }
            switch due.kind {
            case .will:
                if let will = session.delayedWill, will.dueAt <= now {
                    sessions[due.clientID]?.delayedWill = nil
                    route(will.message, now: now)
                }
            case .sessionExpiry:
                if let expiresAt = session.expiresAt(), expiresAt <= now {
                    stats.clientsExpired += 1
                    endSession(due.clientID, now: now)
                }
            }
        }
        return takeActions()
    }

    /// The durable append or the state save for `token` committed (`accepted`), or was refused by
    /// the queue's policy. Kept for callers that only know yes or no; see `persisted(token:outcome:now:)`.
    public mutating func persisted(token: UInt64, accepted: Bool, now: BrokerTime) -> [BrokerAction] {
        persisted(
            token: token,
            outcome: accepted ? .committed : .refused("the bridge queue refused the message"),
            now: now
        )
    }

    /// How a commit that should hold the message of `token` ended: its durable append, or the save of
    /// the broker state it changed. Once all its commits are in, the acknowledgement is decided by
    /// `AcknowledgementDecision`, the one place that turns commit outcomes into what a client hears.
    public mutating func persisted(token: UInt64, outcome: CommitOutcome, now: BrokerTime) -> [BrokerAction] {
        guard var pending = pendingAcks[token] else { return [] }
        pending.awaiting -= 1
        pending.outcome = pending.outcome.combined(with: outcome)
        guard pending.awaiting <= 0 else {
            pendingAcks[token] = pending
            return []
        }
        pendingAcks[token] = nil
        guard let client = connections[pending.connection] else {
            // The publisher left first. A QoS 2 message not kept is forgotten by its session, so the resend
            // is kept anew [MQTT-4.3.3-4]; one kept is a duplicate when it comes again.
            if let clientID = pending.clientID, !pending.outcome.isCommitted {
                stats.notAcknowledged(pending.outcome)
                sessions[clientID]?.inboundQoS2.remove(pending.packetID)
            }
            return []
        }
        let decision = AcknowledgementDecision(
            outcome: pending.outcome,
            version: client.version,
            qos: pending.qos,
            packetID: pending.packetID,
            reply: pending.reply
        )
        if !pending.outcome.isCommitted {
            if pending.reply == nil { stats.notAcknowledged(pending.outcome) }
            // The QoS 2 flow ends here [MQTT-4.3.3-4]: a resent PUBLISH must be kept anew, not
            // answered as a duplicate of one we never kept.
            if pending.qos == .exactlyOnce, sessions[client.clientID]?.inboundQoS2.remove(pending.packetID) != nil {
                connections[pending.connection]?.inboundUnacknowledged -= 1
            }
        }
        switch decision.action {
        case .send(.pubAck(let ack)), .send(.pubRec(let ack)):
            // In its place in the publisher's order; a QoS 1 one counts as unacknowledged until it is sent.
            ackHolds.committed(token: token, for: pending.connection, ack)
            sendReady(pending.connection)
        case .send(let reply):
            send(reply, to: pending.connection)
        case .disconnect(let packet):
            actions.append(.close(pending.connection, packet))
            detach(pending.connection, now: now, reason: .notStored(packet?.reasonCode))
        }
        return takeActions()
    }

    /// A message from inside the gateway (a bridge `in` rule, `$SYS`, LoRaWAN events).
    public mutating func publish(_ message: Message, now: BrokerTime) -> [BrokerAction] {
        publishAwaitingSave(message, now: now).actions
    }

    /// A `$SYS` message: routed as `publish` does, and also queued on every bridge whose `out` rules match it, as
    /// Mosquitto does, so that bridging `$SYS/#` home shows the central each gateway's own view. Other
    /// internal messages stay local: a bridge's `in` messages must not go back out.
    public mutating func publishSystem(_ message: Message, now: BrokerTime) -> [BrokerAction] {
        let appends = retainAndRoute(message, now: now).appends
        if !appends.isEmpty { actions.append(.persist(token: makeToken(), message: message, appends: appends)) }
        return takeActions()
    }

    /// `publish`, and when the message changed saved state (a QoS 1/2 message that set a retained
    /// message or was kept for a persistent session), the token `takeChanges()` hands back among
    /// its acknowledgements once the save that holds it is taken.
    public mutating func publishAwaitingSave(_ message: Message, now: BrokerTime) -> (
        actions: [BrokerAction], token: UInt64?
    ) {
        var token: UInt64? = nil
        if retainAndRoute(message, now: now).changedSavedState {
            token = makeToken()
            saveJournal.holdUntilSaved(token!)
        }
        return (takeActions(), token)
    }

    /// Keeps a retained message and routes the message to its subscribers. Returns whether a
    /// QoS 1/2 message changed saved state (set a retained message, or was kept for a persistent
    /// session), so that its acknowledgement must wait for the save, and the bridges' durable appends.
    private mutating func retainAndRoute(_ message: Message, now: BrokerTime) -> (
        changedSavedState: Bool, appends: [DurableAppend]
    ) {
        let storedBefore = sessions.storedMessages
        if message.retain { retained.store(message) }
        let appends = route(message, now: now)
        let changed =
            tracksChanges && message.qos != .atMostOnce
            && (message.retain || sessions.storedMessages != storedBefore)
        return (changed, appends)
    }

    private mutating func makeToken() -> UInt64 {
        defer { nextToken += 1 }
        return nextToken
    }

    // MARK: CONNECT

    private mutating func handleConnect(
        _ connection: ConnectionID,
        _ packet: ConnectPacket,
        listener: Int,
        now: BrokerTime,
        tookOver: Bool = false
    ) {
        let identity: ConnectIdentity
        do {
            identity = try connectIdentity(packet, listener: listener)
            let isTakeover = tookOver || sessions[identity.clientID]?.connection != nil
            if !isTakeover { try checkConnectionLimits(listener: listener) }
        } catch {
            return refuse(connection, error.reason)
        }
        let (keepAlive, serverKeepAlive) = settings.keepAlive(asked: packet.keepAlive)
        var connAckProperties = Properties()
        if packet.protocolVersion >= .v5 {
            connAckProperties = settings.connAckProperties(
                assigned: identity.assigned,
                serverKeepAlive: serverKeepAlive
            )
            // [MQTT-3.1.2-24]: nothing larger than the client's Maximum Packet Size, the CONNACK included. As
            // Mosquitto does, a client whose limit cannot hold it is closed without one, before anything changes.
            guard Self.connAck(with: connAckProperties, fits: packet) else {
                return actions.append(.close(connection, nil))
            }
        }
        if let existing = sessions[identity.clientID]?.connection {
            return awaitTakeover(of: existing, connection, packet, listener: listener)
        }
        let sessionPresent = attachSession(identity.clientID, packet, to: connection, now: now)
        register(connection, identity, packet, listener: listener, keepAlive: keepAlive, now: now)
        let connAck = ConnAckPacket(sessionPresent: sessionPresent, reasonCode: .success, properties: connAckProperties)
        send(.connAck(connAck), to: connection)
        if sessionPresent { resume(identity.clientID, now: now) }
    }

    /// `max_connections` and the listener's `max_connections` (a takeover does not count: it replaces one).
    private func checkConnectionLimits(listener: Int) throws(ConnectRefusal) {
        if let limit = settings.maxConnections, connections.count >= limit {
            throw ConnectRefusal(reason: .quotaExceeded)
        }
        if let limit = settings.listenerConnectionLimits[listener],
            connectionsPerListener[listener, default: 0] >= limit
        {
            throw ConnectRefusal(reason: .quotaExceeded)
        }
    }

    /// Session takeover: the existing connection is told 0x8E and closed [MQTT-3.1.4-3], but only
    /// once what its client sent before has been read: a client that sends DISCONNECT and reconnects
    /// at once can have the new CONNECT handled first, and its will must still not be published
    /// [MQTT-3.1.2-10]. This connection waits until the old one is gone (`admitAfterTakeover`).
    private mutating func awaitTakeover(
        of existing: ConnectionID,
        _ connection: ConnectionID,
        _ packet: ConnectPacket,
        listener: Int
    ) {
        if !admissions.values.contains(where: { $0.awaits(existing) }) {
            close(existing, reason: .sessionTakenOver, afterReading: true)
        }
        admissions[connection] = ConnectionAdmission(
            packet,
            listener: listener,
            state: .awaitingTakeover(previous: existing)
        )
    }

    /// The admitted connection's own state (the session holds what outlives it).
    private mutating func register(
        _ connection: ConnectionID,
        _ identity: ConnectIdentity,
        _ packet: ConnectPacket,
        listener: Int,
        keepAlive: UInt16,
        now: BrokerTime
    ) {
        connections[connection] = ClientConnection(
            clientID: identity.clientID,
            username: packet.username,
            version: packet.protocolVersion,
            listener: listener,
            keepAlive: keepAlive,
            lastActivity: now,
            receiveMaximum: Int(packet.properties.receiveMaximum ?? 65535),
            maximumPacketSize: Int(packet.properties.maximumPacketSize ?? 268_435_460),
            topicAliasMaximum: packet.properties.topicAliasMaximum ?? 0,
            will: identity.will
        )
        connections[connection]?.isBridge = packet.isBridge
        connectionsPerListener[listener, default: 0] += 1
        stats.connectionsTotal += 1
        stats.clientsMaximum = max(stats.clientsMaximum, connections.count)
    }

    /// Binds the connection to its client's session: the one present, resumed, or a new one (a clean
    /// start, or an expired session, ends the old one first). Returns whether a session was present.
    private mutating func attachSession(
        _ clientID: String,
        _ packet: ConnectPacket,
        to connection: ConnectionID,
        now: BrokerTime
    ) -> Bool {
        let version = packet.protocolVersion
        let expiry: UInt32
        if version >= .v5 {
            expiry = packet.properties.sessionExpiryInterval ?? 0
        } else {
            expiry = packet.cleanStart ? 0 : (settings.persistentClientExpiration ?? UInt32.max)
        }
        var sessionPresent = false
        let wasPersistent = sessions[clientID]?.isPersistent ?? false
        if packet.cleanStart || sessions[clientID]?.expiresAt().map({ $0 <= now }) == true {
            // A clean start ends the old session, so a will it delays goes out now [MQTT-3.1.3-9].
            if sessions[clientID] != nil { endSession(clientID, now: now) }
        } else if sessions[clientID] != nil {
            sessionPresent = true
        }
        var session =
            sessions.removeValue(forKey: clientID)
            ?? Session(protocolVersion: version, expiryInterval: expiry)
        session.presence = .connected(connection)
        session.protocolVersion = version
        session.username = packet.username
        session.expiryInterval = expiry
        session.delayedWill = nil  // reconnecting cancels a delayed will [MQTT-3.1.3-9]
        sessions[clientID] = session
        timers.cancel(clientID)
        if session.isPersistent && !(sessionPresent && wasPersistent) {
            // New, replaced, or persistent only from now on: whatever was saved under this
            // identifier goes, and the session is saved whole.
            sessions.noteRewrite(clientID)
        }
        return sessionPresent
    }

    /// Sends again what the client had not acknowledged, then what was queued [MQTT-4.4.0-1].
    private mutating func resume(_ clientID: String, now: BrokerTime) {
        guard let session = sessions[clientID], let connection = session.connection,
            let client = connections.index(forKey: connection)
        else { return }
        for resend in session.outbound.resend() {
            switch resend {
            case .publish(let delivery, let packetID):
                sendPublish(delivery, packetID: packetID, dup: true, at: client, now: now)
            case .pubRel(let packetID):
                send(.pubRel(PubAckPacket(packetIdentifier: packetID)), to: connection)
            }
        }
        pump(clientID, now: now)
    }

    // MARK: PUBLISH from a client

    private mutating func handlePublish(_ packet: PublishPacket, at slot: ConnectionSlot, now: BrokerTime) {
        let connection = connections.keys[slot]
        stats.publishReceived += 1
        stats.publishReceivedByQoS[Int(packet.qos.rawValue)] += 1
        stats.publishBytesReceived += packet.payload.readableBytes
        guard let topic = inboundTopic(packet, at: slot, now: now) else { return }
        // Read in place: `values[slot]` copies the whole connection (its every reference retained).
        let (publisher, version) = connections.read(at: slot) {
            (Publisher(clientID: $0.clientID, username: $0.username), $0.version)
        }
        guard let packetID = packet.packetIdentifier ?? (packet.qos == .atMostOnce ? 0 : nil) else { return }
        if packet.qos == .exactlyOnce
            && !beginInboundQoS2(packetID, clientID: publisher.clientID, from: connection, now: now)
        {
            return
        }
        if let refused = refusal(packet, topic: topic, from: publisher, version: version) {
            stats.drop(refused.reason)
            acknowledge(packet.qos, packetID, refused.code, to: connection)
            return
        }
        let message = Self.inboundMessage(packet, topic: topic, from: publisher, now: now)
        routeAndAcknowledge(message, packetID: packetID, from: connection, now: now)
    }

    /// The topic a client's PUBLISH is published on (`publishTopic`, which may learn a topic alias of the
    /// connection at `slot`), or nil when the PUBLISH was refused or closed the connection.
    private mutating func inboundTopic(_ packet: PublishPacket, at slot: ConnectionSlot, now: BrokerTime) -> String? {
        let refusal: PublishRefusal
        do {
            return try Self.publishTopic(packet, from: &connections.values[slot], settings: settings)
        } catch {
            refusal = error
        }
        let connection = connections.keys[slot]
        if case .protocolViolation(let code, let reason) = refusal {
            protocolViolation(connection, code, reason, now: now)
            return nil
        }
        // Too deep. MQTT 5 refuses the message with 0x90 Topic Name invalid ("correctly formed, but not
        // accepted", 3.4.2.1) and the client stays; a QoS 0 publish has no PUBACK to carry it,
        // and 3.1/3.1.1 cannot refuse a PUBLISH at all: the connection is closed, as Mosquitto
        // 2.0.11 closes it for every version (measured: 0x82 for MQTT 5).
        stats.drop(.topicTooDeep)
        if connections.values[slot].version >= .v5 && packet.qos != .atMostOnce, let packetID = packet.packetIdentifier
        {
            acknowledge(packet.qos, packetID, .topicNameInvalid, to: connection)
            return nil
        }
        let reason = "topic deeper than \(settings.maxTopicLevels) levels"
        protocolViolation(connection, .topicNameInvalid, reason, now: now)
        return nil
    }

    /// Records an inbound QoS 2 packet identifier; false for a resent PUBLISH already recorded, which is
    /// acknowledged again and not delivered again [MQTT-4.3.3-9].
    private mutating func beginInboundQoS2(
        _ packetID: UInt16,
        clientID: String,
        from connection: ConnectionID,
        now: BrokerTime
    ) -> Bool {
        if sessions[clientID]?.inboundQoS2.contains(packetID) == true {
            let ack = AckHolds.Ack(PubAckPacket(packetIdentifier: packetID), qos: .exactlyOnce, countsInbound: false)
            if let token = pendingCommit(ofQoS2: packetID, clientID: clientID) {
                // Its first copy's commits are not in yet (an earlier connection left them): no PUBREC before.
                pendingAcks[token]!.connection = connection
                connections[connection]?.inboundUnacknowledged += 1
                ackHolds.hold(ack, for: connection, token: token, gate: nil, now: now)
            } else if !ackHolds.append(ack, for: connection) {
                send(ack.packet, to: connection)
            }
            return false
        }
        sessions[clientID]?.inboundQoS2.insert(packetID)
        connections[connection]?.inboundUnacknowledged += 1
        return true
    }

    /// The token of the commits a QoS 2 message from `clientID` awaits, left by a connection that is gone.
    private func pendingCommit(ofQoS2 packetID: UInt16, clientID: String) -> UInt64? {
        pendingAcks.first { _, pending in
            pending.packetID == packetID && pending.clientID == clientID && connections[pending.connection] == nil
        }?.key
    }

    /// Why a PUBLISH is not routed, and the reason code its acknowledgement carries; nil when it is routed.
    private func refusal(
        _ packet: PublishPacket,
        topic: String,
        from publisher: Publisher,
        version: ProtocolVersion
    ) -> (reason: DropReason, code: ReasonCode)? {
        if let limit = settings.messageSizeLimit, packet.payload.readableBytes > limit {
            // `message_size_limit` (Mosquitto's meaning): the payload is refused, the QoS flow completes and the
            // client stays connected; MQTT 5 hears 0x95 Packet too large, 3.1/3.1.1 a plain acknowledgement.
            return (.payloadTooLarge, version >= .v5 ? .packetTooLarge : .success)
        }
        // Bytes, first one first: `hasPrefix` compares characters, on every PUBLISH.
        let isSystemTopic = topic.utf8.first == UInt8(ascii: "$") && topic.utf8.starts(with: "$SYS/".utf8)
        let allowed =
            !isSystemTopic
            && accessPolicy.map {
                $0.mayPublish(clientID: publisher.clientID, username: publisher.username, topic: topic)
            }
                ?? true
        if !allowed {
            // MQTT 5 says 0x87; 3.1.1 acknowledges and drops, as Mosquitto does.
            return (.notAuthorized, version >= .v5 ? .notAuthorized : .success)
        }
        return nil
    }

    /// The message a client's PUBLISH carries, as the broker routes it: no topic alias or subscription
    /// identifiers of the publisher's, its expiry interval as a due time.
    private static func inboundMessage(
        _ packet: PublishPacket,
        topic: String,
        from publisher: Publisher,
        now: BrokerTime
    ) -> Message {
        var properties = packet.properties
        var expiresAt: BrokerTime? = nil
        // Only a PUBLISH with properties reads them: each read by name is a key-path lookup.
        if !properties.isEmpty {
            properties.topicAlias = nil
            properties.subscriptionIdentifiers = []
            if let expiry = properties.messageExpiryInterval {
                expiresAt = now + BrokerTime(expiry) * 1000
            }
        }
        return Message(
            topic: topic,
            payload: packet.payload,
            qos: packet.qos,
            retain: packet.retain,
            properties: properties,
            expiresAt: expiresAt,
            origin: publisher.clientID,
            publisher: publisher
        )
    }

    /// Routes a client's message and acknowledges it, at once or once what it changed is on disk.
    private mutating func routeAndAcknowledge(
        _ message: Message,
        packetID: UInt16,
        from connection: ConnectionID,
        now: BrokerTime
    ) {
        routeGate = nil
        let (changedSavedState, appends) = retainAndRoute(message, now: now)
        let gate = routeGate
        routeGate = nil

        // Acknowledged only once on disk: a bridge queue append, and the saved broker state when
        // the message changed it [design: durability].
        var token: UInt64 = 0
        if !appends.isEmpty || changedSavedState {
            token = makeToken()
            if !appends.isEmpty { actions.append(.persist(token: token, message: message, appends: appends)) }
        }
        guard message.qos != .atMostOnce else { return }
        if token != 0 {
            pendingAcks[token] = PendingAck(
                connection: connection,
                packetID: packetID,
                qos: message.qos,
                clientID: message.qos == .exactlyOnce ? message.origin : nil,
                awaiting: (appends.isEmpty ? 0 : 1) + (changedSavedState ? 1 : 0)
            )
            if changedSavedState { saveJournal.holdUntilSaved(token) }
        } else if gate == nil && !ackHolds.isHolding(connection) {
            return acknowledge(message.qos, packetID, .success, to: connection)
        }
        if gate != nil { stats.acknowledgementsHeld += 1 }
        // It waits: for its commits, for a subscriber it fed that has a backlog, or behind an earlier one.
        let countsInbound = message.qos == .atLeastOnce
        if countsInbound { connections[connection]?.inboundUnacknowledged += 1 }
        let ack = AckHolds.Ack(PubAckPacket(packetIdentifier: packetID), qos: message.qos, countsInbound: countsInbound)
        ackHolds.hold(ack, for: connection, token: token, gate: gate, now: now)
    }

    /// Sends a publisher its PUBACK (QoS 1) or PUBREC (QoS 2), or holds it behind the ones it waits for
    /// [MQTT-4.6.0-2, MQTT-4.6.0-3].
    private mutating func sendAcknowledgement(_ ack: PubAckPacket, qos: QoS, to connection: ConnectionID) {
        let ack = AckHolds.Ack(ack, qos: qos, countsInbound: false)
        if !ackHolds.append(ack, for: connection) { send(ack.packet, to: connection) }
    }

    /// Sends what is ready at the head of each publisher's order (a gate released them).
    private mutating func sendReleased(_ publishers: [ConnectionID]) {
        for publisher in publishers { sendReady(publisher) }
    }

    /// Sends `publisher` the acknowledgements at the head of its order that wait for nothing any more.
    private mutating func sendReady(_ publisher: ConnectionID) {
        while let ack = ackHolds.takeReady(publisher) {
            if ack.countsInbound { connections[publisher]?.inboundUnacknowledged -= 1 }
            send(ack.packet, to: publisher)
        }
    }

    /// Releases what the subscriber at `slot` held once its backlog is down to half the bound.
    private mutating func releaseIfDrained(at slot: SessionTable.Slot) {
        let queued = sessions.read(at: slot) { $0.outbound.queue.count }
        guard queued <= AckHolds.backlog(settings) / 2 else { return }
        sendReleased(ackHolds.release(gate: sessions.all.keys[slot]))
    }

    private mutating func acknowledge(_ qos: QoS, _ packetID: UInt16, _ code: ReasonCode, to connection: ConnectionID) {
        guard qos != .atMostOnce else { return }
        sendAcknowledgement(PubAckPacket(packetIdentifier: packetID, reasonCode: code), qos: qos, to: connection)
        if qos == .exactlyOnce {
            if code.isFailure, let client = connections[connection] {
                // A PUBREC with a failure reason ends the exchange [MQTT-4.3.3]: no PUBREL follows, and the
                // packet identifier is free for a new message.
                sessions[client.clientID]?.inboundQoS2.remove(packetID)
                connections[connection]?.inboundUnacknowledged -= 1
            }
        }
    }

    // MARK: Acknowledgements from a client

    /// PUBACK, PUBCOMP (and a refusing PUBREC) end an outgoing flow and make room in the window. False
    /// when no flow awaited it.
    @discardableResult
    private mutating func finishOutgoing(
        _ packetID: UInt16,
        _ state: Outgoing.State,
        of clientID: String,
        now: BrokerTime
    ) -> Bool {
        guard let slot = sessions.slot(of: clientID),
            let finished = sessions[slot: slot].outbound.acknowledge(packetID, state)
        else {
            return false  // unknown identifiers are ignored [MQTT-4.3.2]
        }
        sessions.noteReleased(finished.delivery, at: slot)
        if !ackHolds.isEmpty { ackHolds.progressed(clientID) }
        pump(at: slot, now: now)
        return true
    }

    private mutating func handlePubRec(_ rec: PubAckPacket, from connection: ConnectionID, now: BrokerTime) {
        guard let client = connections[connection] else { return }
        let known =
            rec.reasonCode.isFailure
            // The receiver refused the message: the flow ends here [MQTT-4.3.3-4].
            ? finishOutgoing(rec.packetIdentifier, .awaitingPubRec, of: client.clientID, now: now)
            : sessions.received(pubRec: rec.packetIdentifier, for: client.clientID)
        if !known {
            let code: ReasonCode = client.version >= .v5 ? .packetIdentifierNotFound : .success
            send(.pubRel(PubAckPacket(packetIdentifier: rec.packetIdentifier, reasonCode: code)), to: connection)
        } else if !rec.reasonCode.isFailure {
            send(.pubRel(PubAckPacket(packetIdentifier: rec.packetIdentifier)), to: connection)
        }
    }

    private mutating func handlePubRel(_ rel: PubAckPacket, from connection: ConnectionID) {
        guard let client = connections[connection] else { return }
        var code = ReasonCode.success
        if sessions[client.clientID]?.inboundQoS2.remove(rel.packetIdentifier) != nil {
            connections[connection]?.inboundUnacknowledged -= 1
        } else if client.version >= .v5 {
            code = .packetIdentifierNotFound
        }
        send(.pubComp(PubAckPacket(packetIdentifier: rel.packetIdentifier, reasonCode: code)), to: connection)
    }

    // MARK: SUBSCRIBE / UNSUBSCRIBE

    private mutating func handleSubscribe(_ packet: SubscribePacket, from connection: ConnectionID, now: BrokerTime) {
        guard let client = connections[connection] else { return }
        let identifier = packet.properties.subscriptionIdentifiers.first
        var codes: [ReasonCode] = []
        var retainedToSend: [(filter: String, subscription: Subscription)] = []
        let mount = settings.listenerMountPoints[client.listener]
        for var request in packet.subscriptions {
            if let mount { request.filter = Self.mounted(request.filter, at: mount) }
            if SubscriptionTree.exceedsLevels(filter: request.filter, limit: settings.maxTopicLevels) {
                // A well-formed filter this server does not accept: 0x8F Topic Filter invalid (MQTT 5
                // 3.9.3), 0x80 Failure in 3.1.1 (3.9.3); the other filters of the SUBSCRIBE are served.
                codes.append(client.version >= .v5 ? .topicFilterInvalid : .unspecifiedError)
                continue
            }
            if let policy = accessPolicy,
                !policy.maySubscribe(clientID: client.clientID, username: client.username, filter: request.filter)
            {
                codes.append(client.version >= .v5 ? .notAuthorized : .unspecifiedError)
                continue
            }
            var options = request.options
            if options.qos.rawValue > settings.maxQoS {
                options.qos = QoS(rawValue: settings.maxQoS) ?? options.qos  // granted at max_qos, as Mosquitto
            }
            if client.isBridge && client.version < .v5 {
                // As Mosquitto: a 3.x bridge that announced itself must not get its own messages back (they
                // would loop between the brokers), and retained flags pass through as published.
                options.noLocal = true
                options.retainAsPublished = true
            }
            let subscription = Subscription(options: options, identifier: identifier)
            let existed = subscriptions.insert(
                filter: request.filter,
                clientID: client.clientID,
                subscription: subscription
            )
            sessions[client.clientID]?.subscriptions[request.filter] = subscription
            codes.append(ReasonCode(rawValue: options.qos.rawValue))
            let handling = request.options.retainHandling
            if RetainedStore.sendsOnSubscribe(handling, filter: request.filter, existed: existed) {
                retainedToSend.append((request.filter, subscription))
            }
        }
        replyAfterSave(
            .subAck(SubAckPacket(packetIdentifier: packet.packetIdentifier, reasonCodes: codes)),
            to: connection
        )
        // Retained messages come with the new subscription [MQTT-3.3.1-9]: after the SUBACK, or
        // before it while the SUBACK waits for a save.
        for (filter, subscription) in retainedToSend {
            let deliveries = retained.deliveries(
                for: filter,
                subscription: subscription,
                clientID: client.clientID,
                username: client.username,
                settings: settings,
                accessPolicy: accessPolicy,
                now: now
            )
            for delivery in deliveries { enqueue(delivery, for: client.clientID, now: now) }
        }
    }

    private mutating func handleUnsubscribe(_ packet: UnsubscribePacket, from connection: ConnectionID) {
        guard let client = connections[connection] else { return }
        let clientID = client.clientID
        let mount = settings.listenerMountPoints[client.listener]
        let codes: [ReasonCode] = packet.filters.map { written in
            let filter = mount.map { Self.mounted(written, at: $0) } ?? written
            sessions[clientID]?.subscriptions[filter] = nil
            return subscriptions.remove(filter: filter, clientID: clientID) ? .success : .noSubscriptionExisted
        }
        replyAfterSave(
            .unsubAck(UnsubAckPacket(packetIdentifier: packet.packetIdentifier, reasonCodes: codes)),
            to: connection
        )
    }

    /// `mount_point`: a client's filter under its listener's prefix; a shared subscription keeps its
    /// `$share/GROUP/` in front.
    static func mounted(_ filter: String, at mount: String) -> String {
        guard let shared = Topic.sharedSubscription(filter) else { return mount + filter }
        return "$share/\(shared.group)/\(mount)\(shared.filter)"
    }

    /// A persistent session's subscriptions are saved before the SUBACK/UNSUBACK confirms them.
    /// Matching PUBLISHes (retained ones) may go out first, which MQTT permits [MQTT 3.8.4].
    private mutating func replyAfterSave(_ reply: Packet, to connection: ConnectionID) {
        guard tracksChanges, let clientID = connections[connection]?.clientID, sessions[clientID]?.isPersistent == true
        else {
            return send(reply, to: connection)
        }
        let token = makeToken()
        pendingAcks[token] = PendingAck(
            connection: connection,
            packetID: 0,
            qos: .atMostOnce,
            awaiting: 1,
            reply: reply
        )
        saveJournal.holdUntilSaved(token)
    }

    // MARK: DISCONNECT and connection loss

    private mutating func handleDisconnect(_ packet: DisconnectPacket, from connection: ConnectionID, now: BrokerTime) {
        guard var client = connections[connection] else { return }
        if let newExpiry = packet.properties.sessionExpiryInterval, let session = sessions[client.clientID] {
            // A session that was to end at disconnect cannot be made persistent now [MQTT-3.14.2-2].
            if session.expiryInterval == 0 && newExpiry != 0 {
                return protocolViolation(
                    connection,
                    .protocolError,
                    "session expiry raised from 0 at DISCONNECT",
                    now: now
                )
            }
            sessions[client.clientID]?.expiryInterval = newExpiry
        }
        // DISCONNECT with 0x04 asks for the will to be sent all the same [MQTT-3.14.4-3].
        client.disconnectedCleanly = packet.reasonCode != .disconnectWithWillMessage
        connections[connection] = client
        actions.append(.close(connection, nil))
        detach(connection, now: now, reason: .clientDisconnect(packet.reasonCode))
    }

    /// Unbinds a connection from its session: the will, session expiry at 0, bookkeeping; then admits
    /// a connection that waited to take its session over.
    private mutating func detach(_ connection: ConnectionID, now: BrokerTime, reason: DepartureReason) {
        guard let client = connections.removeValue(forKey: connection) else { return }
        departures.append(
            Departure(
                connection: connection,
                clientID: client.clientID,
                protocolVersion: client.version,
                reason: reason
            )
        )
        defer { admitAfterTakeover(of: connection, now: now) }
        connectionsPerListener[client.listener, default: 1] -= 1
        // A QoS 2 message's commits stay: its session answers a resend from them.
        pendingAcks = pendingAcks.filter { $0.value.connection != connection || $0.value.clientID != nil }
        if !ackHolds.isEmpty {
            ackHolds.forget(publisher: connection)
            sendReleased(ackHolds.forget(subscriber: client.clientID))
        }
        guard let session = sessions[client.clientID], session.connection == connection else { return }
        sessions[client.clientID]?.presence = .offline(since: now)
        if session.expiryInterval > 0 { sessions[client.clientID]?.outbound.compactInflight() }
        if !client.disconnectedCleanly, let will = client.will {
            let publisher = Publisher(clientID: client.clientID, username: client.username)
            let message = willMessage(will, from: publisher, now: now)
            let delay = BrokerTime(will.properties.willDelayInterval ?? 0) * 1000
            if delay == 0 || session.expiryInterval == 0 {
                route(message, now: now)
                if message.retain { retained.store(message) }
            } else {
                sessions[client.clientID]?.delayedWill = (message, now + delay)
                timers.setWill(client.clientID, at: now + delay)
            }
        }
        if session.expiryInterval == 0 { endSession(client.clientID, now: now) }
        timers.setExpiry(client.clientID, at: sessions[client.clientID]?.expiresAt())
    }

    /// The connections that waited for `previous` to be gone connect now, in the order they came.
    private mutating func admitAfterTakeover(of previous: ConnectionID, now: BrokerTime) {
        guard !admissions.isEmpty else { return }
        let waiting = admissions.filter { $0.value.awaits(previous) }.sorted { $0.key.rawValue < $1.key.rawValue }
        for (connection, admission) in waiting {
            advance(connection, admission, to: admission.previousGone(previous), now: now)
        }
    }

    private func willMessage(_ will: Will, from publisher: Publisher, now: BrokerTime) -> Message {
        var properties = will.properties
        properties.willDelayInterval = nil
        return Message(
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: properties,
            expiresAt: properties.messageExpiryInterval.map { now + BrokerTime($0) * 1000 },
            origin: publisher.clientID,
            publisher: publisher
        )
    }

    /// Removes a session and its subscriptions; a delayed will is sent now if the session ends first.
    private mutating func endSession(_ clientID: String, now: BrokerTime, publishWill: Bool = true) {
        guard let session = sessions.removeValue(forKey: clientID) else { return }
        timers.cancel(clientID)
        // Commits of QoS 2 messages its connections left: no session answers a resend from them now.
        if !pendingAcks.isEmpty && !session.inboundQoS2.isEmpty {
            pendingAcks = pendingAcks.filter {
                $0.value.clientID != clientID || connections[$0.value.connection] != nil
            }
        }
        if !ackHolds.isEmpty { sendReleased(ackHolds.forget(subscriber: clientID)) }
        for filter in session.subscriptions.keys {
            subscriptions.remove(filter: filter, clientID: clientID)
        }
        if publishWill, let will = session.delayedWill {
            if will.message.retain { retained.store(will.message) }
            route(will.message, now: now)
        }
    }

    private mutating func protocolViolation(
        _ connection: ConnectionID,
        _ code: ReasonCode,
        _ reason: String,
        now: BrokerTime
    ) {
        close(connection, reason: code, reasonString: reason)
        detach(connection, now: now, reason: .protocolError(reason))
    }

    /// `afterReading`: close once the client's bytes already sent have been read (a takeover).
    private mutating func close(
        _ connection: ConnectionID,
        reason: ReasonCode,
        reasonString: String? = nil,
        afterReading: Bool = false
    ) {
        guard let client = connections[connection] else { return }
        var disconnect: DisconnectPacket? = nil
        if client.version >= .v5 {
            var properties = Properties()
            properties.reasonString = reasonString
            disconnect = DisconnectPacket(reasonCode: reason, properties: properties)
        }
        actions.append(afterReading ? .takeOver(connection, disconnect) : .close(connection, disconnect))
    }

    // MARK: Routing and delivery

    private func mayReceive(_ clientID: String, username: String?, topic: String) -> Bool {
        accessPolicy?.mayReceive(clientID: clientID, username: username, topic: topic) ?? true
    }

    /// Delivers a message to every matching subscription: one copy per client, at the highest
    /// granted QoS of its matching subscriptions [MQTT-3.3.5-1], with all their identifiers. Returns
    /// the durable appends of the bridges' `out` rules the same trie walk found (the caller decides
    /// whether the message is one that goes out: wills and bridge `in` messages do not).
    @discardableResult
    private mutating func route(_ message: Message, now: BrokerTime) -> [DurableAppend] {
        // The match of the previous publish's storage, emptied: its arrays are not allocated anew every time.
        var match = SubscriptionTree.Match()
        swap(&match, &lastMatch)
        defer {
            match.clear()
            swap(&match, &lastMatch)
        }
        subscriptions.match(topic: message.topic, into: &match)
        if match.subscribers.count == 1, let only = match.subscribers.first {
            deliver(message, to: only.clientID, subscriptions: CollectionOfOne(only.subscription), now: now)
        } else if !match.subscribers.isEmpty {
            var byClient: [String: [Subscription]] = [:]
            for entry in match.subscribers { byClient[entry.clientID, default: []].append(entry.subscription) }
            // The first session that queues the message copies its payload (`OutboundWindow.offer`); the
            // others queue that same copy, not one each.
            var message = message
            for (clientID, matched) in byClient {
                if let kept = deliver(message, to: clientID, subscriptions: matched, now: now) {
                    message.payload = kept
                }
            }
        }
        for shared in match.sharedGroups {
            let sessions = self.sessions
            let picked = subscriptions.nextSharedMember(node: shared.node, group: shared.group) {
                sessions[$0]?.isConnected == true
            }
            if let picked {
                deliver(message, to: picked.clientID, subscriptions: CollectionOfOne(picked.subscription), now: now)
            }
        }
        return BridgeOutbound.appends(for: message.topic, matched: match.durable, in: outboundTable)
    }

    /// Returns the payload the session queued (compacted), if it queued the message.
    @discardableResult
    private mutating func deliver(
        _ message: Message,
        to clientID: String,
        subscriptions matched: some Collection<Subscription>,
        now: BrokerTime
    ) -> ByteBuffer? {
        var qos = QoS.atMostOnce
        var retainAsPublished = false
        var identifiers: [UInt32] = []
        var any = false
        for subscription in matched {
            if subscription.options.noLocal && message.origin == clientID { continue }  // [MQTT-3.8.3-3]
            any = true
            qos = max(qos, subscription.options.qos)
            retainAsPublished = retainAsPublished || subscription.options.retainAsPublished
            if let identifier = subscription.identifier { identifiers.append(identifier) }
        }
        guard any else { return nil }
        if accessPolicy != nil {
            // The session's user, not the live connection's: an offline session is not anonymous.
            let username = sessions[clientID]?.username
            guard mayReceive(clientID, username: username, topic: message.topic) else {
                stats.drop(.notAuthorized)
                return nil
            }
        }
        return enqueue(
            message,
            qos: settings.deliveredQoS(message.qos, subscription: qos),
            // Live messages carry retain=0 unless the subscription asks otherwise [MQTT-3.3.1-12].
            retain: retainAsPublished && message.retain,
            subscriptionIdentifiers: identifiers,
            for: clientID,
            now: now
        )
    }

    /// `enqueue` of a delivery made already (a retained message for a new subscription).
    @discardableResult
    private mutating func enqueue(_ delivery: Delivery, for clientID: String, now: BrokerTime) -> ByteBuffer? {
        enqueue(
            delivery.message,
            qos: delivery.qos,
            retain: delivery.retain,
            subscriptionIdentifiers: delivery.subscriptionIdentifiers,
            for: clientID,
            now: now
        )
    }

    /// Sends at once when the window allows, otherwise queues within the client's bounds. Returns the
    /// payload it queued (compacted), if it queued the message.
    @discardableResult
    private mutating func enqueue(
        _ message: Message,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [UInt32],
        for clientID: String,
        now: BrokerTime
    ) -> ByteBuffer? {
        guard let slot = sessions.slot(of: clientID) else { return nil }
        let connection = sessions.read(at: slot) { $0.connection }
        let client = connection.flatMap { connections.index(forKey: $0) }
        var deliverable = false
        var clientReceiveMaximum: Int?
        if let client {
            (deliverable, clientReceiveMaximum) = connections.read(at: client) { (!$0.backedUp, $0.receiveMaximum) }
        }
        // QoS 0 for a connected client that keeps up goes out at once and changes nothing in its session:
        // no `Delivery` is made for it (a copy of the message, released after).
        if qos == .atMostOnce && deliverable, let client {
            sendPublish(
                message,
                qos: qos,
                retain: retain,
                subscriptionIdentifiers: subscriptionIdentifiers,
                packetID: nil,
                dup: false,
                at: client,
                now: now
            )
            return nil
        }
        let delivery = Delivery(
            message: message,
            qos: qos,
            retain: retain,
            subscriptionIdentifiers: subscriptionIdentifiers
        )
        let limits = settings.outboundLimits(clientReceiveMaximum: clientReceiveMaximum)
        let offer = sessions[slot: slot].outbound.offer(
            delivery,
            deliverable: deliverable,
            connected: connection != nil,
            limits
        )
        // `sendPublish` adds or removes no session or connection: the slots stay valid across it.
        switch offer {
        case .send(let packetID):
            if let client, sendPublish(delivery, packetID: packetID, dup: false, at: client, now: now) {
                sessions[slot: slot].outbound.sent(delivery, packetID: packetID)
                sessions.noteSent(at: slot)
            }
        case .sendUnacknowledged:
            if let client { sendPublish(delivery, packetID: nil, dup: false, at: client, now: now) }
        case .queued(let stored):
            sessions.noteStored(stored, at: slot)
            if routeGate == nil && connection != nil
                && sessions.read(at: slot, { $0.outbound.queue.count }) >= AckHolds.backlog(settings)
                && ackHolds.mayGate(clientID)
            {
                routeGate = clientID
            }
            return stored.message.payload
        case .refused(let reason):
            if let reason { stats.drop(reason) }
        }
        return nil
    }

    /// Sends queued messages while the socket takes them: QoS 0 at once, QoS 1/2 while the
    /// in-flight window has room.
    private mutating func pump(_ clientID: String, now: BrokerTime) {
        if let slot = sessions.slot(of: clientID) { pump(at: slot, now: now) }
    }

    private mutating func pump(at slot: SessionTable.Slot, now: BrokerTime) {
        defer { if ackHolds.holdsAny { releaseIfDrained(at: slot) } }
        // Most PUBACKs find nothing queued.
        guard let connection = sessions.read(at: slot, { $0.outbound.hasQueued ? $0.connection : nil }),
            let client = connections.index(forKey: connection)
        else {
            return
        }
        let (backedUp, receiveMaximum) = connections.read(at: client) { ($0.backedUp, $0.receiveMaximum) }
        guard !backedUp else { return }
        let limits = settings.outboundLimits(clientReceiveMaximum: receiveMaximum)
        while let (delivery, packetID) = sessions[slot: slot].outbound.next(limits) {
            guard let packetID else {
                sendPublish(delivery, packetID: nil, dup: false, at: client, now: now)
                sessions.noteReleased(delivery, at: slot)
                continue
            }
            if sendPublish(delivery, packetID: packetID, dup: false, at: client, now: now) {
                sessions[slot: slot].outbound.sent(delivery, packetID: packetID)
            } else {
                sessions.noteReleased(delivery, at: slot)
            }
        }
    }

    /// Builds and sends one PUBLISH; false when it was dropped (expired, or too large for the client).
    @discardableResult
    private mutating func sendPublish(
        _ delivery: Delivery,
        packetID: UInt16?,
        dup: Bool,
        at slot: ConnectionSlot,
        now: BrokerTime
    ) -> Bool {
        sendPublish(
            delivery.message,
            qos: delivery.qos,
            retain: delivery.retain,
            subscriptionIdentifiers: delivery.subscriptionIdentifiers,
            packetID: packetID,
            dup: dup,
            at: slot,
            now: now
        )
    }

    /// `message` as one subscriber receives it: at `qos`, with `retain` and `subscriptionIdentifiers`.
    @discardableResult
    private mutating func sendPublish(
        _ message: Message,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [UInt32],
        packetID: UInt16?,
        dup: Bool,
        at slot: ConnectionSlot,
        now: BrokerTime
    ) -> Bool {
        var properties = message.properties
        if let expiresAt = message.expiresAt {
            guard expiresAt > now else {
                stats.drop(.expired)
                return false
            }
            // The forwarded expiry is the time that remains [MQTT-3.3.2-6].
            properties.messageExpiryInterval = UInt32((expiresAt - now + 999) / 1000)
        }
        if !subscriptionIdentifiers.isEmpty || (!properties.isEmpty && !properties.subscriptionIdentifiers.isEmpty) {
            properties.subscriptionIdentifiers = subscriptionIdentifiers
        }
        var topic = message.topic
        let (listener, version, maximumPacketSize, topicAliasMaximum) = connections.read(at: slot) {
            ($0.listener, $0.version, $0.maximumPacketSize, Int($0.topicAliasMaximum))
        }
        if let mount = settings.listenerMountPoints[listener] {
            // The client sees topics without its listener's prefix; one outside it never reaches it (Mosquitto).
            guard topic.hasPrefix(mount), topic.utf8.count > mount.utf8.count else { return false }
            topic.removeFirst(mount.count)
        }
        var packet = PublishPacket(
            topic: topic,
            payload: message.payload,
            qos: qos,
            retain: retain,
            dup: dup,
            packetIdentifier: packetID,
            properties: properties
        )
        if version >= .v5 && MQTTCodec.encodedSize(.publish(packet), version: version) > maximumPacketSize {
            // Never send more than the client accepts: drop it for this client only [MQTT-3.1.2-25].
            stats.drop(.tooLargeForClient)
            return false
        }
        if topicAliasMaximum > 0 {
            let known = connections.values[slot].outgoingAliases
            if let alias = known[packet.topic] {
                packet.properties.topicAlias = alias
                packet.topic = ""
            } else if known.count < topicAliasMaximum {
                let alias = UInt16(known.count + 1)
                connections.values[slot].outgoingAliases[packet.topic] = alias
                packet.properties.topicAlias = alias
            }
        }
        stats.publishSent += 1
        stats.publishSentByQoS[Int(qos.rawValue)] += 1
        stats.publishBytesSent += packet.payload.readableBytes
        send(.publish(packet), to: connections.keys[slot])
        return true
    }

    private mutating func send(_ packet: Packet, to connection: ConnectionID) {
        stats.messagesSent += 1
        actions.append(.send(connection, packet))
    }
}
