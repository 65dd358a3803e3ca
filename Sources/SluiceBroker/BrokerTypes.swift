import MQTTCore

/// Monotonic broker time in milliseconds. The broker never reads a clock: every event carries `now`.
public typealias BrokerTime = UInt64

/// Identifies one network connection (one socket) to the broker core.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "#\(rawValue)" }

    /// The broker and its host look connections up three or four times per message, and SipHash cost about
    /// 90 instructions a lookup (250 through a `Hasher`). Identifiers are the broker's own sequence, never
    /// chosen by a peer, so there is no flooding to resist: SplitMix64's finaliser over the seeded value,
    /// which carries every input bit to every output bit, spreads them as well for a fifth of that.
    public func _rawHashValue(seed: Int) -> Int {
        var mixed = rawValue &+ UInt64(truncatingIfNeeded: seed)
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int(truncatingIfNeeded: mixed ^ (mixed >> 31))
    }
}

/// Broker limits and features, with Mosquitto's defaults.
public struct BrokerSettings: Sendable {
    /// Keep alives above this are lowered (MQTT 5: Server Keep Alive in CONNACK).
    public var maxKeepalive: UInt16 = 65535
    /// Outgoing QoS 1/2 window per client, and the Receive Maximum we announce (0 = 65535).
    public var maxInflightMessages: Int = 20
    /// `max_inflight_bytes`: payload bytes of QoS 1/2 messages in flight per client (0 = no bound). Beyond it
    /// messages wait in the client's queue, within `maxQueuedMessages`/`maxQueuedBytes`.
    public var maxInflightBytes: Int = 0
    /// Messages queued per client beyond the in-flight window (0 = unlimited).
    public var maxQueuedMessages: Int = 1000
    /// Payload bytes queued per client beyond the in-flight window (0 = unlimited).
    public var maxQueuedBytes: Int = 0
    /// Connected clients at most (nil = unlimited); further CONNECTs get 0x97 Quota exceeded.
    public var maxConnections: Int? = nil
    /// `mount_point` by listener index: prepended to its clients' PUBLISH topics, SUBSCRIBE filters and
    /// wills (ACL checks see the result), removed from what they receive.
    public var listenerMountPoints: [Int: String] = [:]
    /// Listeners (by index) with `use_username_as_clientid true`: the username replaces the client id,
    /// and a CONNECT without one is refused as not authorised.
    public var listenersUsingUsernameAsClientID: Set<Int> = []
    /// Per-listener limits (Mosquitto's `max_connections` inside a `listener` section), by listener index.
    public var listenerConnectionLimits: [Int: Int] = [:]
    /// Largest packet accepted from clients (`max_packet_size`); announced as Maximum Packet Size (MQTT 5).
    public var maximumPacketSize: Int = 268_435_460
    /// Largest PUBLISH or will payload (`message_size_limit`); nil = no limit. A larger PUBLISH is dropped with
    /// its QoS flow completed, a larger will refuses the CONNECT.
    public var messageSizeLimit: Int? = nil
    public var retainAvailable = true
    /// Topic aliases a client may use towards us.
    public var topicAliasMaximum: UInt16 = 10
    /// Expiry for persistent 3.1/3.1.1 sessions, in seconds (nil = never, as in Mosquitto).
    public var persistentClientExpiration: UInt32? = nil
    /// Topic names and filters with more levels are refused (`max_topic_levels`). Matching is
    /// iterative, so this bounds work and memory, not stack. Mosquitto 2.0 refuses more than 200
    /// "/" separators (CVE-2019-11779), i.e. more than 201 levels; the default matches it.
    public var maxTopicLevels: Int = BrokerSettings.defaultMaxTopicLevels
    public static let defaultMaxTopicLevels = 201
    /// Whether QoS 0 messages are queued for offline persistent sessions (Mosquitto: false).
    public var queueQoS0Messages = false
    /// `allow_zero_length_clientid`: a CONNECT without a client id gets one assigned (where the
    /// protocol allows it); false refuses it with 0x85 / return code 2, as Mosquitto does.
    public var allowZeroLengthClientID = true
    /// `max_qos`: the highest QoS clients may publish at (higher: DISCONNECT 0x9B / closed) and are
    /// granted on SUBSCRIBE; announced as Maximum QoS to MQTT 5 clients. Default 2.
    public var maxQoS: UInt8 = 2
    /// `auto_id_prefix`: prefix of assigned client ids (Mosquitto's default `auto-`).
    public var autoIDPrefix = "auto-"
    /// `upgrade_outgoing_qos` (Mosquitto, non-standard): deliver at the subscription's QoS even when the
    /// message was published lower. Default false: the lower of the two [MQTT-3.8.4-8].
    public var upgradeOutgoingQoS = false
    /// `check_retain_source`: a retained message goes to a new subscriber only while its publisher may still
    /// write to its topic; messages without a known publisher are not checked. Default false: Debian's
    /// Mosquitto 2.0.11 does not check without the key (its man page says true).
    public var checkRetainSource = false

