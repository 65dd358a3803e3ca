import Testing

@testable import SluiceConfig

/// A configuration text and the change it makes to `GatewayConfig.default`.
struct GoodCase: Sendable, CustomTestStringConvertible {
    var text: String
    var expect: @Sendable (inout GatewayConfig) -> Void
    var testDescription: String { text.split(separator: "\n").prefix(3).joined(separator: " / ") }
}

let goodCases: [GoodCase] = [
    GoodCase(text: "") { _ in },
    GoodCase(text: "# only a comment\n\n   \n\t# indented comment\n") { _ in },
    GoodCase(text: "listener 1883") { $0.listeners = [Listener(port: 1883)] },
    GoodCase(text: "listener 1883 0.0.0.0\r\nlistener 9001 ::1\r\nprotocol websockets\r\n") {
        var ws = Listener(port: 9001, address: "::1")
        ws.protocolKind = .websockets
        $0.listeners = [Listener(port: 1883, address: "0.0.0.0"), ws]
    },
    GoodCase(text: "max_connections 50\nlistener 1883\nmax_connections 10\n") {
        var listener = Listener(port: 1883)
        listener.maxConnections = 10
        $0.listeners = [listener]
        $0.maxConnections = 50
    },
    GoodCase(text: "allow_anonymous false") { $0.allowAnonymous = false },
    GoodCase(
        text: """
            max_keepalive 300
            max_inflight_messages 0
            max_queued_messages 0
            max_queued_bytes 1048576
            message_size_limit 65536
            persistence true
            persistence_location /tmp/sluice data/
            sys_interval 0
            retain_available false
            connect_timeout 5
            """
    ) {
        $0.maxKeepalive = 300
        $0.maxInflightMessages = 0
        $0.maxQueuedMessages = 0
        $0.maxQueuedBytes = 1_048_576
        $0.messageSizeLimit = 65536
        $0.persistence = true
        $0.persistenceLocation = "/tmp/sluice data/"
        $0.sysInterval = 0
        $0.retainAvailable = false
        $0.connectTimeout = 5
    },
    GoodCase(text: "max_packet_size 1024") { $0.maxPacketSize = 1024 },
    GoodCase(text: "max_topic_levels 1") { $0.maxTopicLevels = 1 },
    GoodCase(text: "max_topic_levels 65535") { $0.maxTopicLevels = 65535 },
    GoodCase(text: "log_type debug\nlog_type error\nlog_type debug\n") { $0.logTypes = ["debug", "error"] },
    GoodCase(text: "persistent_client_expiration 1h") { $0.persistentClientExpiration = .seconds(3600) },
    GoodCase(text: "persistent_client_expiration 2d") { $0.persistentClientExpiration = .seconds(2 * 86_400) },
    GoodCase(text: "persistent_client_expiration 1w") { $0.persistentClientExpiration = .seconds(7 * 86_400) },
    GoodCase(text: "persistent_client_expiration 1m") { $0.persistentClientExpiration = .seconds(30 * 86_400) },
    GoodCase(text: "persistent_client_expiration 1y") { $0.persistentClientExpiration = .seconds(365 * 86_400) },
    GoodCase(text: "metrics_listener 9234") { $0.metricsListener = HostPort(host: "127.0.0.1", port: 9234) },
    GoodCase(text: "metrics_listener 9234 0.0.0.0") { $0.metricsListener = HostPort(host: "0.0.0.0", port: 9234) },
    GoodCase(text: "lorawan_udp_listener 1700 0.0.0.0\nlorawan_region US915\nlorawan_gateway_timeout 90") {
        $0.lorawanUDPListener = HostPort(host: "0.0.0.0", port: 1700)
        $0.lorawanRegion = "us915"
        $0.lorawanGatewayTimeout = 90
    },
    GoodCase(text: "store_max_size 512MB") { $0.storeMapSizeMax = 512 << 20 },
    GoodCase(text: "store_max_size 2GB") { $0.storeMapSizeMax = 2 << 30 },
    GoodCase(text: "store_max_size 4194304") { $0.storeMapSizeMax = 4 << 20 },
    GoodCase(text: "store_min_free 128MB") { $0.storeMinFree = .bytes(128 << 20) },
    GoodCase(text: "queue_commit_window 0") { $0.queueCommitWindow = .milliseconds(0) },
    GoodCase(text: "queue_commit_window 1000") { $0.queueCommitWindow = .milliseconds(1_000) },
    GoodCase(text: "queue_commit_window 10000") { $0.queueCommitWindow = .milliseconds(10_000) },
    GoodCase(text: "queue_commit_window 5\nqueue_commit_window auto") { $0.queueCommitWindow = .auto },
    GoodCase(text: "store_min_free 0") { $0.storeMinFree = .bytes(0) },
    GoodCase(text: "store_min_free 10%") { $0.storeMinFree = .percent(10) },
    GoodCase(text: "store_min_free 2.5%") { $0.storeMinFree = .percent(2.5) },
    GoodCase(text: "user mosquitto\nallow_duplicate_messages true\n") {
        $0.user = "mosquitto"
        $0.notices = [
            ConfigNotice(
                file: "gateway.conf",
                line: 2,
                key: "allow_duplicate_messages",
                message: "accepted but not honoured: " + GatewayConfig.ignoredKeys["allow_duplicate_messages"]!
            )
        ]
    },
    GoodCase(text: "log_timestamp false") { $0.logTimestamp = false },
    GoodCase(text: "log_timestamp true") { _ in },
    GoodCase(text: "log_timestamp_format %Y-%m-%d %H:%M:%S") { $0.logTimestampFormat = "%Y-%m-%d %H:%M:%S" },
    GoodCase(text: "log_dest stdout\nlog_dest file /var/log/sluice.log\nlog_dest none") {
        $0.logDestinations = [.stdout, .file("/var/log/sluice.log"), .none]
    },
    GoodCase(text: "max_topic_alias 0\nqueue_qos0_messages true") {
        $0.maxTopicAlias = 0
        $0.queueQoS0Messages = true
    },
    GoodCase(text: "allow_zero_length_clientid false\nauto_id_prefix gw-") {
        $0.allowZeroLengthClientID = false
        $0.autoIDPrefix = "gw-"
    },
    GoodCase(text: "max_inflight_bytes 0\nmemory_limit 0\ncheck_retain_source false") { _ in },
    GoodCase(text: "check_retain_source true") { $0.checkRetainSource = true },
    GoodCase(text: minimalBridgeText + "start_type automatic\nbridge_outgoing_retain true\nupgrade_outgoing_qos false")
    {
        $0.bridges = [minimalBridge()]
    },
    // A global key, valid in a connection section too (Mosquitto 2.0 reads it anywhere).
    GoodCase(text: minimalBridgeText + "upgrade_outgoing_qos true") {
        $0.bridges = [minimalBridge()]
        $0.upgradeOutgoingQoS = true
    },
    GoodCase(text: "per_listener_settings false") { _ in },
    GoodCase(text: minimalBridgeText) { $0.bridges = [minimalBridge()] },
    GoodCase(
        text: """
            connection central
            address central.example.com:8883 [::1]:1884 10.0.0.2
            addresses fe80::1
            topic sensors/# out 1 "" gateway1/
            topic commands/# in 2 "" gateway1/
            topic x/+/y both
            topic "" both 1 local/state remote/state
            remote_clientid gw1
            remote_username user name
            remote_password p4ss word
            bridge_protocol_version mqttv50
            cleansession true
            keepalive_interval 30
            restart_timeout 10
            notifications false
            notification_topic gw/state
            try_private false
            round_robin true
            bridge_max_packet_size 65536
            """
    ) {
        var bridge = BridgeConfig(name: "central")
        bridge.addresses = [
            HostPort(host: "central.example.com", port: 8883), HostPort(host: "::1", port: 1884),
            HostPort(host: "10.0.0.2", port: 1883), HostPort(host: "fe80::1", port: 1883),
        ]
        bridge.topics = [
            BridgeTopic(pattern: "sensors/#", direction: .out, qos: 1, localPrefix: "", remotePrefix: "gateway1/"),
            BridgeTopic(pattern: "commands/#", direction: .in, qos: 2, localPrefix: "", remotePrefix: "gateway1/"),
            BridgeTopic(pattern: "x/+/y", direction: .both),
            BridgeTopic(
                pattern: "",
                direction: .both,
                qos: 1,
                localPrefix: "local/state",
                remotePrefix: "remote/state"
            ),
        ]
        bridge.remoteClientID = "gw1"
        bridge.remoteUsername = "user name"
        bridge.remotePassword = "p4ss word"
        bridge.protocolVersion = .v5
        bridge.cleanSession = true
        bridge.keepaliveInterval = 30
        bridge.restartTimeout = RestartTimeout(base: 10, cap: 10)
        bridge.notifications = false
        bridge.notificationTopic = "gw/state"
        bridge.tryPrivate = false
        bridge.roundRobin = true
        bridge.maxPacketSize = 65536
        $0.bridges = [bridge]
    },
    GoodCase(text: minimalBridgeText + "clientid old-style\nrestart_timeout 2 60\nbridge_protocol_version mqttv31\n") {
        var bridge = minimalBridge()
        bridge.remoteClientID = "old-style"
        bridge.restartTimeout = RestartTimeout(base: 2, cap: 60)
        bridge.protocolVersion = .v31
        $0.bridges = [bridge]
    },
    // Top-level queue options are defaults for every bridge; inside a section they override.
    GoodCase(
        text: """
            queue_max_messages 5000
            queue_max_bytes 64MB
            queue_max_age 7d
            queue_overflow reject_new
            bridge_max_inflight 10
            bridge_progress_timeout 60
            bridge_max_attempts 7
            bridge_max_rate 90
            connection a
            address 127.0.0.1
            topic a/#
            bridge_max_rate 80 64000
            queue_max_messages 0
            queue_max_age 0
            queue_overflow drop_oldest
            connection b
            address 127.0.0.1
            topic a/#
            bridge_max_inflight 500
            """
    ) {
        var a = minimalBridge("a")
        a.queueMaxMessages = 0
        a.queueMaxBytes = 64 << 20
        a.queueMaxAge = nil
        a.queueOverflow = .dropOldest
        a.maxInflight = 10
        a.progressTimeout = 60
        a.maxAttempts = 7
        a.maxRate = 80
        a.maxByteRate = 64000
        var b = minimalBridge("b")
        b.queueMaxMessages = 5000
        b.queueMaxBytes = 64 << 20
        b.queueMaxAge = .seconds(7 * 86_400)
        b.queueOverflow = .rejectNew
        b.maxInflight = 500
        b.progressTimeout = 60
        b.maxAttempts = 7
        b.maxRate = 90
        $0.bridges = [a, b]
    },
    // A global key inside a bridge section stays global; listener keys go to the last listener.
    GoodCase(text: "listener 1883\n" + minimalBridgeText + "allow_anonymous false\nprotocol websockets\n") {
        var listener = Listener(port: 1883)
        listener.protocolKind = .websockets
        $0.listeners = [listener]
        $0.allowAnonymous = false
        $0.bridges = [minimalBridge()]
    },
]

