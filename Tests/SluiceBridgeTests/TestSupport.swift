import MQTTCore
import SluiceBridge

/// A hand-driven instant: nanoseconds since an arbitrary origin.
struct TestInstant: InstantProtocol {
    var nanoseconds: Int64
    init(_ nanoseconds: Int64 = 0) { self.nanoseconds = nanoseconds }
    func advanced(by duration: Duration) -> TestInstant {
        let (s, a) = duration.components
        return TestInstant(nanoseconds + s * 1_000_000_000 + a / 1_000_000_000)
    }
    func duration(to other: TestInstant) -> Duration { .nanoseconds(other.nanoseconds - nanoseconds) }
    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }
}

/// SplitMix64: a seeded generator, so "random" delays are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == BridgeAction {
    /// The actions without `.log`, which traces do not pin down word for word.
    var withoutLogs: [BridgeAction] {
        filter { if case .log = $0 { false } else { true } }
    }
    var logs: [String] {
        compactMap { if case .log(_, let message) = $0 { message } else { nil } }
    }
    var scheduledDelay: Duration? {
        for action in self { if case .scheduleReconnect(let d) = action { return d } }
        return nil
    }
}

func message(_ seq: UInt64, topic: String = "r/t", qos: QoS = .atLeastOnce) -> PublishPacket {
    PublishPacket(topic: topic, payload: .init(string: "m\(seq)"), qos: qos)
}

func item(_ seq: UInt64, topic: String = "r/t", qos: QoS = .atLeastOnce) -> QueuedItem {
    QueuedItem(seq: seq, message: message(seq, topic: topic, qos: qos))
}

func items(_ seqs: ClosedRange<UInt64>) -> [QueuedItem] { seqs.map { item($0) } }

/// The PUBLISH the link must send for queue item `seq` with packet id `id`.
func sent(_ seq: UInt64, id: UInt16, dup: Bool = false, topic: String = "r/t") -> BridgeAction {
    var p = message(seq, topic: topic)
    p.packetIdentifier = id
    p.dup = dup
    return .send(.publish(p))
}

func puback(_ id: UInt16, _ code: ReasonCode = .success) -> Packet {
    .pubAck(PubAckPacket(packetIdentifier: id, reasonCode: code))
}

func outRules() -> BridgeRules {
    BridgeRules([
        try! TopicRule(
            pattern: "#",
            direction: .out,
            qos: .atLeastOnce,
            localPrefix: "sensors/",
            remotePrefix: "site1/"
        )
    ])
}

func config(
    addresses: Int = 1,
    roundRobin: Bool = false,
    version: ProtocolVersion = .v3_1_1,
    cleanSession: Bool = true,
    keepAlive: UInt16 = 0,
    notificationTopic: String? = nil,
    tryPrivate: Bool = false,
    maxInflight: Int = 3,
    rules: BridgeRules = outRules(),
    progressTimeout: Duration? = nil,
    attemptUnsubscribe: Bool = false
) -> BridgeLinkConfiguration {
    // `attemptUnsubscribe` is off unless a test asks: it adds an UNSUBSCRIBE (and a packet id) to every connect.
    var configuration = BridgeLinkConfiguration(
        name: "cloud",
        addressCount: addresses,
        roundRobin: roundRobin,
        protocolVersion: version,
        clientIdentifier: "gw-1",
        cleanSession: cleanSession,
        keepAliveSeconds: keepAlive,
        username: "gw",
        password: Array("secret".utf8),
        notificationTopic: notificationTopic,
        tryPrivate: tryPrivate,
        maxInflight: maxInflight,
        rules: rules,
        restartBase: .seconds(1),
        restartCap: .seconds(30),
        connectTimeout: .seconds(10),
        progressTimeout: progressTimeout,
        stablePeriod: .seconds(60)
    )
    configuration.attemptUnsubscribe = attemptUnsubscribe
    return configuration
}

/// A link plus a hand-driven clock.
struct Harness {
    var link: BridgeLink<TestInstant>
    var now = TestInstant(0)

    init(_ configuration: BridgeLinkConfiguration, seed: UInt64 = 42) {
        link = BridgeLink(configuration: configuration, random: SeededGenerator(seed: seed))
        _ = link.tick(now: now)
    }

    mutating func advance(_ duration: Duration) -> [BridgeAction] {
        now = now.advanced(by: duration)
        return link.tick(now: now)
    }

    /// start → connected → CONNACK; returns the CONNACK's actions.
    mutating func connect(_ connAck: ConnAckPacket = ConnAckPacket()) -> [BridgeAction] {
        _ = link.start()
        _ = link.connected()
        return link.received(.connAck(connAck))
    }
}
