import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import SluiceBroker
import SluiceStore

/// The one serial owner of the broker core. Every method runs on `loop`; connections on other
/// loops hop here with their decoded packets, and packets for them hop back in batches. No lock
/// is taken on the publish path.
final class BrokerHost: @unchecked Sendable {
    let loop: any EventLoop
    let logger: Logger
    private var core: Broker
    private var connections: [ConnectionID: ConnectionHandle] = [:]
    private let nextID = NIOLockedValueBox<UInt64>(0)
    private let started = NIODeadline.now()
    /// Bytes over client connections (updated by the connection handlers on their own loops).
    let traffic = TrafficCounters()

    /// Receives messages for the durable bridge queues; must call `persisted(token:accepted:)` later.
    var durableSink: (@Sendable (_ token: UInt64, _ message: Message) -> Void)?

    init(loop: any EventLoop, settings: BrokerSettings, logger: Logger) {
        self.loop = loop
        self.core = Broker(settings: settings)
        self.logger = logger
    }

    /// Broker time: milliseconds since the host started (monotonic).
    var now: BrokerTime { BrokerTime((NIODeadline.now() - started).nanoseconds / 1_000_000) }

    /// Connection identifiers are handed out on any loop at accept time (not on the publish path).
    func makeConnectionID() -> ConnectionID {
        ConnectionID(nextID.withLockedValue { value in
            value += 1
            return value
        })
    }

    // MARK: Events (on `loop`)

    /// Decides who may connect; nil lets everyone in (tests of the core only).
    var authenticator: Authenticator?
    /// Packets that arrived while their connection's CONNECT was being authenticated.
    private var awaitingAuthentication: [ConnectionID: [Packet]] = [:]

    func connect(_ id: ConnectionID, _ packet: ConnectPacket, handle: ConnectionHandle) {
        loop.preconditionInEventLoop()
        connections[id] = handle
        guard let authenticator else { return admit(id, packet, handle: handle) }
        awaitingAuthentication[id] = []
        authenticator.authenticate(packet, identityVerified: handle.identityVerified, on: loop).whenComplete { result in
            guard let queued = self.awaitingAuthentication.removeValue(forKey: id), self.connections[id] != nil else {
                return  // the socket closed meanwhile
            }
            switch result {
            case .success(.accept):
                self.admit(id, packet, handle: handle)
                if !queued.isEmpty { self.receive(id, queued) }
            case .success(.refuse(let reason)):
                self.logger.notice(
                    "authentication failed",
                    metadata: [
                        "client": "\(packet.clientIdentifier)", "username": "\(packet.username ?? "-")",
                        "remote": "\(handle.remoteAddress)", "reason": "\(reason)",
                    ]
                )
                self.run(self.core.refuseConnect(id, reason: reason))
            case .failure(let error):
                self.logger.error("authentication could not run: \(error)")
                self.run(self.core.refuseConnect(id, reason: .serverUnavailable))
            }
        }
    }

    private func admit(_ id: ConnectionID, _ packet: ConnectPacket, handle: ConnectionHandle) {
        let actions = core.connect(id, packet, listener: handle.listener, now: now)
        if core.isConnected(id) {
            logger.info(
                "client connected",
                metadata: [
                    "client": "\(core.clientID(of: id) ?? packet.clientIdentifier)", "remote": "\(handle.remoteAddress)",
                    "protocol": "\(packet.protocolVersion)", "clean": "\(packet.cleanStart)",
                    "keepalive": "\(packet.keepAlive)",
                ]
            )
        }
        run(actions)
    }

    func receive(_ id: ConnectionID, _ packets: [Packet]) {
        loop.preconditionInEventLoop()
        if awaitingAuthentication[id] != nil {
            awaitingAuthentication[id]! += packets
            return
        }
        var actions: [BrokerAction] = []
        for packet in packets { actions += core.receive(packet, from: id, now: now) }
        run(actions)
    }

    func closed(_ id: ConnectionID) {
        loop.preconditionInEventLoop()
        guard connections.removeValue(forKey: id) != nil else { return }
        awaitingAuthentication[id] = nil
        if let clientID = core.clientID(of: id) {
            logger.info("client disconnected", metadata: ["client": "\(clientID)"])
        }
        run(core.closed(id, now: now))
    }

    func tick() {
        run(core.tick(now: now))
        savePersistentState()
    }

    // MARK: $SYS