@Test(arguments: goodCases)
func goodConfigParses(_ good: GoodCase) throws {
    var expected = GatewayConfig.default
    good.expect(&expected)
    #expect(try parse(good.text) == expected)
}

@Test func defaultsAreTheDocumentedOnes() throws {
    let config = GatewayConfig.default
    #expect(config.listeners == [Listener(port: 1883, address: "127.0.0.1")])
    #expect(config.allowAnonymous == nil)
    #expect(config.effectiveAllowAnonymous)
    #expect(config.passwordFile == nil && config.aclFile == nil)
    #expect(config.maxKeepalive == 65535)
    #expect(config.maxInflightMessages == 20)
    #expect(config.maxQueuedMessages == 1000)
    #expect(config.maxQueuedBytes == 0)
    #expect(config.maxTopicLevels == 201)
    #expect(config.messageSizeLimit == 0)
    #expect(config.maxPacketSize == 0)
    #expect(config.maxConnections == -1)
    #expect(config.persistence == false)
    #expect(config.persistenceLocation == "/var/lib/sluice/")
    #expect(config.logTypes == ["error", "warning", "notice", "information"])
    #expect(config.sysInterval == 10)
    #expect(config.retainAvailable)
    #expect(config.persistentClientExpiration == nil)
    #expect(config.connectTimeout == 10)
    #expect(config.metricsListener == nil && config.lorawanUDPListener == nil)
    #expect(config.lorawanRegion == "eu868")
    #expect(config.lorawanGatewayTimeout == 30)
    #expect(config.storeMapSizeMax == 1 << 30)
    #expect(config.storeMinFree == .standard)
    #expect(config.queueCommitWindow == .auto)
    #expect(config.bridges.isEmpty)
    #expect(try parse("") == config)

    let bridge = BridgeConfig(name: "b")
    #expect(bridge.protocolVersion == .v311)
    #expect(bridge.cleanSession == false)
    #expect(bridge.keepaliveInterval == 60)
    #expect(bridge.restartTimeout == RestartTimeout(base: 5, cap: 30))
    #expect(bridge.notifications && bridge.tryPrivate && !bridge.roundRobin)
    #expect(bridge.effectiveRemoteClientID(hostName: "gw7") == "gw7.b")
    #expect(bridge.effectiveNotificationTopic(hostName: "gw7") == "$SYS/broker/connection/gw7.b/state")
    var named = bridge
    named.remoteClientID = "site-12"
    #expect(named.effectiveNotificationTopic(hostName: "gw7") == "$SYS/broker/connection/site-12/state")
    #expect(bridge.maxPacketSize == 0)
    #expect(!bridge.usesTLS && !bridge.bridgeInsecure && bridge.bridgeTLSVersion == "tlsv1.2")
    #expect(bridge.queueMaxMessages == 1_000_000)
    #expect(bridge.queueMaxBytes == 512 * 1024 * 1024)
    #expect(bridge.queueMaxAge == nil)
    #expect(bridge.queueOverflow == .dropOldest)
    #expect(bridge.maxInflight == 1000)
    #expect(bridge.progressTimeout == 30)
}

@Test(arguments: [
    ("", true),
    ("listener 1883 127.0.0.1", true),
    ("listener 1883 127.1.2.3\nlistener 1884 ::1\nlistener 1885 localhost", true),
    ("listener 1883", false),
    ("listener 1883 0.0.0.0", false),
    ("listener 1883 127.0.0.1\nlistener 8883 192.168.1.10", false),
    ("listener 1883\nallow_anonymous true", true),
    ("listener 1883 127.0.0.1\nallow_anonymous false", false),
])
func effectiveAllowAnonymousFollowsMosquitto2(text: String, allowed: Bool) throws {
    #expect(try parse(text).effectiveAllowAnonymous == allowed)
}
