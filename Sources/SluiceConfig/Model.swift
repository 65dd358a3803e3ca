// The validated configuration: plain Sendable values with documented defaults.
// Nothing here reads files; `GatewayConfig.parse`/`load` build these from gateway.conf.

/// A host and a port, as written in `address`, `metrics_listener` and `lorawan_udp_listener`.
public struct HostPort: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Host name or IP address, without IPv6 brackets.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with IPv6 addresses in brackets (`[::1]:1883`).
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// TLS settings of a listener (Mosquitto's `cafile`, `capath`, `certfile`, `keyfile`, …).
/// Present on a `Listener` only when its section names a certificate.
public struct TLSSettings: Sendable, Equatable {
    /// `cafile`: CA certificates for client certificates. Default: none.
    public var caFile: String?
    /// `capath`: directory of CA certificates. Default: none.
    public var caPath: String?
    /// `certfile`: the server certificate (PEM). Required for TLS.
    public var certFile: String
    /// `keyfile`: the server key (PEM). Required for TLS.
    public var keyFile: String
    /// `crlfile`: PEM certificate revocation list(s); a client certificate it revokes is refused. Default: none.
    public var crlFile: String?
    /// `require_certificate`: clients must present a certificate signed by `cafile`/`capath`. Default false.
    public var requireCertificate: Bool = false
    /// `use_identity_as_username`: the certificate's CN becomes the username. Default false.
    public var useIdentityAsUsername: Bool = false
    /// `use_subject_as_username`: the certificate's whole subject in RFC 2253 form (as `openssl x509
    /// -nameopt RFC2253` prints it, e.g. `CN=device1,O=Acme`) becomes the username. Default false.
    public var useSubjectAsUsername: Bool = false
    /// `tls_version`: the lowest TLS version accepted: `tlsv1.3`, `tlsv1.2` or `tlsv1.1`. Default `tlsv1.2`.
    public var tlsVersion: String = "tlsv1.2"
    /// `ciphers`: OpenSSL cipher list for TLS ≤ 1.2. Default: the library's.
    public var ciphers: String?

