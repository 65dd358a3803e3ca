import DequeModule
import Logging
import MQTTCore
import NIOCore
import NIOPosix
import SluiceBroker
import SluicePOSIX
import SluiceStore

/// The one serial owner of the broker core. Every method runs on `loop`, and every client connection
/// lives on `loop` too (GatewayService's listeners, the tests' embedded channels), as Mosquitto serves
/// its clients from one thread: connections hand their packets over within the loop (`handOver`), and
/// packets for them are written directly, once per connection and loop turn (`flushOutbox`). No lock
/// is taken on the publish path.
final class BrokerHost: @unchecked Sendable {
    let loop: any EventLoop
    let logger: Logger
    private var core: Broker
    private var connections: [ConnectionID: ConnectionHandle] = [:]
    private var lastID: UInt64 = 0
    private let started: NIODeadline
    /// Bytes over client connections (counted on `loop`, read by the metrics endpoint on its own).
    let traffic = TrafficCounters()

    /// Receives messages for the durable bridge queues; must call `persisted(_:)` later.
    var durableSink: (@Sendable (_ token: UInt64, _ message: Message, _ appends: [DurableAppend]) -> Void)?

    /// `connection_messages`: log client connects and disconnects. Set before the listeners open.
    var connectionMessages: Bool {
        get { clientLog.enabled }
        set { clientLog.enabled = newValue }
    }
    private var clientLog: ClientEventLog

    init(loop: any EventLoop, settings: BrokerSettings, logger: Logger) {
        self.loop = loop
        self.started = loop.now
        self.core = Broker(settings: settings)
        self.logger = logger
        self.clientLog = ClientEventLog(logger: logger)
    }

    /// Broker time: milliseconds since the host started (monotonic). The loop's clock, so an
    /// `EmbeddedEventLoop` drives keep-alive and expiry in tests; a real loop's is `NIODeadline.now()`.
    var now: BrokerTime { BrokerTime((loop.now - started).nanoseconds / 1_000_000) }

    /// A new connection's identifier, on `loop` (where connections are accepted).
    func makeConnectionID() -> ConnectionID {
        loop.preconditionInEventLoop()
        lastID += 1
        return ConnectionID(lastID)
    }

    // MARK: Hand-off from the connections (on `loop`)

    /// What a connection hands over to the broker: run in the order it came (`runArrivals`), so a
    /// connection's packets reach the broker before its close.
    enum Arrival {
        indirect case connect(
            ConnectionID,
            ConnectPacket,
            handle: ConnectionHandle,
            listener: Int,
            identityVerified: Bool
        )
        case packet(ConnectionID, Packet)
        case writabilityChanged(ConnectionID, writable: Bool)
        case closed(ConnectionID, cause: DepartureReason?)
    }

    /// What the connections handed over and the broker has not run yet. A list of values, not of
    /// closures: a PUBLISH read costs one append, no closure context or packet array allocated for it.
    private var arrivals: Deque<Arrival> = []
    private var arrivalsScheduled = false
    private var runningArrivals = false

    /// Keeps `arrival` to run after those handed over before it: when its connection's read completes
    /// (`runArrivals`), or in this turn's task (`runArrivalsSoon`) for what comes outside a read.
    func handOver(_ arrival: Arrival) {
        arrivals.append(arrival)
    }

    /// Runs the arrivals in a task of this loop turn: for a close or a change of writability, which can
    /// come while the broker runs (a connection it closes), and for a read whose completion its
    /// connection cannot count on being told.
    func runArrivalsSoon() {
        guard !arrivalsScheduled else { return }
        arrivalsScheduled = true
        // Checks, once per task, that this is `loop`.
        loop.assumeIsolated().execute {
            self.arrivalsScheduled = false
            self.runArrivals()
        }
    }

