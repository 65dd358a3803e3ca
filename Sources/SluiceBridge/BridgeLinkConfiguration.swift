import MQTTCore

/// What one bridge connection needs to know; built from a `connection` section of gateway.conf.
public struct BridgeLinkConfiguration: Sendable, Hashable {
    /// The connection name (for logs).
    public var name: String
    /// `start_type`: when the link connects (Mosquitto's meanings).
    public var startType: BridgeStartType = .automatic
    /// How many `address` entries there are (at least 1). The link names addresses by index.
    public var addressCount: Int
    /// Each address as the log shows it (`127.0.0.1:1884`); without one, logs say `address N`.
    public var addressLabels: [String] = []
    /// Mosquitto's `round_robin`: false = the first address is the primary and is tried again after
    /// an established connection elsewhere drops; true = always move on to the next address.
    public var roundRobin: Bool
    /// `bridge_protocol_version`: `.v3_1_1` or `.v5` (`.v3_1` is passed through as is).
    public var protocolVersion: ProtocolVersion
    public var clientIdentifier: String
    /// `cleansession`.
    public var cleanSession: Bool
    /// MQTT 5 session expiry sent in CONNECT. nil: 0xFFFFFFFF when `cleanSession` is false, absent otherwise.
    public var sessionExpiryInterval: UInt32?
    /// `keepalive_interval` in seconds; 0 disables keep-alive.
    public var keepAliveSeconds: UInt16
    public var username: String?
    public var password: [UInt8]?
    /// The remote notification topic (`notification_topic`), or nil when `notifications false`.
    /// When set: a retained QoS 1 will "0" in CONNECT and a retained "1" after CONNACK.
    public var notificationTopic: String?
    /// `try_private`: for MQTT 3.1.1, ask for the protocol level with the bridge bit (0x84).
    public var tryPrivate: Bool
    /// The in-flight window (Sluice's own option); the remote's Receive Maximum caps it.
    public var maxInflight: Int
    public var rules: BridgeRules
    /// `bridge_max_packet_size`: larger queued messages are dropped (and counted as rejected), not sent.
    /// The remote's MQTT 5 Maximum Packet Size applies as well.
    public var maxPacketSize: UInt32?
    /// `restart_timeout BASE CAP`.
    public var restartBase: Duration
    public var restartCap: Duration
    /// Give up on a TCP/TLS connect or a CONNACK after this long.
    public var connectTimeout: Duration
    /// Close and reconnect when messages are in flight and no PUBACK came for this long (nil: off).
    public var progressTimeout: Duration?
    /// A connection up this long counts as good: the backoff is reset (a PUBACK resets it sooner).
    public var stablePeriod: Duration
    /// `bridge_max_attempts`: connection losses with a message at the head of the window (or
    /// transient refusals with no progress in between) before it moves to the dead letters.
    public var maxAttempts: Int
    /// `bridge_max_rate`: PUBLISH packets per second (nil: unpaced).
    public var maxRate: Double?
    /// `bridge_max_rate`'s optional second value: bytes (topic + payload) per second.
    public var maxByteRate: Double?
    /// The first hold after a transient PUBACK refusal; doubles while nothing gets through, up to `restartCap`.
    public var refusalHold: Duration
    /// `bridge_outgoing_retain`: false clears the retain flag of every PUBLISH to the remote (queued
    /// messages and the notification "1"), for remotes that refuse retained messages but cannot say so.
    public var outgoingRetain = true
    /// `bridge_attempt_unsubscribe`: at each connect, UNSUBSCRIBE the remote topics of `out` rules, so a
    /// persistent session at the remote drops a subscription left from when the rule was `in`.
    public var attemptUnsubscribe = true

    public init(
        name: String,
        addressCount: Int = 1,
        roundRobin: Bool = false,
        protocolVersion: ProtocolVersion = .v3_1_1,
        clientIdentifier: String,
        cleanSession: Bool = true,
        sessionExpiryInterval: UInt32? = nil,
        keepAliveSeconds: UInt16 = 60,
        username: String? = nil,
        password: [UInt8]? = nil,
        notificationTopic: String? = nil,
        tryPrivate: Bool = true,
        maxInflight: Int = 1000,
        rules: BridgeRules,
        maxPacketSize: UInt32? = nil,
        restartBase: Duration = .seconds(5),
        restartCap: Duration = .seconds(30),
        connectTimeout: Duration = .seconds(30),
        progressTimeout: Duration? = .seconds(60),
        stablePeriod: Duration = .seconds(30),
        maxAttempts: Int = 5,
        maxRate: Double? = nil,
        maxByteRate: Double? = nil,
        refusalHold: Duration = .seconds(1)
    ) {
        self.name = name
        self.addressCount = max(1, addressCount)
        self.roundRobin = roundRobin
        self.protocolVersion = protocolVersion
        self.clientIdentifier = clientIdentifier
        self.cleanSession = cleanSession
        self.sessionExpiryInterval = sessionExpiryInterval
        self.keepAliveSeconds = keepAliveSeconds
        self.username = username
        self.password = password
        self.notificationTopic = notificationTopic
        self.tryPrivate = tryPrivate
        self.maxInflight = maxInflight
        self.rules = rules
        self.maxPacketSize = maxPacketSize
        self.restartBase = restartBase
        self.restartCap = restartCap
        self.connectTimeout = connectTimeout
        self.progressTimeout = progressTimeout
        self.stablePeriod = stablePeriod
        self.maxAttempts = max(1, maxAttempts)
        self.maxRate = maxRate
        self.maxByteRate = maxByteRate
        self.refusalHold = refusalHold
    }
}

/// Counters for metrics.
public struct BridgeLinkStatistics: Sendable, Hashable {
    /// PUBLISH packets sent to the remote (including resends).
    public var published: UInt64 = 0
    /// Queue messages acknowledged with a success PUBACK.
    public var acknowledged: UInt64 = 0
    /// PUBACKs refusing a queue message (reason >= 0x80), transient and permanent.
    public var rejected: UInt64 = 0
    /// The same, by reason code.
    public var rejectedByReason: [UInt8: UInt64] = [:]
    /// Messages handed to `.deadLetter` (permanent refusal, too large, poison).
    public var deadLettered: UInt64 = 0
    /// Failed connection attempts by cause: "timeout", "reset", "refused", "tls", "connack_0x87"...
    public var connectFailuresByReason: [String: UInt64] = [:]
    /// The last failure (connect or connection), nil after a successful CONNACK.
    public var lastError: String?
    /// QoS 0 queue messages written and removed.
    public var sentAtMostOnce: UInt64 = 0
    /// PUBLISH packets received from the remote on `in` rules.
    public var received: UInt64 = 0
    /// Successful CONNACKs.
    public var connections: UInt64 = 0
    /// Connection attempts that failed or were refused.
    public var failedAttempts: UInt64 = 0
}

/// Mosquitto's `start_type`.
public enum BridgeStartType: Sendable, Hashable {
    /// Connect at start and after every loss.
    case automatic
    /// Connect once `threshold` messages wait in the queue; disconnect after `idleTimeout` with
    /// nothing sent or received and nothing left to send. A lost connection is retried as usual.
    case lazy(threshold: Int, idleTimeout: Duration)
    /// Connect at start; once that connection (or attempt) ends, never again.
    case once
}
