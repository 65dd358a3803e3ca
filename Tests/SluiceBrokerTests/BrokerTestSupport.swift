import MQTTCore
import SluiceBridge
import Testing

@testable import SluiceBroker

/// Actions compared in tests only (the library keeps them non-Equatable on purpose).
enum Seen: Equatable {
    case send(ConnectionID, Packet)
    case close(ConnectionID, DisconnectPacket?)
    /// A takeover's close, after the old connection's pending input was read.
    case takeOver(ConnectionID, DisconnectPacket?)
    case persist(UInt64, String)
    case authenticate(ConnectionID, identityVerified: Bool = false)

    init(_ action: BrokerAction) {
        switch action {
        case .send(let id, let packet): self = .send(id, packet)
        case .close(let id, let disconnect): self = .close(id, disconnect)
        case .takeOver(let id, let disconnect): self = .takeOver(id, disconnect)
        case .persist(let token, let message, _): self = .persist(token, message.topic)
        case .authenticate(let id, _, let identityVerified):
            self = .authenticate(id, identityVerified: identityVerified)
        }
    }
}

/// A broker plus a hand-driven clock; each call returns what the broker did, as `Seen` values.
final class Harness {
    var broker: Broker
    var now: BrokerTime = 1_000

    /// `durable`: filters of one bridge's `out` rules (QoS 1, no remapping), routed as internal durable subscribers.
    init(durable: [String] = [], _ configure: (inout BrokerSettings) -> Void = { _ in }) {
        var settings = BrokerSettings()
        configure(&settings)
        broker = Broker(settings: settings)
        if !durable.isEmpty {
            let rules = BridgeRules(durable.map { try! TopicRule(pattern: $0, direction: .out, qos: .atLeastOnce) })
            let queue = DurableQueueClass(queue: "q", ttl: nil)
            broker.setBridgeOutbound([BridgeOutbound(rules: rules, classes: [], defaultQueue: queue)])
        }
    }

    @discardableResult
    func connect(
        _ id: UInt64,
        _ clientID: String,
        version: ProtocolVersion = .v5,
        clean: Bool = true,
        keepAlive: UInt16 = 60,
        will: Will? = nil,
        properties: Properties = .none
    ) -> [Seen] {
        let packet = ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientID,
            cleanStart: clean,
            keepAlive: keepAlive,
            will: will,
            properties: properties
        )
        return completingTakeover(broker.connect(ConnectionID(id), packet, now: now).map(Seen.init))
    }

    /// Plays the host's part in a takeover: the old connection had nothing more to read and closed,
    /// and the new one is admitted. Tests of the waiting itself call `broker.connect` directly.
    func completingTakeover(_ seen: [Seen]) -> [Seen] {
        for case .takeOver(let old, _) in seen {
            return seen + completingTakeover(broker.closed(old, now: now).map(Seen.init))
        }
        return seen
    }

    @discardableResult
    func receive(_ packet: Packet, from id: UInt64) -> [Seen] {
        broker.receive(packet, from: ConnectionID(id), now: now).map(Seen.init)
    }

    @discardableResult
    func closed(_ id: UInt64) -> [Seen] {
        broker.closed(ConnectionID(id), now: now).map(Seen.init)
    }

    @discardableResult
    func advance(seconds: Double) -> [Seen] {
        now += BrokerTime(seconds * 1000)
        return broker.tick(now: now).map(Seen.init)
    }

    @discardableResult
    func subscribe(
        _ id: UInt64,
        _ filter: String,
        qos: QoS = .atLeastOnce,
        options: (inout SubscriptionOptions) -> Void = { _ in },
        identifier: UInt32? = nil
    ) -> [Seen] {
        var subscriptionOptions = SubscriptionOptions(qos: qos)
        options(&subscriptionOptions)
        var properties = Properties()
        if let identifier { properties.subscriptionIdentifiers = [identifier] }
        return receive(
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: [TopicSubscription(filter: filter, options: subscriptionOptions)],
                    properties: properties
                )
            ),
            from: id
        )
    }

    @discardableResult
    func publish(
        _ id: UInt64,
        _ topic: String,
        _ payload: String,
        qos: QoS = .atMostOnce,
        packetID: UInt16? = nil,
        retain: Bool = false,
        properties: Properties = .none
    ) -> [Seen] {
        receive(
            .publish(
                PublishPacket(
                    topic: topic,
                    payload: ByteBuffer(string: payload),
                    qos: qos,
                    retain: retain,
                    packetIdentifier: qos == .atMostOnce ? nil : (packetID ?? 1),
                    properties: properties
                )
            ),
            from: id
        )
    }
}

extension Array where Element == Seen {
    /// The PUBLISH packets sent to one connection.
    func publishes(to id: UInt64) -> [PublishPacket] {
        compactMap {
            if case .send(let target, .publish(let publish)) = $0, target == ConnectionID(id) { return publish }
            return nil
        }
    }

    func packets(to id: UInt64) -> [Packet] {
        compactMap {
            if case .send(let target, let packet) = $0, target == ConnectionID(id) { return packet }
            return nil
        }
    }

    func closes(_ id: UInt64) -> DisconnectPacket?? {
        for seen in self {
            if case .close(let target, let disconnect) = seen, target == ConnectionID(id) { return .some(disconnect) }
            if case .takeOver(let target, let disconnect) = seen, target == ConnectionID(id) {
                return .some(disconnect)
            }
        }
        return nil
    }
}

extension PublishPacket {
    var text: String { String(buffer: payload) }
}