    /// Runs what was handed over, in the order it came: what a connection read reaches the broker at
    /// the end of its read, without a task of its own, and goes out in `flushOutbox`'s one write per
    /// connection at the turn's end.
    func runArrivals() {
        // What is handed over while these run (the close of a connection the broker closed) runs after them.
        guard !runningArrivals else { return }
        runningArrivals = true
        defer { runningArrivals = false }
        // Each is moved out of the queue (an array's element is copied out, with every reference in its packet).
        var ran = 0
        while let arrival = arrivals.popFirst() {
            ran += 1
            // Consumed: a bound packet is moved on, not copied (every reference in it retained) and released after.
            switch consume arrival {
            case .connect(let id, let packet, let handle, let listener, let identityVerified):
                connect(id, packet, handle: handle, listener: listener, identityVerified: identityVerified)
            case .packet(let id, let packet): deliver(packet, from: id)
            case .writabilityChanged(let id, let writable): writabilityChanged(id, writable: writable)
            case .closed(let id, let cause): closed(id, cause: cause)
            }
        }
        // A burst's room is not kept for the idle connections that follow it.
        if ran > 64 { arrivals = [] }
    }

    // MARK: Events (on `loop`)

    /// Decides who may connect; nil lets everyone in (tests of the core only).
    var authenticator: Authenticator?
    /// With `per_listener_settings true`: the authenticator of each listener (by index), used
    /// instead of `authenticator` for connections on that listener.
    var listenerAuthenticators: [Int: Authenticator] = [:]
    /// CONNECTs the authenticator refused, by reason label (`sluice_auth_failures_total`).
    private(set) var authenticationFailures: [String: Int] = [:]

    /// `listener`: the index of the listener that accepted it; `identityVerified`: the username came
    /// from a verified TLS client certificate (`use_identity_as_username`). Neither is kept here: the
    /// broker's admission holds the listener until authentication, and its `.authenticate` carries the flag.
    func connect(
        _ id: ConnectionID,
        _ packet: ConnectPacket,
        handle: ConnectionHandle,
        listener: Int,
        identityVerified: Bool
    ) {
        loop.preconditionInEventLoop()
        connections[id] = handle
        let usernameIsClientID = core.settings.listenersUsingUsernameAsClientID.contains(listener)
        let effectiveClientID = usernameIsClientID ? packet.username ?? "" : packet.clientIdentifier
        if effectiveClientID.hasPrefix(Self.inProcessClientPrefix) {
            // Reserved for in-process clients, which the ACL trusts: a network client must not take one over.
            return run(core.refuseConnect(id, reason: .clientIdentifierNotValid))
        }
        let authenticates = (listenerAuthenticators[listener] ?? authenticator) != nil
        admit(
            id,
            packet,
            handle: handle,
            core.connect(
                id,
                packet,
                listener: listener,
                authenticate: authenticates,
                identityVerified: identityVerified,
                now: now
            )
        )
    }

    /// Carries out `.authenticate`: the authenticator decides (hashing off the loop) and the broker
    /// hears it here; the packets that came meanwhile wait in the broker.
    private func authenticate(_ id: ConnectionID, _ packet: ConnectPacket, identityVerified: Bool) {
        guard connections[id] != nil, let listener = core.listener(of: id) else { return }
        guard let authenticator = listenerAuthenticators[listener] ?? authenticator else {
            return run(core.authenticated(id, .accept, now: now))
        }
        authenticator.authenticate(packet, identityVerified: identityVerified, on: loop).whenComplete { result in
            guard let handle = self.connections[id] else { return }  // the socket closed meanwhile
            switch result {
            case .success(.accept):
                self.admit(id, packet, handle: handle, self.core.authenticated(id, .accept, now: self.now))
            case .success(.refuse(let reason)):
                self.authenticationFailures[
                    reason == .badUserNameOrPassword ? "bad_username_or_password" : "not_authorized",
                    default: 0
                ] += 1
                self.logger.notice(
                    "authentication failed",
                    metadata: [
                        "client": "\(packet.clientIdentifier)", "username": "\(packet.username ?? "-")",
                        "remote": "\(handle.remoteAddress)", "reason": "\(reason)",
                    ]
                )
                self.run(self.core.authenticated(id, .refuse(reason), now: self.now))
            case .failure(let error):
                self.logger.error("authentication could not run: \(error)")
                self.run(self.core.authenticated(id, .refuse(.serverUnavailable), now: self.now))
            }
        }
    }

