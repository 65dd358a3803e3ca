import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import SluiceBroker

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

    func connect(_ id: ConnectionID, _ packet: ConnectPacket, handle: ConnectionHandle) {
        loop.preconditionInEventLoop()
        connections[id] = handle
        let actions = core.connect(id, packet, now: now)
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
        var actions: [BrokerAction] = []
        for packet in packets { actions += core.receive(packet, from: id, now: now) }
        run(actions)
    }

    func closed(_ id: ConnectionID) {
        loop.preconditionInEventLoop()
        guard connections.removeValue(forKey: id) != nil else { return }
        if let clientID = core.clientID(of: id) {
            logger.info("client disconnected", metadata: ["client": "\(clientID)"])
        }
        run(core.closed(id, now: now))
    }

    func tick() {
        run(core.tick(now: now))
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
    var subscriptionCount: Int { core.subscriptionCount }

    /// Tells every client the server is going away (MQTT 5: 0x8B) and closes them.
    func shutdown() {
        loop.preconditionInEventLoop()
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