    /// Publishes Mosquitto's `$SYS/broker/...` topics (retained), as Mosquitto does every `sys_interval`.
    func publishSystemTopics(version: String, bridges: [(name: String, connected: Bool)]) {
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
            ("publish/messages/dropped", "\(stats.dropped.values.reduce(0, +) + traffic.slowReaderDropped)"),
            ("retained messages/count", "\(core.retainedCount)"),
            ("subscriptions/count", "\(core.subscriptionCount)"),
        ]
        for bridge in bridges {
            values.append(("connection/\(bridge.name)/state", bridge.connected ? "1" : "0"))
        }
        var actions: [BrokerAction] = []
        for (name, value) in values {
            let message = Message(topic: "$SYS/broker/\(name)", payload: ByteBuffer(string: value), qos: .atMostOnce, retain: true)
            actions += core.publish(message, now: now)
        }
        run(actions)
    }

    // MARK: Persistence (`persistence true`)

    private var persistence: Store?
    /// Keys saved so far, so a session that was never saved costs no delete.
    private var savedSessions: Set<String> = []
    private var savedRetained: Set<String> = []
    private static let sessionsTable = "sessions"
    private static let retainedTable = "retained"

    /// Wall-clock minus broker time, in milliseconds: how deadlines are stored.
    private var wallClockOffset: Int64 { Int64(Store.wallClockMilliseconds()) - Int64(now) }

    /// Loads retained messages and persistent sessions, then saves changes from now on.
    func enablePersistence(_ store: Store) throws {
        loop.preconditionInEventLoop()
        let sessions = try store.scan(table: Self.sessionsTable)
        let retained = try store.scan(table: Self.retainedTable)
        savedSessions = Set(sessions.map { String(decoding: $0.key, as: UTF8.self) })
        savedRetained = Set(retained.map { String(decoding: $0.key, as: UTF8.self) })
        let problems = core.restore(
            sessions: sessions.map(\.value),
            retained: retained.map(\.value),
            wallClockOffset: wallClockOffset,
            now: now
        )
        for problem in problems { logger.error("skipped a damaged persisted record: \(problem)") }
        logger.info("restored \(sessions.count) session(s) and \(retained.count) retained message(s)")
        persistence = store
    }

    /// Writes what changed since the last save; the store's writer commits it in one group.
    func savePersistentState() {
        guard let store = persistence else { return }
        let changes = core.takeChanges(wallClockOffset: wallClockOffset)
        let logger = self.logger
        let report: @Sendable (Result<Void, StoreError>) -> Void = { result in
            if case .failure(let error) = result { logger.error("saving broker state failed: \(error)") }
        }
        for (clientID, record) in changes.sessions {
            save(store, Self.sessionsTable, clientID, record, saved: &savedSessions, report)
        }
        for (topic, record) in changes.retained {
            save(store, Self.retainedTable, topic, record, saved: &savedRetained, report)
        }
    }

    private func save(
        _ store: Store,
        _ table: String,
        _ key: String,
        _ record: [UInt8]?,
        saved: inout Set<String>,
        _ report: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        if let record {
            saved.insert(key)
            store.put(table: table, key: Array(key.utf8), value: record) { report($0) }
        } else if saved.remove(key) != nil {
            store.delete(table: table, key: Array(key.utf8)) { report($0.map { _ in () }) }
        }
    }

    func persisted(token: UInt64, accepted: Bool) {
        loop.preconditionInEventLoop()
        run(core.persisted(token: token, accepted: accepted, now: now))
    }

    /// Publishes a message from inside the gateway (bridge `in` rules, `$SYS`, LoRaWAN).
    func publish(_ message: Message) {
        loop.preconditionInEventLoop()
        run(core.publish(message, now: now))
    }

    func setDurableFilters(_ filters: [String]) {
        core.settings.durableFilters = filters
    }

    func setAccessPolicy(_ policy: (any AccessPolicy)?) {
        core.accessPolicy = policy
    }

    var stats: BrokerStats { core.stats }
    var connectedClients: Int { core.connectedClientCount }
    var retainedCount: Int { core.retainedCount }
    var sessionCount: Int { core.sessionCount }
    var subscriptionCount: Int { core.subscriptionCount }

    /// Tells every client the server is going away (MQTT 5: 0x8B) and closes them.
    func shutdown() {
        loop.preconditionInEventLoop()
        savePersistentState()
        for (_, handle) in connections {
            handle.deliver([], close: .after(DisconnectPacket(reasonCode: .serverShuttingDown)))
        }
    }

    // MARK: Actions

    private func run(_ actions: [BrokerAction]) {
        guard !actions.isEmpty else { return }
        // Packets for one connection go out in one hop and one flush, in order.
        var outbox: [ConnectionID: [Packet]] = [:]
        for action in actions {
            switch action {
            case .send(let id, let packet):
                outbox[id, default: []].append(packet)
            case .close(let id, let disconnect):
                connections[id]?.deliver(outbox.removeValue(forKey: id) ?? [], close: disconnect.map { .after($0) } ?? .silently)
            case .persist(let token, let message):
                if let durableSink {
                    durableSink(token, message)
                } else {
                    run(core.persisted(token: token, accepted: true, now: now))
                }
            }
        }
        for (id, packets) in outbox { connections[id]?.deliver(packets, close: nil) }
    }
}