    /// Logs how the broker answered a CONNECT (`connection_messages`), then carries out its actions.
    private func admit(
        _ id: ConnectionID,
        _ packet: ConnectPacket,
        handle: ConnectionHandle,
        _ actions: [BrokerAction]
    ) {
        if let clientID = core.clientID(of: id) {
            clientLog.connected(clientID: clientID, remote: handle.remoteAddress, packet: packet)
        } else if core.awaitsTakeover(id) {
            // Logged with its CONNACK, once the old connection is gone.
            connectLogsAwaitingTakeover[id] = (handle.remoteAddress, packet)
        } else if let code = Self.connAckFailure(actions, for: id) {
            clientLog.refused(
                clientID: packet.clientIdentifier,
                remote: handle.remoteAddress,
                packet: packet,
                code: code
            )
        } else if let ack = Self.connAck(actions, for: id) {
            // Admitted, then gone at once: what it sent while it authenticated closed it (a DISCONNECT).
            let clientID = ack.properties.assignedClientIdentifier ?? packet.clientIdentifier
            clientLog.connected(clientID: clientID, remote: handle.remoteAddress, packet: packet)
        }
        run(actions)
    }

    /// `connection_messages` lines of connections waiting for a takeover, logged with their CONNACK.
    private var connectLogsAwaitingTakeover: [ConnectionID: (remote: String, packet: ConnectPacket)] = [:]

    func receive(_ id: ConnectionID, _ packet: Packet) {
        loop.preconditionInEventLoop()
        deliver(packet, from: id)
    }

    /// `receive` without its check: `runArrivals` is on `loop` already.
    private func deliver(_ packet: consuming Packet, from id: ConnectionID) {
        if packet.isSubscription { clientLog.received(packet, clientID: core.clientID(of: id)) }
        // Taken out while they run: running them can hand a connection's read on (a failed write reads
        // what its peer sent last), and that packet's actions then fill a list of their own.
        var actions: [BrokerAction] = []
        swap(&actions, &receivedActions)
        core.receive(packet, from: id, now: now, into: &actions)
        run(taking: &actions)
        swap(&actions, &receivedActions)
    }

    /// The actions of the packet received now: one buffer that the broker fills for every packet
    /// (`Broker.receive(_:from:now:into:)`) and `run(taking:)` empties, not an array allocated per packet.
    private var receivedActions: [BrokerAction] = []

    /// `cause`: why the connection's own handler closed it, to name in the disconnect line.
    func closed(_ id: ConnectionID, cause: DepartureReason? = nil) {
        loop.preconditionInEventLoop()
        guard let handle = connections.removeValue(forKey: id) else { return }
        connectionsClosed += 1
        connectLogsAwaitingTakeover[id] = nil
        let actions = core.closed(id, now: now)
        logDepartures(closed: (id, handle.remoteAddress), cause: cause)
        run(actions)
    }

    func writabilityChanged(_ id: ConnectionID, writable: Bool) {
        loop.preconditionInEventLoop()
        run(core.writabilityChanged(id, writable: writable, now: now))
    }

    func tick() {
        clientLog.flush()
        run(core.tick(now: now))
        savePersistentState()
        let stats = core.stats
        let activity = stats.messagesReceived &+ stats.messagesSent &+ stats.connectionsTotal &+ connectionsClosed
        if idleTrim.shouldTrim(activity: activity, now: .milliseconds(Int64(now))) { IdleTrim.releaseFreeHeap() }
    }

    private var idleTrim = IdleTrim()
    /// Connections gone so far: a close frees memory too, so it counts as activity for `idleTrim`.
    private var connectionsClosed = 0

    // MARK: $SYS

    /// `$SYS/broker/load/...`: moving averages of the counters below, updated at each publish.
    private var load = SystemLoad()
    /// The largest `heap/current` seen. Mosquitto counts its own allocations; the nearest Sluice has is the
    /// process's anonymous resident memory (`RssAnon`).
    private var heapMaximum = 0