    public init(certFile: String, keyFile: String) {
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// One `listener PORT [ADDRESS]` section.
public struct Listener: Sendable, Equatable {
    public enum ProtocolKind: String, Sendable, Equatable {
        case mqtt
        case websockets
    }

    /// TCP port; 0 asks the operating system for a free port (useful in tests).
    public var port: Int
    /// Address to bind; nil binds all interfaces (as Mosquitto does for `listener 1883`).
    public var address: String?
    /// `protocol mqtt|websockets`. Default mqtt.
    public var protocolKind: ProtocolKind = .mqtt
    /// TLS settings, nil for plain TCP.
    public var tls: TLSSettings?
    /// `max_connections` written in this listener's section; nil means the global value applies.
    public var maxConnections: Int?
    /// `allow_anonymous` in this listener's section, with `per_listener_settings true`; nil: the global value.
    public var allowAnonymous: Bool?
    /// `password_file` in this listener's section, with `per_listener_settings true`; nil: the global file.
    public var passwordFile: String?
    /// `socket_domain ipv4|ipv6`: without an address, bind only that family. Default nil: both.
    public var socketDomain: SocketDomain?
    /// `bind_interface NAME`: accept connections arriving on this network interface only
    /// (SO_BINDTODEVICE, as Mosquitto). Default nil: any.
    public var bindInterface: String?
    /// `psk_hint`: TLS with pre-shared keys from `psk_file` on this listener (TLS 1.2 PSK suites), instead
    /// of certificates. Default none.
    public var pskHint: String?
    /// `mount_point PREFIX`: this listener's clients publish, subscribe and leave wills under PREFIX
    /// (ACL checks see the prefixed topic) and receive topics without it, as in Mosquitto. Default none.
    public var mountPoint: String?
    /// `use_username_as_clientid true`: a client's username replaces the client id it sent, so one
    /// user's connection takes over only that user's session; a client without a username is refused
    /// (not authorised), as in Mosquitto. Default false.
    public var useUsernameAsClientID = false

    public enum SocketDomain: String, Sendable, Equatable {
        case ipv4
        case ipv6
    }

    public init(port: Int, address: String? = nil) {
        self.port = port
        self.address = address
    }

    /// `ADDRESS:PORT` as written, `all interfaces:PORT` without an address (for messages).
    public var name: String {
        guard let address else { return "all interfaces:\(port)" }
        return address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// True when the listener binds only a loopback address (127.x.x.x, ::1, localhost).
    public var isLoopbackOnly: Bool {
        guard let address else { return false }
        let lowered = address.lowercased()
        return lowered == "localhost" || lowered == "::1" || lowered == "[::1]" || lowered.hasPrefix("127.")
    }
}

/// One `topic` line of a bridge, with Mosquitto's meaning:
/// `topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX]`.
///
/// Locally the rule matches `localPrefix + pattern`; remotely `remotePrefix + pattern`. An empty
/// pattern means the prefixes are the full topics.
public struct BridgeTopic: Sendable, Equatable {
    public enum Direction: String, Sendable, Equatable {
        /// Remote → local.
        case `in`
        /// Local → remote (through the durable queue).
        case out
        /// Both ways.
        case both
    }

    /// A topic filter (`+`/`#` allowed), or "" when the prefixes are the full topics.
    public var pattern: String
    /// Default `out`.
    public var direction: Direction = .out
    /// 0…2, default 0.
    public var qos: Int = 0
    /// Default "".
    public var localPrefix: String = ""
    /// Default "".
    public var remotePrefix: String = ""
    /// `priority N` after the five Mosquitto fields: the drain class of `out` messages, 0 (first) to 9.
    /// nil = `BridgeTopic.defaultPriority`.
    public var priority: Int? = nil
    /// `ttl DURATION` after the five Mosquitto fields: `out` messages older than this when they would be
    /// sent are dropped (counted as `expired`). nil = no TTL.
    public var ttl: Duration? = nil

    /// The class of rules without `priority`: the lowest, as Azure IoT Edge routes without one, so giving
    /// any rule a priority moves it ahead of the rest.
    public static let defaultPriority = 9
    public static let priorities = 0...9

    /// `priority`, or the default class.
    public var effectivePriority: Int { priority ?? Self.defaultPriority }

    public init(
        pattern: String,
        direction: Direction = .out,
        qos: Int = 0,
        localPrefix: String = "",
        remotePrefix: String = "",
        priority: Int? = nil,
        ttl: Duration? = nil
    ) {
        self.pattern = pattern
        self.direction = direction
        self.qos = qos
        self.localPrefix = localPrefix
        self.remotePrefix = remotePrefix
        self.priority = priority
        self.ttl = ttl
    }

    /// The filter as seen on the local broker.
    public var localTopic: String { localPrefix + pattern }
    /// The filter as seen on the remote broker.
    public var remoteTopic: String { remotePrefix + pattern }
}

/// `restart_timeout BASE [CAP]`: with a cap, reconnect waits back off from BASE to CAP seconds;
/// with one value the wait is constant.
public struct RestartTimeout: Sendable, Equatable {
    public var base: Int
    public var cap: Int

    public init(base: Int, cap: Int) {
        self.base = base
        self.cap = cap
    }
}

/// One `connection NAME` section: a bridge to a central broker.
public struct BridgeConfig: Sendable, Equatable {
    public enum ProtocolVersion: String, Sendable, Equatable {
        case v31 = "mqttv31"
        case v311 = "mqttv311"
        case v5 = "mqttv50"
    }

    /// What happens when a queue bound is reached (`queue_overflow`).
    public enum QueueOverflow: String, Sendable, Equatable {
        /// Drop the oldest queued message (newest telemetry wins). Default.
        case dropOldest = "drop_oldest"
        /// Refuse the new message (MQTT 5 publishers get PUBACK 0x97 Quota exceeded).
        case rejectNew = "reject_new"
    }

    /// From `connection NAME`: letters, digits, `.`, `_`, `-`.
    public var name: String
    /// `address`/`addresses host[:port] …`, in failover order; default port 1883.
    public var addresses: [HostPort] = []
    /// `topic` lines in order.
    public var topics: [BridgeTopic] = []
    /// `remote_clientid` (alias `clientid`). Default: nil (the bridge derives one from host name and NAME).
    public var remoteClientID: String?
    /// `remote_username`. Default none.
    public var remoteUsername: String?
    /// `remote_password`. Default none.
    public var remotePassword: String?
    /// `local_username`: the ACL user the bridge's local side acts as (in: write, out: read). Default none: unchecked.
    public var localUsername: String?
    /// `bridge_protocol_version mqttv31|mqttv311|mqttv50`. Default mqttv311.
    public var protocolVersion: ProtocolVersion = .v311
    /// `cleansession`. Default false (the central broker keeps the bridge's session).
    public var cleanSession: Bool = false
    /// `keepalive_interval` seconds, 5…65535. Default 60.
    public var keepaliveInterval: Int = 60
    /// `restart_timeout BASE [CAP]`. Default 5 30.
    public var restartTimeout = RestartTimeout(base: 5, cap: 30)
    /// `notifications`: publish the link state (retained 1/0). Default true.
    public var notifications: Bool = true
    /// `notification_topic`. Default nil, meaning `$SYS/broker/connection/NAME/state`.
    public var notificationTopic: String?
    /// `try_private`: announce as a bridge (protocol version | 0x80). Default true.
    public var tryPrivate: Bool = true
    /// `start_type`: automatic (connect at start, reconnect after a loss: the default); lazy (connect once
    /// `threshold` messages wait in the queue, disconnect after `idle_timeout` seconds without traffic);
    /// once (connect at start, never again after the connection ends).
    public var startType: StartType = .automatic
    public enum StartType: String, Sendable, Equatable {
        case automatic, lazy, once
    }
    /// `idle_timeout` seconds (start_type lazy). Default 60, as Mosquitto.
    public var idleTimeout: Int = 60
    /// `threshold` queued messages that start a lazy bridge. Default 10, as Mosquitto.
    public var threshold: Int = 10
    /// `round_robin`: after a failure move on to the next address rather than back to the first. Default false.
    public var roundRobin: Bool = false
    /// `bridge_max_packet_size` bytes, 0 = no limit beyond the protocol's. Default 0.
    public var maxPacketSize: Int = 0
    /// `bridge_cafile`: TLS towards the central broker is used when this or `bridge_capath` is set.
    public var bridgeCAFile: String?
    /// `bridge_capath`.
    public var bridgeCAPath: String?
    /// `bridge_certfile`: client certificate. Needs `bridge_keyfile`.
    public var bridgeCertFile: String?
    /// `bridge_keyfile`: client key. Needs `bridge_certfile`.
    public var bridgeKeyFile: String?
    /// `bridge_insecure`: skip host name verification. Default false.
    public var bridgeInsecure: Bool = false
    /// `bridge_identity` and `bridge_psk` (hex): TLS with a pre-shared key instead of certificates
    /// (TLS 1.2 PSK cipher suites). Both or neither; not with `bridge_cafile`/`bridge_capath`/`bridge_certfile`.
    public var bridgeIdentity: String?
    public var bridgePSK: [UInt8]?
    /// `bridge_alpn`: the ALPN protocol offered in the TLS handshake (e.g. `x-amzn-mqtt-ca` for AWS IoT
    /// on port 443). Needs TLS. Default none.
    public var bridgeALPN: String?
    /// `bridge_tls_version`: lowest TLS version, `tlsv1.3`/`tlsv1.2`/`tlsv1.1`. Default `tlsv1.2`.
    public var bridgeTLSVersion: String = "tlsv1.2"
    /// `bridge_outgoing_retain`: false clears the retain flag on everything sent to the remote. Default true.
    public var outgoingRetain: Bool = true
    /// `bridge_attempt_unsubscribe`: UNSUBSCRIBE `out`-only remote topics at each connect. Default true.
    public var attemptUnsubscribe: Bool = true
    /// `bridge_bind_address`: the local IP address the bridge's socket binds to before connecting. Default none.
    public var bindAddress: String?
    /// `local_clientid`: the client id of the bridge's local side (ACL `%c`). Default `local.<remote_clientid>`.
    public var localClientID: String?
    /// `local_password`, checked with `local_username` against password_file at start; where it was written.
    public var localPassword: String?
    public var localPasswordLine: ConfigLine?
    /// `local_cleansession`, when written (Sluice's queue is durable whatever its value; see the key's note).
    public var localCleanSession: Bool?
    var localCleanSessionLine: ConfigLine?

    // Sluice additions; each may also be written at top level as a default for every bridge.

    /// `queue_max_messages`, 0 = no count bound. Default 1,000,000.
    public var queueMaxMessages: Int = 1_000_000
    /// `queue_max_bytes` (suffixes KB/MB/GB), 0 = no byte bound. Default 512 MiB.
    public var queueMaxBytes: Int = 512 * 1024 * 1024
    /// `queue_max_age` (`7d`, `12h`…, `0` = none). Default nil: no age bound.
    public var queueMaxAge: Duration?
    /// `queue_overflow drop_oldest|reject_new`. Default drop_oldest.
    public var queueOverflow: QueueOverflow = .dropOldest
    /// `bridge_max_inflight`: QoS 1 messages in flight to the central broker, 1…65535. Default 1000:
    /// every message waits for a disk commit on both ends of its trip (append, then removal after
    /// the PUBACK), so the window must cover a few commit latencies to keep the link busy. With the
    /// acknowledged-but-unremoved messages it bounds duplicates after a crash (`ResendBound`: max(window, 50)),
    /// and the remote's Receive Maximum still caps it.
    public var maxInflight: Int = 1000
    /// `bridge_progress_timeout` seconds: a link with messages in flight and no PUBACK for this long is
    /// reconnected. Default 30.
    public var progressTimeout: Int = 30
    /// `bridge_max_attempts`: a message in flight at the head of the window at this many connection
    /// losses (a poison message), or transiently refused this many times in a row with nothing
    /// else getting through, moves to the dead letters. 1…1000, default 5.
    public var maxAttempts: Int = 5
    /// `bridge_max_rate MSGS_PER_S [BYTES_PER_S]`: pace every PUBLISH to the remote. Default nil: unpaced.
    public var maxRate: Double?
    /// `bridge_max_rate`'s optional byte rate (topic + payload bytes per second).
    public var maxByteRate: Double?

    public init(name: String) {
        self.name = name
    }

    /// `notificationTopic`, or Mosquitto's default `$SYS/broker/connection/NAME/state`.
    /// `remote_clientid`, or Mosquitto's default: this host's name, a dot, the connection name.
    public func effectiveRemoteClientID(hostName: String) -> String { remoteClientID ?? "\(hostName).\(name)" }

    /// `local_clientid`, or Mosquitto's default `local.<remote_clientid>`.
    public func effectiveLocalClientID(hostName: String) -> String {
        localClientID ?? "local." + effectiveRemoteClientID(hostName: hostName)
    }

    /// `notification_topic`, or Mosquitto's default `$SYS/broker/connection/<remote_clientid>/state`: one topic
    /// per gateway of a fleet at the central, where the connection name is often the same everywhere.
    public func effectiveNotificationTopic(hostName: String) -> String {
        notificationTopic ?? "$SYS/broker/connection/\(effectiveRemoteClientID(hostName: hostName))/state"
    }

    /// True when the link to the central broker uses TLS (`bridge_cafile` or `bridge_capath` set).
    public var usesTLS: Bool { bridgeCAFile != nil || bridgeCAPath != nil || bridgeIdentity != nil }
}

/// The whole of gateway.conf, validated. Every property documents its key and default.
public struct GatewayConfig: Sendable, Equatable {
    /// The listener used when the file configures none: 127.0.0.1:1883 (Mosquitto 2's secure default).
    public static let defaultListener = Listener(port: 1883, address: "127.0.0.1")

    /// Mosquitto's default `log_type` set.
    public static let defaultLogTypes = ["error", "warning", "notice", "information"]

    /// The configuration used when there is no file: one listener on 127.0.0.1:1883, everything else default.
    public static let `default` = GatewayConfig()

    /// `listener PORT [ADDRESS]` sections. When none are configured: `[127.0.0.1:1883]`.
    public var listeners: [Listener] = [GatewayConfig.defaultListener]
    /// `allow_anonymous`; nil when not written (see `effectiveAllowAnonymous`).
    public var allowAnonymous: Bool?
    /// `password_file`: Mosquitto password file (`mosquitto_passwd` format). Default none.
    public var passwordFile: String?
    /// `acl_file`: Mosquitto ACL file. Default none (everyone may use every topic).
    public var aclFile: String?
    /// `max_keepalive`: the largest keep-alive a client may ask for, seconds. Default 65535.
    public var maxKeepalive: UInt16 = 65535
    /// `max_inflight_messages`: outgoing QoS 1/2 messages in flight per client, 0 = unlimited. Default 20.
    public var maxInflightMessages: Int = 20
    /// `max_queued_messages`: messages queued per client beyond the in-flight ones, 0 = unlimited. Default 1000.
    public var maxQueuedMessages: Int = 1000
    /// `max_inflight_bytes`: payload bytes of outgoing QoS 1/2 messages in flight per client; further ones
    /// wait in the client's queue (one larger message still goes alone, as in Mosquitto). 0 = no bound.
    /// Default 0.
    public var maxInflightBytes: Int = 0
    /// `max_queued_bytes`: bytes queued per client, 0 = unlimited. Default 0.
    public var maxQueuedBytes: Int = 0
    /// `max_topic_levels` (Sluice): topic names and filters with more levels are refused, 1-65535.
    /// Default 201, Mosquitto 2.0's limit (more than 200 "/" separators are refused).
    public var maxTopicLevels: Int = 201
    /// `message_size_limit`: the largest PUBLISH or will payload, as in Mosquitto (a larger PUBLISH is dropped,
    /// its QoS flow completed, MQTT 5 hears 0x95; a larger will refuses the CONNECT). 0 = no limit. Default 0.
    public var messageSizeLimit: Int = 0
    /// `max_packet_size`: the largest packet accepted from a client (a larger one closes the connection, MQTT 5
    /// with DISCONNECT 0x95), announced to MQTT 5 clients. 0 = the protocol maximum. Default 0.
    public var maxPacketSize: Int = 0
    /// `max_connections` outside any listener section: -1 = unlimited. Default -1.
    public var maxConnections: Int = -1
    /// `persistence`: keep retained messages and persistent sessions across restarts. Default false.
    public var persistence: Bool = false
    /// `persistence_location`: directory of the LMDB store. Default `/var/lib/sluice/`.
    public var persistenceLocation: String = "/var/lib/sluice/"
    /// `log_type` lines (accumulate): debug, error, warning, notice, information, subscribe,
    /// unsubscribe, websockets, all, none. Default error, warning, notice, information.
    public var logTypes: [String] = GatewayConfig.defaultLogTypes
    /// `sys_interval`: seconds between `$SYS` updates, 0 = none. Default 10.
    public var sysInterval: Int = 10
    /// `retain_available`. Default true.
    public var retainAvailable: Bool = true
    /// `persistent_client_expiration` (`1h`, `2d`, `1w`, `1m` = 30 days, `1y` = 365 days). Default nil: never.
    public var persistentClientExpiration: Duration?
    /// `connect_timeout` (Sluice addition): seconds a new connection has to send CONNECT. Default 10.
    public var connectTimeout: Int = 10
    /// `metrics_listener PORT [ADDRESS]` (Sluice addition): HTTP metrics and health. Address default
    /// 127.0.0.1. Default nil: off.
    public var metricsListener: HostPort?
    /// `lorawan_udp_listener PORT [ADDRESS]` (Sluice addition): Semtech UDP packet forwarder. Address
    /// default 127.0.0.1. Default nil: off.
    public var lorawanUDPListener: HostPort?
    /// `lorawan_region` (Sluice addition): eu868, us915, as923, au915, cn470, in865, kr920, ru864, eu433,
    /// cn779. Default eu868.
    public var lorawanRegion: String = "eu868"
    /// `lorawan_gateway_timeout SECONDS` (Sluice addition): a gateway whose PULL_DATA keep-alives
    /// stop for this long is published offline (1–3600). Default 30: three of the packet
    /// forwarder's default 10-second keep-alives.
    public var lorawanGatewayTimeout: Int = 30
    /// `store_max_size` (Sluice addition): LMDB map size in bytes (suffixes KB/MB/GB, 1024-based),
    /// at least 1 MB, honoured as written. Default 1 GiB.
    public var storeMapSizeMax: Int = 1 << 30
    /// `queue_commit_window auto | MILLISECONDS` (Sluice addition): how long a write waits for others to
    /// share its commit. Default `auto`: an append waits up to `CommitHoldEstimator.autoHold` only while other
    /// publishers are expected to send within it (so a lone or closed-loop publisher never waits). A number
    /// is a fixed window for every write (0: every PUBACK follows the next commit at once); it trades PUBACK
    /// latency (up to the window more) for fewer flash writes and flushes: at 10–200 msg/s, one per window
    /// instead of one per message. A publisher whose in-flight window is W then sends at most W messages per
    /// commit window.
    public var queueCommitWindow: QueueCommitWindow = .auto
    /// `store_min_free SIZE|PERCENT%` (Sluice addition): free space the store leaves on its
    /// filesystem; below it `queue_overflow` applies as if the queue were full. Default: 64 MiB, but
    /// at most 5% of the filesystem. 0 turns the guard off.
    public var storeMinFree: StoreMinFree = .standard
    /// `pid_file`: `sluice run` writes its PID here at start and removes the file at exit (Mosquitto
    /// 2.0 does so only with -d; Sluice never daemonizes). Default none.
    public var pidFile: String?
    /// `psk_file`: `identity:hexkey` lines for the listeners with `psk_hint`. Default none.
    public var pskFile: String?
    /// `user`: started as root, `sluice run` drops to this user once its listeners are bound and its
    /// store and log files are open (as Mosquitto does; `root` keeps root). Files read later (SIGHUP
    /// reloads, new store files) must be readable by that user. Default none: no change of user.
    public var user: String?
    /// `log_dest` lines (accumulate): stderr, stdout, `file PATH` (appended to), none. `syslog`,
    /// `topic` and `dlt` are accepted with a notice. Default (no line honoured): stderr.
    public var logDestinations: [LogDestination] = []
    /// `log_timestamp`: start each log line with a time stamp (never on stderr under systemd, where the
    /// journal stamps it). Default true.
    public var logTimestamp: Bool = true
    /// `log_timestamp_format`: a strftime(3) format for the stamp, in local time (TZ), followed by
    /// ": " as in Mosquitto. Default nil: ISO 8601 UTC, Sluice's own stamp.
    public var logTimestampFormat: String?
    /// `connection_messages`: log each client's connect and disconnect. Default true.
    public var connectionMessages: Bool = true
    /// `per_listener_settings`: `allow_anonymous` and `password_file` written in a listener's section
    /// apply to that listener only (lines above the first listener are every listener's default).
    /// `acl_file` stays global. Default false.
    public var perListenerSettings: Bool = false
    /// `max_qos` 0–2: the highest QoS clients may publish at and are granted. Default 2.
    public var maxQoS: Int = 2
    /// `max_topic_alias`: topic aliases an MQTT 5 client may use towards the broker, 0–65535. Default 10.
    public var maxTopicAlias: Int = 10
    /// `check_retain_source`: a retained message is sent to a new subscriber only while the client that
    /// published it may still write to its topic under acl_file (as reloaded since). Messages whose
    /// publisher is not known (saved by an older Sluice, the broker's own) are not checked. Default false,
    /// as Mosquitto 2.0.11 behaves (measured; its man page says true).
    public var checkRetainSource: Bool = false
    /// `upgrade_outgoing_qos`: subscribers receive every message at their subscription's QoS, also when it
    /// was published lower (Mosquitto's non-standard option; global, as there). Default false.
    public var upgradeOutgoingQoS: Bool = false
    /// `queue_qos0_messages`: queue QoS 0 messages for offline persistent sessions. Default false.
    public var queueQoS0Messages: Bool = false
    /// `allow_zero_length_clientid`: clients may connect without a client id (the broker assigns one,
    /// MQTT 3.1.1 with clean session and MQTT 5 only). Default true.
    public var allowZeroLengthClientID: Bool = true
    /// `auto_id_prefix`: prefix of the client ids the broker assigns. Default `auto-`.
    public var autoIDPrefix: String = "auto-"
    /// Warnings, in file order: Mosquitto keys accepted but not honoured (with what Sluice does
    /// instead), settings that reach further than where they were written. `sluice check` prints
    /// them, `sluice run` logs them at start.
    public var notices: [ConfigNotice] = []
    /// `connection` sections in file order.
    public var bridges: [BridgeConfig] = []

    public init() {}

    /// `allowAnonymous` if written; otherwise Mosquitto 2's rule: anonymous clients are allowed only when
    /// every listener binds a loopback address.
    public var effectiveAllowAnonymous: Bool {
        allowAnonymous ?? listeners.allSatisfy(\.isLoopbackOnly)
    }

    /// Who may connect on listener `index`: its own `allow_anonymous`/`password_file` with
    /// `per_listener_settings true`, else the global ones. Anonymous access not written anywhere
    /// follows Mosquitto 2's rule, per listener when settings are per listener.
    public func authentication(forListener index: Int) -> (allowAnonymous: Bool, passwordFile: String?) {
        guard perListenerSettings, listeners.indices.contains(index) else {
            return (effectiveAllowAnonymous, passwordFile)
        }
        let listener = listeners[index]
        return (
            listener.allowAnonymous ?? allowAnonymous ?? listener.isLoopbackOnly,
            listener.passwordFile ?? passwordFile
        )
    }
}

/// `store_min_free`: how much of the store's filesystem stays free for the OS and its logs.
public enum StoreMinFree: Sendable, Hashable {
    case bytes(Int)
    /// Percent of the filesystem's size, 0–100.
    case percent(Double)
    /// 64 MiB, but at most 5% of the filesystem (an 8 GB card keeps 64 MiB, a 16 MiB tmpfs 0.8 MiB).
    case standard

    public static let standardBytes = 64 << 20
    public static let standardPercent = 5.0
}

/// A warning about a line that was accepted: a Mosquitto key Sluice does not honour (with what it
/// does instead), or a setting that reaches further than where it was written.
public struct ConfigNotice: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var key: String
    public var message: String

    public init(file: String, line: Int, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// The notice for a key the table marks `.ignored`.
    static func notHonoured(_ d: Directive, reason: String) -> ConfigNotice {
        ConfigNotice(file: d.file, line: d.line, key: d.key, message: "accepted but not honoured: \(reason)")
    }

    public var description: String { "\(file):\(line): key '\(key)': \(message)" }
}

/// Where `log_dest` sends log lines.
public enum LogDestination: Sendable, Equatable {
    case stderr
    case stdout
    case file(String)
    /// `log_dest none`: no log at all (with other lines: those win).
    case none
}