    public init() {}

    /// The QoS a subscriber receives a message at.
    func deliveredQoS(_ published: QoS, subscription: QoS) -> QoS {
        upgradeOutgoingQoS ? subscription : min(published, subscription)
    }

    var receiveMaximum: Int { maxInflightMessages == 0 ? 65535 : min(maxInflightMessages, 65535) }
}

/// An application message as the broker routes it.
public struct Message: Sendable, Hashable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// Properties passed through to subscribers (never topic alias or subscription identifiers).
    public var properties: Properties
    /// When the message expires (from Message Expiry Interval), in broker time.
    public var expiresAt: BrokerTime?
    /// The publishing client, for no-local subscriptions; nil for broker-internal messages.
    public var origin: String?
    /// Who published it, for `check_retain_source`; nil when unknown (broker-internal messages, retained
    /// records saved before it was kept), and then not checked.
    public var publisher: Publisher?

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: QoS,
        retain: Bool = false,
        properties: Properties = .none,
        expiresAt: BrokerTime? = nil,
        origin: String? = nil,
        publisher: Publisher? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expiresAt = expiresAt
        self.origin = origin
        self.publisher = publisher
    }
}

/// A message's publishing client as the ACL knows it.
public struct Publisher: Sendable, Hashable {
    public var clientID: String
    /// nil: an anonymous client.
    public var username: String?

    public init(clientID: String, username: String?) {
        self.clientID = clientID
        self.username = username
    }
}

/// Why a message was not delivered somewhere; counted in `BrokerStats`.
public enum DropReason: String, Sendable, CaseIterable {
    case queueFull = "queue_full"
    case expired = "expired"
    case tooLargeForClient = "too_large_for_client"
    case notAuthorized = "not_authorized"
    case topicTooDeep = "topic_too_deep"
    /// A PUBLISH payload above `message_size_limit`.
    case payloadTooLarge = "message_size_limit"
}

/// Counters for `$SYS` and metrics.
public struct BrokerStats: Sendable, Equatable {
    public var messagesReceived = 0
    public var messagesSent = 0
    public var publishReceived = 0
    public var publishSent = 0
    /// PUBLISH packets by QoS (index 0, 1, 2).
    public var publishReceivedByQoS = [0, 0, 0]
    public var publishSentByQoS = [0, 0, 0]
    public var dropped: [DropReason: Int] = [:]
    /// QoS 1/2 publishes not acknowledged with success because storage policy refused them (a
    /// queue bound under reject_new, out of space) or the store failed: the publisher still has them.
    /// Each bridge queue counts its own refusals (`sluice queue stats`); these count publishers.
    public var publishRefused = 0
    public var publishFailed = 0
    public var clientsMaximum = 0
    public var connectionsTotal = 0
    /// Sessions ended because their expiry interval passed.
    public var clientsExpired = 0
    /// PUBLISH payload bytes received from clients and sent to them.
    public var publishBytesReceived = 0
    public var publishBytesSent = 0
    /// QoS 1/2 messages whose acknowledgement waited for a subscriber they went to to drain its backlog
    /// (`AckHolds`); not those that only waited in line behind another.
    public var acknowledgementsHeld = 0

    mutating func drop(_ reason: DropReason, count: Int = 1) { dropped[reason, default: 0] += count }
}

/// Decides what authenticated clients may do (the ACL). `username` is nil for anonymous clients.
public protocol AccessPolicy: Sendable {
    func mayPublish(clientID: String, username: String?, topic: String) -> Bool
    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool
    func mayReceive(clientID: String, username: String?, topic: String) -> Bool
}

/// What the broker core asks its owner to do. Every event returns a list of these.
public enum BrokerAction: Sendable {
    /// Write a packet to a connection.
    case send(ConnectionID, Packet)
    /// Close a connection, sending a DISCONNECT first when one is given (MQTT 5 only).
    case close(ConnectionID, DisconnectPacket?)
    /// Close a connection whose session a new connection takes over, as `close`, but only after reading
    /// what its client had already sent (a DISCONNECT there cancels the will), then report `closed`.
    case takeOver(ConnectionID, DisconnectPacket?)
    /// Append the message to the durable queues `appends` name (one per bridge, topic remapped), then answer
    /// once with `Broker.persisted(token:outcome:now:)`. The publisher's PUBACK/PUBREC waits for that answer.
    case persist(token: UInt64, message: Message, appends: [DurableAppend])
    /// Check the credentials of this CONNECT, then answer with `Broker.authenticated`. `identityVerified`:
    /// a verified TLS client certificate gave the username (`use_identity_as_username`), no password to check.
    case authenticate(ConnectionID, ConnectPacket, identityVerified: Bool)
}