    /// Publishes Mosquitto's `$SYS/broker/...` topics (retained), as Mosquitto does every `sys_interval`.
    func publishSystemTopics(
        version: String,
        bridges: [(name: String, connected: Bool)],
        more: [(topic: String, value: String)] = []
    ) {
        loop.preconditionInEventLoop()
        let stats = core.stats
        var values: [(String, String)] = [
            ("version", "sluice \(version)"),
            ("uptime", "\(now / 1000) seconds"),
            ("clients/connected", "\(core.connectedClientCount)"),
            ("clients/active", "\(core.connectedClientCount)"),
            ("clients/total", "\(core.sessionCount)"),
            ("clients/disconnected", "\(core.sessionCount - core.connectedClientCount)"),
            ("clients/inactive", "\(core.sessionCount - core.connectedClientCount)"),
            ("clients/maximum", "\(stats.clientsMaximum)"),
            ("bytes/received", "\(traffic.totals.received)"),
            ("bytes/sent", "\(traffic.totals.sent)"),
            ("messages/received", "\(stats.messagesReceived)"),
            ("messages/sent", "\(stats.messagesSent)"),
            ("publish/messages/received", "\(stats.publishReceived)"),
            ("publish/messages/sent", "\(stats.publishSent)"),
            ("publish/messages/dropped", "\(stats.dropped.values.reduce(0, +))"),
            ("retained messages/count", "\(core.retainedCount)"),
            ("subscriptions/count", "\(core.subscriptionCount)"),
            ("shared_subscriptions/count", "\(core.sharedSubscriptionCount)"),
            ("clients/expired", "\(stats.clientsExpired)"),
            ("publish/bytes/received", "\(stats.publishBytesReceived)"),
            ("publish/bytes/sent", "\(stats.publishBytesSent)"),
        ]
        let stored = core.storedMessages
        values += [
            ("store/messages/count", "\(stored.count)"),
            ("store/messages/bytes", "\(stored.bytes)"),
            ("messages/stored", "\(stored.count)"),  // Mosquitto's older name for the same count
        ]
        if let heap = anonymousResidentBytes() {
            heapMaximum = max(heapMaximum, heap)
            values += [("heap/current", "\(heap)"), ("heap/maximum", "\(heapMaximum)")]
        }
        values += load.update(
            seconds: Double(now) / 1000,
            counters: [
                "messages/received": stats.messagesReceived, "messages/sent": stats.messagesSent,
                "publish/received": stats.publishReceived, "publish/sent": stats.publishSent,
                "publish/dropped": stats.dropped.values.reduce(0, +),
                "bytes/received": traffic.totals.received, "bytes/sent": traffic.totals.sent,
                "sockets": stats.connectionsTotal, "connections": stats.connectionsTotal,
            ]
        )
        for bridge in bridges {
            values.append(("connection/\(bridge.name)/state", bridge.connected ? "1" : "0"))
        }
        values += more
        var actions: [BrokerAction] = []
        for (name, value) in values {
            let message = Message(
                topic: "$SYS/broker/\(name)",
                payload: ByteBuffer(string: value),
                qos: .atMostOnce,
                retain: true
            )
            actions += core.publishSystem(message, now: now)
        }
        run(actions)
    }

    // MARK: Persistence (`persistence true`)

    private var persistence: Store?

    /// Wall-clock minus broker time, in milliseconds: how deadlines are stored.
    private var wallClockOffset: Int64 { Int64(Store.wallClockMilliseconds()) - Int64(now) }

    /// Loads retained messages and persistent sessions, then saves changes from now on.
    func enablePersistence(_ store: Store) throws {
        loop.preconditionInEventLoop()
        let sessions = try store.scan(table: PersistenceTable.sessions.rawValue)
        let messages = try store.scan(table: PersistenceTable.sessionMessages.rawValue)
        let retained = try store.scan(table: PersistenceTable.retained.rawValue)
        core.tracksChanges = true
        let problems = core.restore(
            sessions: sessions.map(\.value),
            sessionMessages: messages,
            retained: retained.map(\.value),
            wallClockOffset: wallClockOffset,
            now: now
        )
        for problem in problems { logger.error("skipped a damaged persisted record: \(problem)") }
        logger.info(
            "restored \(sessions.count) session(s) with \(messages.count) message(s) and \(retained.count) retained message(s)"
        )
        persistenceEncoder.start()
        persistence = store
    }

    /// Encodes saves off the broker's loop, one at a time and in order (a single thread), so a
    /// large save never stalls other clients and saves reach the store in the order taken.
    private let persistenceEncoder = NIOThreadPool(numberOfThreads: 1)
    /// A save is being encoded or committed: the next one waits rather than piling up, so under
    /// load saves follow each other back to back (group commit) instead of every 250 ms.
    private var saveInProgress = false
    private var saveScheduled = false

    /// Acknowledgements wait for a save (a QoS 1/2 publish changed retained messages or a persistent
    /// session): save at the end of this loop turn, or as soon as the running save has committed.
    private func saveSoonIfAcknowledgementsWait() {
        guard persistence != nil, core.hasAcknowledgementsAwaitingSave, !saveInProgress, !saveScheduled else { return }
        saveScheduled = true
        loop.execute {
            self.saveScheduled = false
            self.savePersistentState()
        }
    }

    /// Keeps change sets whose save failed and paces the retries (see `StateSaver`).
    private var saver = StateSaver()

    /// Hands what changed since the last save to the encoder; the store commits it in one
    /// transaction, then the acknowledgements that waited for it go out. `force` saves even while an
    /// earlier save is still running (at shutdown: in order after it). A failed save is kept and
    /// retried with a backoff until one commits (`StateSaver`).
    @discardableResult
    func savePersistentState(force: Bool = false) -> EventLoopFuture<Void> {
        guard let store = persistence, force || !saveInProgress else { return loop.makeSucceededVoidFuture() }
        var changes = core.takeChanges()
        let acknowledgements = changes.acknowledgements
        changes.acknowledgements = []
        let batch: [PendingChanges]
        switch saver.next(changes, force: force) {
        case .nothing:
            persisted(acknowledgements.map { ($0, CommitOutcome.committed) })
            return loop.makeSucceededVoidFuture()
        case .answerNow(let failure):
            persisted(acknowledgements.map { ($0, failure) })
            return loop.makeSucceededVoidFuture()
        case .save(let changeSets):
            batch = changeSets
        }
        saveInProgress = true
        let offset = wallClockOffset
        let logger = self.logger
        let committed = loop.makePromise(of: CommitOutcome.self)
        persistenceEncoder.submit { state in
            guard case .active = state else { return committed.succeed(.failed("the encoder stopped")) }
            let writes = batch.flatMap { $0.encoded(wallClockOffset: offset) }.compactMap {
                Self.tableWrite($0, logger: logger)
            }
            store.apply(writes) { result in
                switch result {
                case .success: committed.succeed(.committed)
                case .failure(let error): committed.succeed(CommitOutcome(error))
                }
            }
        }
        return committed.futureResult.map { outcome in
            self.saveInProgress = false
            self.savedState(batch, outcome: outcome)
            self.persisted(acknowledgements.map { ($0, outcome) })
            self.saveSoonIfAcknowledgementsWait()
        }
    }

    /// After a save: log a change of state once, and schedule the retry of a failed one.
    private func savedState(_ batch: [PendingChanges], outcome: CommitOutcome) {
        let failedBefore = saver.failedAttempts
        guard let retryAfter = saver.finished(batch, outcome) else {
            if failedBefore > 0 { logger.notice("broker state saved again after \(failedBefore) failed attempt(s)") }
            return
        }
        if failedBefore == 0 {
            logger.error("saving broker state failed, retrying until it succeeds: \(outcome.reasonString ?? "")")
        }
        loop.scheduleTask(in: .milliseconds(Int64(retryAfter))) {
            self.saver.retryIsDue()
            self.savePersistentState()
        }
    }

    /// The store's form of a broker state write; nil (logged) for a key the store cannot hold (a
    /// client identifier or topic longer than the store's key limit).
    static func tableWrite(_ write: StateWrite, logger: Logger) -> TableWrite? {
        let (table, key): (PersistenceTable, [UInt8]) =
            switch write {
            case .put(let table, let key, _), .delete(let table, let key), .deletePrefix(let table, let key):
                (table, key)
            }
        guard key.count <= Store.maxKeyLength(table: table.rawValue) else {
            logger.error("not saved: a \(table.rawValue) key of \(key.count) bytes is longer than the store allows")
            return nil
        }
        switch write {
        case .put(_, _, let value): return .put(table: table.rawValue, key: key, value: value)
        case .delete: return .delete(table: table.rawValue, key: key)
        case .deletePrefix: return .deletePrefix(table: table.rawValue, prefix: key)
        }
    }

    /// Ends the encoder once the last save has been handed over.
    func stopPersistence() async {
        try? await persistenceEncoder.shutdownGracefully()
    }

    /// Durable appends or a save finished: their PUBACKs/PUBRECs go out together, one write per connection.
    func persisted(_ outcomes: some Sequence<(token: UInt64, outcome: CommitOutcome)>) {
        loop.preconditionInEventLoop()
        let now = self.now
        var actions: [BrokerAction] = []
        for (token, outcome) in outcomes {
            actions += core.persisted(token: token, outcome: outcome, now: now)
            keptCallbacks.removeValue(forKey: token)?(outcome)
        }
        run(actions)
    }

    /// Publishes a message from inside the gateway (bridge `in` rules, `$SYS`, LoRaWAN).
    /// `whenKept` runs (on `loop`) once the message is kept: at once, or when it changed saved
    /// state, after the save that should hold it, with its outcome: only `.committed` may be
    /// acknowledged to whoever sent the message (a central's PUBACK for a bridge `in` message).
    func publish(_ message: Message, whenKept: ((CommitOutcome) -> Void)? = nil) {
        loop.preconditionInEventLoop()
        let (actions, token) = core.publishAwaitingSave(message, now: now)
        if let whenKept {
            if let token { keptCallbacks[token] = whenKept } else { whenKept(.committed) }
        }
        run(actions)
    }

    /// Callbacks of internal publishes waiting for a save, by the token the save releases.
    private var keptCallbacks: [UInt64: (CommitOutcome) -> Void] = [:]

    /// The bridges' `out` rules as the broker routes them (on `loop`); a SIGHUP replaces the whole table at once.
    func setBridgeOutbound(_ table: [BridgeOutbound]) {
        core.setBridgeOutbound(table)
    }

    /// On `loop`: SIGHUP's new rules for the bridges at `changes`' indices; the others keep theirs.
    func replaceBridgeOutbound(_ changes: [Int: BridgeOutbound]) {
        var table = core.bridgeOutbound
        for (index, outbound) in changes where table.indices.contains(index) { table[index] = outbound }
        core.setBridgeOutbound(table)
    }

    /// The ACL in force (nil without acl_file), for the bridges' `local_username` checks. On `loop`.
    var accessPolicy: (any AccessPolicy)? { core.accessPolicy }

    func setAccessPolicy(_ policy: (any AccessPolicy)?) {
        core.accessPolicy = policy.map { TrustingInProcessClients(policy: $0) }
    }

    var stats: BrokerStats { core.stats }
    var connectedClients: Int { core.connectedClientCount }
    var retainedCount: Int { core.retainedCount }
    var sessionCount: Int { core.sessionCount }
    var subscriptionCount: Int { core.subscriptionCount }

    /// Tells every client the server is going away (MQTT 5: 0x8B) and closes them.
    /// Returns when the last save has committed.
    func shutdown() -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        clientLog.shuttingDown = true
        flushOutbox()
        for (_, handle) in connections {
            handle.handler.write(close: .after(DisconnectPacket(reasonCode: .serverShuttingDown)))
        }
        return savePersistentState(force: true)
    }

    /// The sockets of connected clients: shutdown waits until they have closed. On `loop`.
    var clientChannels: [any Channel] { connections.values.map(\.channel) }

    // MARK: Actions

    /// The CONNACK failure code the broker answered `id` with, if it refused it.
    private static func connAckFailure(_ actions: [BrokerAction], for id: ConnectionID) -> ReasonCode? {
        for case .send(id, .connAck(let ack)) in actions where ack.reasonCode.isFailure { return ack.reasonCode }
        return nil
    }

    /// The CONNACK the broker answered `id` with, if any.
    private static func connAck(_ actions: [BrokerAction], for id: ConnectionID) -> ConnAckPacket? {
        for case .send(id, .connAck(let ack)) in actions { return ack }
        return nil
    }

    /// One line per connection the broker ended (or saw end), with why. `closed`: a connection whose
    /// handle is already gone, with its address.
    private func logDepartures(closed: (ConnectionID, String)? = nil, cause: DepartureReason? = nil) {
        for var departure in core.takeDepartures() where !departure.clientID.hasPrefix(Self.inProcessClientPrefix) {
            if let cause, departure.reason == .socketClosed, departure.connection == closed?.0 {
                departure.reason = cause
            }
            let remote =
                connections[departure.connection]?.remoteAddress
                ?? (closed?.0 == departure.connection ? closed?.1 : nil) ?? "?"
            clientLog.departed(departure, remote: remote)
        }
    }

    private func run(_ actions: consuming [BrokerAction]) {
        var actions = actions
        run(taking: &actions)
    }

    /// Runs `actions` in order and leaves the list empty, its room kept. Each is popped (moved) out of the
    /// reversed list, not copied: a copy of a PUBLISH retains its topic, payload and properties, and releases
    /// them after; and nothing is left behind in its place to destroy.
    private func run(taking actions: inout [BrokerAction]) {
        defer { saveSoonIfAcknowledgementsWait() }
        logDepartures()
        guard !actions.isEmpty else { return }
        // Packets for a network connection join its queue for the turn's end (or go with its close,
        // after what was queued before); packets for in-process clients are gathered in `outbox`.
        var outbox: [ConnectionID: [Packet]] = [:]
        // Reversed in the buffer, where a swap moves the two elements: `Array.reverse` copied them.
        actions.withUnsafeMutableBufferPointer { $0.reverse() }
        while let action = actions.popLast() {
            switch consume action {
            case .send(let id, let packet):
                if !connectLogsAwaitingTakeover.isEmpty, case .connAck(let ack) = packet,
                    let waited = connectLogsAwaitingTakeover.removeValue(forKey: id), ack.reasonCode == .success
                {
                    let clientID = core.clientID(of: id) ?? waited.packet.clientIdentifier
                    clientLog.connected(clientID: clientID, remote: waited.remote, packet: waited.packet)
                }
                if let handle = connections[id] {
                    queued.add(packet, for: handle.handler)
                } else {
                    outbox[id, default: []].append(packet)
                }
            case .close(let id, let disconnect):
                if let handle = connections[id] {
                    let close: CloseRequest = disconnect.map { .after($0) } ?? .silently
                    handle.handler.write(after: queued.take(handle.handler), close: close)
                } else {
                    closeInProcess(id, after: outbox.removeValue(forKey: id) ?? [])
                }
            case .takeOver(let id, let disconnect):
                if let handle = connections[id] {
                    handle.handler.write(after: queued.take(handle.handler), close: .afterReading(disconnect))
                } else if inProcessClients[id] != nil {
                    closeInProcess(id, after: outbox.removeValue(forKey: id) ?? [])
                } else {
                    // Gone already: the connection that waits for it must not wait for a `closed` that never comes.
                    loop.execute { self.run(self.core.closed(id, now: self.now)) }
                }
            case .authenticate(let id, let packet, let identityVerified):
                authenticate(id, packet, identityVerified: identityVerified)
            case .persist(let token, let message, let appends):
                if let durableSink {
                    durableSink(token, message, appends)
                } else {
                    persisted(CollectionOfOne((token: token, outcome: CommitOutcome.committed)))
                }
            }
        }
        for (id, packets) in outbox { inProcessClients[id]?(packets, false) }
        if !queued.isEmpty && !outboxFlushScheduled {
            outboxFlushScheduled = true
            loop.execute { self.flushOutbox() }
        }
    }

    // MARK: Outbox

    /// Packets for network connections gathered over this loop turn (every `run` of the turn adds to
    /// them), sent by `flushOutbox` at the turn's end: under a steady load each connection then gets
    /// one write per turn instead of one per incoming batch.
    private var queued = ConnectionOutbox()
    private var outboxFlushScheduled = false

    /// Writes the queued packets, one write per connection.
    private func flushOutbox() {
        outboxFlushScheduled = false
        var batch = queued.takeAll()
        for (connection, bytes) in batch where bytes.readableBytes > 0 { connection.writeQueued(bytes) }
        queued.recycle(&batch)
    }

    // MARK: In-process clients

    /// Client identifiers of in-process clients start with this; network clients are refused it.
    static let inProcessClientPrefix = "$sluice/"
    /// Where packets for in-process clients go (on `loop`); the flag says the broker closed it.
    private var inProcessClients: [ConnectionID: (_ packets: [Packet], _ closed: Bool) -> Void] = [:]

    /// The CONNECT of an in-process client: clean, no keep-alive (it lives as long as the host).
    static func inProcessConnect(clientID: String) -> ConnectPacket {
        ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: clientID, cleanStart: true, keepAlive: 0)
    }

    /// Connects a client that lives in this process (the LoRaWAN listener) as MQTT 3.1.1 with a
    /// clean session. It is trusted: no password check, and the ACL file does not apply to it. Its
    /// packets go in through `receive(_:_:)` like a network client's, so its QoS 1 publishes take
    /// the durable path of bridge `out` rules; the broker's packets for it reach `deliver` on `loop`.
    func connectInProcess(
        _ connect: ConnectPacket,
        deliver: @escaping (_ packets: [Packet], _ closed: Bool) -> Void
    ) -> ConnectionID {
        loop.preconditionInEventLoop()
        precondition(
            connect.clientIdentifier.hasPrefix(Self.inProcessClientPrefix),
            "in-process client IDs take the reserved prefix"
        )
        let id = makeConnectionID()
        inProcessClients[id] = deliver
        // Listener -1: no `listener` section's connection limit applies.
        run(core.connect(id, connect, listener: -1, now: now))
        return id
    }

    func disconnectInProcess(_ id: ConnectionID) {
        loop.preconditionInEventLoop()
        guard inProcessClients.removeValue(forKey: id) != nil else { return }
        run(core.closed(id, now: now))
    }

    private func closeInProcess(_ id: ConnectionID, after packets: [Packet]) {
        guard let deliver = inProcessClients.removeValue(forKey: id) else { return }
        deliver(packets, true)
        loop.execute { self.run(self.core.closed(id, now: self.now)) }
    }
}

/// The ACL file governs network clients; in-process clients (reserved client-ID prefix) are trusted.
private struct TrustingInProcessClients: AccessPolicy {
    let policy: any AccessPolicy

    func mayPublish(clientID: String, username: String?, topic: String) -> Bool {
        isInProcess(clientID) || policy.mayPublish(clientID: clientID, username: username, topic: topic)
    }

    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool {
        isInProcess(clientID) || policy.maySubscribe(clientID: clientID, username: username, filter: filter)
    }

    func mayReceive(clientID: String, username: String?, topic: String) -> Bool {
        isInProcess(clientID) || policy.mayReceive(clientID: clientID, username: username, topic: topic)
    }

    private func isInProcess(_ clientID: String) -> Bool { clientID.hasPrefix(BrokerHost.inProcessClientPrefix) }
}

/// `RssAnon` of /proc/self/status in bytes: the process's anonymous resident memory (heap, stacks).
private func anonymousResidentBytes() -> Int? {
    guard let text = try? FileSystem.readText("/proc/self/status") else { return nil }
    let line = text.split(separator: "\n").first { $0.hasPrefix("RssAnon:") }
    let kilobytes = line?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
    return kilobytes.map { $0 * 1024 }
}
