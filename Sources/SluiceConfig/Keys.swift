import MQTTCore

// Note on the key table: every key Sluice accepts is in `KeyRule.table`, with the section it
// belongs to and the one function that reads its value. A key that is not there is an error,
// so this table is the full list of what gateway.conf understands. Keys Mosquitto has and that
// are harmless to ignore on a gateway are listed too (`.ignored`, with the reason), as are keys
// Sluice refuses with a pointer to what to write instead (`.unsupported`).

/// How one key is read.
enum KeyRule: Sendable {
    typealias Apply<Target> = @Sendable (inout Target, Directive) throws(ConfigError) -> Void

    /// A top-level option, valid anywhere in the file (as in Mosquitto).
    case global(Apply<GatewayConfig>)
    /// Applies to the last `listener`; an error before the first.
    case listener(Apply<ListenerDraft>)
    /// Applies to the last `connection`; an error before the first.
    case bridge(Apply<BridgeConfig>)
    /// Sluice's queue options: a default for every bridge at top level, an override inside a
    /// `connection` section (when the most recent section line is a `connection`).
    case bridgeDefault(Apply<BridgeConfig>)
    /// `max_connections`: the last listener's when the most recent section line is a `listener`,
    /// else the global value.
    case listenerOrGlobal(listener: Apply<ListenerDraft>, global: Apply<GatewayConfig>)
    /// Mosquitto's pre-2.0 default listener (`port`, `bind_address`); listener keys written
    /// before the first `listener` line apply to it too, as in Mosquitto.
    case defaultListener(Apply<ListenerDraft>)
    /// `listener` and `connection`, handled by the builder.
    case section
    /// Accepted and ignored; the string says why that is harmless.
    case ignored(String)
    /// Known but refused; the string says what to write instead.
    case unsupported(String)

    static let protocolMaximum = 268_435_455
    static let tlsVersions: KeyValuePairs<String, String> = [
        "tlsv1.3": "tlsv1.3", "tlsv1.2": "tlsv1.2", "tlsv1.1": "tlsv1.1",
    ]
    static let logTypes = [
        "debug", "error", "warning", "notice", "information", "subscribe", "unsubscribe", "websockets", "all",
        "none",
    ]
    static let lorawanRegions = [
        "eu868", "us915", "as923", "au915", "cn470", "in865", "kr920", "ru864", "eu433", "cn779",
    ]

    static let table: [String: KeyRule] = [
        // Sections.
        "listener": .section,
        "connection": .section,
        "port": .defaultListener { l, d throws(ConfigError) in l.listener.port = try d.int(1...65535) },
        "bind_address": .defaultListener { l, d throws(ConfigError) in l.listener.address = try d.singleToken() },

        // Security.
        "allow_anonymous": .global { c, d throws(ConfigError) in c.allowAnonymous = try d.bool() },
        "password_file": .global { c, d throws(ConfigError) in c.passwordFile = try d.existingPath() },
        "acl_file": .global { c, d throws(ConfigError) in c.aclFile = try d.existingPath() },
        "per_listener_settings": .global { c, d throws(ConfigError) in c.perListenerSettings = try d.bool() },

        // Limits.
        "max_keepalive": .global { c, d throws(ConfigError) in c.maxKeepalive = UInt16(try d.int(0...65535)) },
        "max_inflight_messages": .global { c, d throws(ConfigError) in c.maxInflightMessages = try d.int(0...65535) },
        "max_inflight_bytes": .global { c, d throws(ConfigError) in c.maxInflightBytes = try d.int(0...Int.max) },
        "max_queued_messages": .global { c, d throws(ConfigError) in c.maxQueuedMessages = try d.int(0...Int.max) },
        "max_queued_bytes": .global { c, d throws(ConfigError) in c.maxQueuedBytes = try d.int(0...Int.max) },
        "max_topic_levels": .global { c, d throws(ConfigError) in c.maxTopicLevels = try d.int(1...65535) },
        "message_size_limit": .global { c, d throws(ConfigError) in
            c.messageSizeLimit = try d.int(0...protocolMaximum)
        },
        "max_packet_size": .global { c, d throws(ConfigError) in c.maxPacketSize = try d.int(0...protocolMaximum) },
        "max_connections": .listenerOrGlobal(
            listener: { l, d throws(ConfigError) in l.listener.maxConnections = try d.int(-1...Int.max) },
            global: { c, d throws(ConfigError) in c.maxConnections = try d.int(-1...Int.max) }
        ),
        "connect_timeout": .global { c, d throws(ConfigError) in c.connectTimeout = try d.int(1...3600) },
        "max_topic_alias": .global { c, d throws(ConfigError) in c.maxTopicAlias = try d.int(0...65535) },
        "queue_qos0_messages": .global { c, d throws(ConfigError) in c.queueQoS0Messages = try d.bool() },
        "allow_zero_length_clientid": .global { c, d throws(ConfigError) in c.allowZeroLengthClientID = try d.bool() },
        "auto_id_prefix": .global { c, d throws(ConfigError) in
            let prefix = try d.singleToken()
            guard prefix.utf8.count <= 50 else {
                throw d.error(.badValue, "at most 50 bytes, got \(prefix.utf8.count)")
            }
            c.autoIDPrefix = prefix
        },
        "check_retain_source": .global { c, d throws(ConfigError) in c.checkRetainSource = try d.bool() },
        "upgrade_outgoing_qos": .global { c, d throws(ConfigError) in c.upgradeOutgoingQoS = try d.bool() },
        "max_qos": .global { c, d throws(ConfigError) in c.maxQoS = try d.int(0...2) },

        // Persistence, logging, $SYS.
        "persistence": .global { c, d throws(ConfigError) in c.persistence = try d.bool() },
        "persistence_location": .global { c, d throws(ConfigError) in c.persistenceLocation = try d.singleString() },
        "store_max_size": .global { c, d throws(ConfigError) in
            c.storeMapSizeMax = try d.byteSize((1 << 20)...Int.max)
        },
        "queue_commit_window": .global { c, d throws(ConfigError) in
            c.queueCommitWindow = try d.queueCommitWindow()
        },
        "store_min_free": .global { c, d throws(ConfigError) in c.storeMinFree = try d.storeMinFree() },
        "persistent_client_expiration": .global { c, d throws(ConfigError) in
            c.persistentClientExpiration = try d.duration()
        },
        "log_type": .global { c, d throws(ConfigError) in
            let word = try d.singleToken()
            guard logTypes.contains(word) else {
                throw d.error(.badValue, "expected one of \(logTypes.joined(separator: ", ")), got '\(word)'")
            }
            if !c.logTypes.contains(word) { c.logTypes.append(word) }
        },
        "sys_interval": .global { c, d throws(ConfigError) in c.sysInterval = try d.int(0...65535) },
        "retain_available": .global { c, d throws(ConfigError) in c.retainAvailable = try d.bool() },

        // Sluice's own listeners.
        "metrics_listener": .global { c, d throws(ConfigError) in
            c.metricsListener = try d.portAndAddress(defaultHost: "127.0.0.1")
        },
        "lorawan_udp_listener": .global { c, d throws(ConfigError) in
            c.lorawanUDPListener = try d.portAndAddress(defaultHost: "127.0.0.1")
        },
        "lorawan_gateway_timeout": .global { c, d throws(ConfigError) in
            c.lorawanGatewayTimeout = try d.int(1...3600)
        },
        "lorawan_region": .global { c, d throws(ConfigError) in
            let word = try d.singleToken().lowercased()
            guard lorawanRegions.contains(word) else {
                throw d.error(.badValue, "expected one of \(lorawanRegions.joined(separator: ", ")), got '\(d.rest)'")
            }
            c.lorawanRegion = word
        },

        // Per listener.
        "protocol": .listener { l, d throws(ConfigError) in
            l.listener.protocolKind = try d.word(["mqtt": .mqtt, "websockets": .websockets])
        },
        "cafile": .listener { l, d throws(ConfigError) in l.caFile = try d.existingPath() },
        "capath": .listener { l, d throws(ConfigError) in l.caPath = try d.existingPath(directory: true) },
        "certfile": .listener { l, d throws(ConfigError) in l.certFile = try d.existingPath() },
        "keyfile": .listener { l, d throws(ConfigError) in l.keyFile = try d.existingPath() },
        "crlfile": .listener { l, d throws(ConfigError) in l.crlFile = try d.existingPath() },
        "require_certificate": .listener { l, d throws(ConfigError) in l.requireCertificate = try d.bool() },
        "use_identity_as_username": .listener { l, d throws(ConfigError) in l.useIdentityAsUsername = try d.bool() },
        "use_subject_as_username": .listener { l, d throws(ConfigError) in l.useSubjectAsUsername = try d.bool() },
        "tls_version": .listener { l, d throws(ConfigError) in l.tlsVersion = try d.word(tlsVersions) },
        "ciphers": .listener { l, d throws(ConfigError) in l.ciphers = try d.singleString() },
        "mount_point": .listener { l, d throws(ConfigError) in
            let prefix = try d.singleString()
            guard Topic.nameProblem(prefix) == nil else {
                throw d.error(.badValue, "a mount point is a topic prefix without wildcards, got '\(prefix)'")
            }
            l.listener.mountPoint = prefix
        },
        "bind_interface": .listener { l, d throws(ConfigError) in
            let name = try d.singleToken()
            guard (1...15).contains(name.utf8.count) else {
                throw d.error(.badValue, "an interface name is 1 to 15 bytes")
            }
            l.listener.bindInterface = name
        },
        "socket_domain": .listener { l, d throws(ConfigError) in
            l.listener.socketDomain = try d.word(["ipv4": .ipv4, "ipv6": .ipv6])
        },

        // Per bridge (Mosquitto's meaning).
        "address": .bridge { b, d throws(ConfigError) in try b.addAddresses(d) },
        "addresses": .bridge { b, d throws(ConfigError) in try b.addAddresses(d) },
        "topic": .bridge { b, d throws(ConfigError) in b.topics.append(try BridgeTopic(parsing: d)) },
        "remote_clientid": .bridge { b, d throws(ConfigError) in b.remoteClientID = try d.singleString() },
        "clientid": .bridge { b, d throws(ConfigError) in b.remoteClientID = try d.singleString() },
        "remote_username": .bridge { b, d throws(ConfigError) in b.remoteUsername = try d.singleString() },
        "remote_password": .bridge { b, d throws(ConfigError) in b.remotePassword = try d.singleString() },
        "bridge_protocol_version": .bridge { b, d throws(ConfigError) in
            b.protocolVersion = try d.word(["mqttv31": .v31, "mqttv311": .v311, "mqttv50": .v5])
        },
        "cleansession": .bridge { b, d throws(ConfigError) in b.cleanSession = try d.bool() },
        "keepalive_interval": .bridge { b, d throws(ConfigError) in b.keepaliveInterval = try d.int(5...65535) },
        "restart_timeout": .bridge { b, d throws(ConfigError) in
            let words = try d.tokens(min: 1, max: 2)
            let base = try Directive.int(words[0], 1...86_400, d)
            let cap = words.count == 2 ? try Directive.int(words[1], base...86_400, d) : base
            b.restartTimeout = RestartTimeout(base: base, cap: cap)
        },
        "notifications": .bridge { b, d throws(ConfigError) in b.notifications = try d.bool() },
        "notification_topic": .bridge { b, d throws(ConfigError) in
            let topic = try d.singleToken()
            if let problem = Topic.nameProblem(topic) { throw d.error(.badValue, "\(problem), got '\(topic)'") }
            b.notificationTopic = topic
        },
        "try_private": .bridge { b, d throws(ConfigError) in b.tryPrivate = try d.bool() },
        "round_robin": .bridge { b, d throws(ConfigError) in b.roundRobin = try d.bool() },
        "bridge_max_packet_size": .bridge { b, d throws(ConfigError) in b.maxPacketSize = try d.int(0...protocolMaximum)
        },
        "bridge_cafile": .bridge { b, d throws(ConfigError) in b.bridgeCAFile = try d.existingPath() },
        "bridge_capath": .bridge { b, d throws(ConfigError) in b.bridgeCAPath = try d.existingPath(directory: true) },
        "bridge_certfile": .bridge { b, d throws(ConfigError) in b.bridgeCertFile = try d.existingPath() },
        "bridge_keyfile": .bridge { b, d throws(ConfigError) in b.bridgeKeyFile = try d.existingPath() },
        "bridge_insecure": .bridge { b, d throws(ConfigError) in b.bridgeInsecure = try d.bool() },
        "bridge_tls_version": .bridge { b, d throws(ConfigError) in b.bridgeTLSVersion = try d.word(tlsVersions) },

        // Per bridge, or top-level defaults for every bridge (Sluice additions).
        "queue_max_messages": .bridgeDefault { b, d throws(ConfigError) in b.queueMaxMessages = try d.int(0...Int.max)
        },
        "queue_max_bytes": .bridgeDefault { b, d throws(ConfigError) in b.queueMaxBytes = try d.byteSize(0...Int.max) },
        "queue_max_age": .bridgeDefault { b, d throws(ConfigError) in b.queueMaxAge = try d.duration(zeroIsNone: true)
        },
        "queue_overflow": .bridgeDefault { b, d throws(ConfigError) in
            b.queueOverflow = try d.word(["drop_oldest": .dropOldest, "reject_new": .rejectNew])
        },
        "bridge_max_inflight": .bridgeDefault { b, d throws(ConfigError) in b.maxInflight = try d.int(1...65535) },
        "bridge_progress_timeout": .bridgeDefault { b, d throws(ConfigError) in
            b.progressTimeout = try d.int(1...3600)
        },
        "bridge_max_attempts": .bridgeDefault { b, d throws(ConfigError) in b.maxAttempts = try d.int(1...1000) },
        "bridge_max_rate": .bridgeDefault { b, d throws(ConfigError) in
            // MSGS_PER_S [BYTES_PER_S]; 0 turns pacing off.
            let words = try d.tokens(min: 1, max: 2)
            let messages = try Directive.int(words[0], 0...1_000_000, d)
            let bytes = words.count == 2 ? try Directive.int(words[1], 1...Int(Int32.max), d) : nil
            b.maxRate = messages == 0 ? nil : Double(messages)
            b.maxByteRate = messages == 0 ? nil : bytes.map(Double.init)
        },

        // Mosquitto keys accepted and ignored: `check` warns and `run` logs each at start with
        // what Sluice does instead.
        "pid_file": .global { c, d throws(ConfigError) in c.pidFile = try d.singleString() },
        "user": .global { c, d throws(ConfigError) in c.user = try d.singleToken() },
        "log_dest": .global { c, d throws(ConfigError) in
            let words = try d.tokens(min: 1, max: 2)
            switch (words[0], words.count) {
            case ("stderr", 1): c.logDestinations.append(.stderr)
            case ("stdout", 1): c.logDestinations.append(.stdout)
            case ("none", 1): c.logDestinations.append(.none)
            case ("file", 2): c.logDestinations.append(.file(words[1]))
            case ("file", _): throw d.error(.missingValue, "log_dest file needs a path")
            case ("syslog", 1), ("topic", 1), ("dlt", 1):
                c.notices.append(
                    .notHonoured(
                        d,
                        reason:
                            "Sluice does not log to \(words[0]); it logs to the other log_dest lines, or stderr (the journal under systemd)"
                    )
                )
            default:
                throw d.error(
                    .badValue,
                    "expected stderr, stdout, file PATH, syslog, topic, dlt or none, got '\(d.rest)'"
                )
            }
        },
        "log_timestamp": .global { c, d throws(ConfigError) in c.logTimestamp = try d.bool() },
        "log_timestamp_format": .global { c, d throws(ConfigError) in
            // strftime(3) takes the whole rest of the line, blanks included (as Mosquitto reads it).
            let format = try d.singleString()
            guard LogTimestamp.format(format, at: 1_700_000_000) != nil else {
                throw d.error(
                    .badValue,
                    "a strftime(3) format that gives 1 to \(LogTimestamp.maximumLength) bytes, got '\(format)'"
                )
            }
            c.logTimestampFormat = format
        },
        "log_facility": .ignored("Sluice does not write to syslog itself; the journal keeps its stderr"),
        "connection_messages": .global { c, d throws(ConfigError) in c.connectionMessages = try d.bool() },
        "autosave_interval": .ignored(
            "Sluice commits every change to LMDB before acknowledging it; there is no periodic save"
        ),
        "autosave_on_changes": .ignored(
            "Sluice commits every change to LMDB before acknowledging it; there is no periodic save"
        ),
        "persistence_file": .ignored("the LMDB store's file name is fixed inside persistence_location"),
        "allow_duplicate_messages": .ignored("deprecated no-op in Mosquitto 2"),
        "set_tcp_nodelay": .global { c, d throws(ConfigError) in
            if !(try d.bool()) {
                c.notices.append(
                    .notHonoured(
                        d,
                        reason: "Sluice always sets TCP_NODELAY, so small messages leave at once (Nagle off)"
                    )
                )
            }
        },
        "local_clientid": .bridge { b, d throws(ConfigError) in b.localClientID = try d.clientID() },
        "local_username": .bridge { b, d throws(ConfigError) in b.localUsername = try d.singleString() },
        "local_password": .bridge { b, d throws(ConfigError) in
            b.localPassword = try d.singleString()
            b.localPasswordLine = ConfigLine(d)
        },
        "local_cleansession": .bridge { b, d throws(ConfigError) in
            b.localCleanSession = try d.bool()
            b.localCleanSessionLine = ConfigLine(d)
        },
        "idle_timeout": .bridge { b, d throws(ConfigError) in b.idleTimeout = try d.int(1...86_400 * 365) },
        "threshold": .bridge { b, d throws(ConfigError) in b.threshold = try d.int(1...Int(Int32.max)) },
        "auth_plugin_deny_special_chars": .ignored("only affects authentication plugins, which Sluice does not load"),
        "dhparamfile": .ignored(
            "SwiftNIO SSL (BoringSSL) offers no DHE cipher suites, only ECDHE: no DH parameters are used"
        ),
        "websockets_headers_size": .ignored("the websockets listener uses SwiftNIO's HTTP header size limit"),
        "websockets_log_level": .ignored("websockets events are logged by 'log_type websockets'"),

        // Mosquitto keys accepted only with Mosquitto's default value.
        "start_type": .bridge { b, d throws(ConfigError) in
            b.startType = try d.word(["automatic": .automatic, "lazy": .lazy, "once": .once])
        },
        "bridge_outgoing_retain": .bridge { b, d throws(ConfigError) in b.outgoingRetain = try d.bool() },
        "bridge_attempt_unsubscribe": .bridge { b, d throws(ConfigError) in b.attemptUnsubscribe = try d.bool() },
        "notifications_local_only": .bridge { _, d throws(ConfigError) in
            try d.requireDefault(
                false,
                "notifications go to the remote broker too (set notifications false to send none)"
            )
        },
        "bridge_require_ocsp": .bridge { _, d throws(ConfigError) in
            try d.requireDefault(false, "OCSP stapling is not checked (remove the line)")
        },
        "memory_limit": .global { _, d throws(ConfigError) in
            guard try d.byteSize(0...Int.max) == 0 else {
                throw d.unsupported(
                    "there is no overall memory bound (use max_queued_messages/max_queued_bytes, or MemoryMax= in the systemd unit)"
                )
            }
        },
        "tls_keyform": .listener { _, d throws(ConfigError) in
            guard try d.singleToken() == "pem" else {
                throw d.unsupported("keys are read from PEM files only; there is no TLS engine (write keyform pem)")
            }
        },

        // Mosquitto keys refused, with why and what to write instead.
        "plugin": .unsupported(
            "Sluice cannot load Mosquitto's C plugins (use password_file and acl_file for authentication and access control)"
        ),
        "auth_plugin": .unsupported(
            "Sluice cannot load Mosquitto's C plugins (use password_file and acl_file for authentication and access control)"
        ),
        "http_dir": .unsupported("the websockets listener serves no files (serve them with a web server)"),
        "use_username_as_clientid": .listener { l, d throws(ConfigError) in
            l.listener.useUsernameAsClientID = try d.bool()
        },
        "clientid_prefixes": .unsupported("not implemented (restrict clients with password_file and acl_file)"),
        "ciphers_tls1.3": .unsupported(
            "SwiftNIO SSL (BoringSSL) does not let the TLS 1.3 suites be chosen; all of them are strong (remove the line)"
        ),
        "psk_file": .global { c, d throws(ConfigError) in c.pskFile = try d.existingPath() },
        "psk_hint": .listener { l, d throws(ConfigError) in
            guard l.certFile == nil else {
                throw d.unsupported(
                    "a Sluice listener is either certificate or PSK TLS, not both (give the PSK clients a listener of their own)"
                )
            }
            l.listener.pskHint = try d.singleString()
        },
        "bridge_identity": .bridge { b, d throws(ConfigError) in b.bridgeIdentity = try d.singleToken() },
        "bridge_psk": .bridge { b, d throws(ConfigError) in
            let hex = try d.singleToken()
            guard let key = hexBytes(hex), !key.isEmpty, key.count <= 256 else {
                throw d.error(.badValue, "a pre-shared key is 1 to 256 bytes written in hexadecimal, got '\(hex)'")
            }
            b.bridgePSK = key
        },
        "bridge_alpn": .bridge { b, d throws(ConfigError) in
            let name = try d.singleToken()
            guard (1...255).contains(name.utf8.count) else {
                throw d.error(.badValue, "an ALPN protocol name is 1 to 255 bytes")
            }
            b.bridgeALPN = name
        },
        "bridge_bind_address": .bridge { b, d throws(ConfigError) in b.bindAddress = try d.ipAddress() },
        "tls_engine": .unsupported("hardware TLS engines are not supported (use keyfile with a PEM key)"),
        "tls_engine_kpass_sha1": .unsupported("hardware TLS engines are not supported (use keyfile with a PEM key)"),
    ]
}

/// A `listener` section while it is being read.
struct ListenerDraft: Sendable {
    var listener: Listener
    var directive: Directive
    var caFile: String?
    var caPath: String?
    var certFile: String?
    var keyFile: String?
    var crlFile: String?
    var requireCertificate: Bool?
    var useIdentityAsUsername: Bool?
    var useSubjectAsUsername: Bool?
    var tlsVersion: String?
    var ciphers: String?

    /// The listener with its TLS settings validated.
    func validated() throws(ConfigError) -> Listener {
        var result = listener
        let anyTLS =
            caFile != nil || caPath != nil || certFile != nil || keyFile != nil || crlFile != nil
            || requireCertificate != nil || useIdentityAsUsername != nil || useSubjectAsUsername != nil
            || tlsVersion != nil || ciphers != nil
        guard anyTLS else { return result }
        if listener.pskHint != nil {
            throw directive.error(
                .incompleteSection,
                "this listener has psk_hint and certificate options; a Sluice listener is either certificate or PSK TLS"
            )
        }
        guard let certFile, let keyFile else {
            let missing = [certFile == nil ? "certfile" : nil, keyFile == nil ? "keyfile" : nil].compactMap { $0 }
            throw directive.error(
                .incompleteSection,
                "this listener has TLS options but no \(missing.joined(separator: " or ")); TLS needs both certfile and keyfile"
            )
        }
        var tls = TLSSettings(certFile: certFile, keyFile: keyFile)
        tls.caFile = caFile
        tls.caPath = caPath
        tls.crlFile = crlFile
        tls.requireCertificate = requireCertificate ?? false
        tls.useIdentityAsUsername = useIdentityAsUsername ?? false
        tls.useSubjectAsUsername = useSubjectAsUsername ?? false
        tls.tlsVersion = tlsVersion ?? tls.tlsVersion
        tls.ciphers = ciphers
        if tls.requireCertificate && caFile == nil && caPath == nil {
            throw directive.error(
                .incompleteSection,
                "require_certificate true needs cafile or capath in this listener"
            )
        }
        if tls.useSubjectAsUsername && !tls.requireCertificate {
            // Without it no client certificate is asked for, and every client would be refused.
            throw directive.error(
                .incompleteSection,
                "use_subject_as_username true needs require_certificate true in this listener"
            )
        }
        result.tls = tls
        return result
    }
}

extension BridgeConfig {
    /// Characters allowed in a `connection` name: it is part of `$SYS` topics and store keys.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy {
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
            }
    }

    mutating func addAddresses(_ directive: Directive) throws(ConfigError) {
        guard !directive.values.isEmpty else { throw directive.error(.missingValue, "a value is required") }
        for word in directive.values {
            addresses.append(try directive.hostPort(word, defaultPort: 1883))
        }
    }

    /// Copies the Sluice queue options from `defaults` (the top-level values).
    mutating func adoptQueueSettings(from defaults: BridgeConfig) {
        queueMaxMessages = defaults.queueMaxMessages
        queueMaxBytes = defaults.queueMaxBytes
        queueMaxAge = defaults.queueMaxAge
        queueOverflow = defaults.queueOverflow
        maxInflight = defaults.maxInflight
        progressTimeout = defaults.progressTimeout
        maxAttempts = defaults.maxAttempts
        maxRate = defaults.maxRate
        maxByteRate = defaults.maxByteRate
    }

    /// Checks that need the whole section.
    func validate(at directive: Directive) throws(ConfigError) {
        if addresses.isEmpty { throw directive.error(.incompleteSection, "bridge '\(name)' has no address line") }
        if topics.isEmpty { throw directive.error(.incompleteSection, "bridge '\(name)' has no topic line") }
        if (bridgeCertFile == nil) != (bridgeKeyFile == nil) {
            throw directive.error(.incompleteSection, "bridge '\(name)' needs both bridge_certfile and bridge_keyfile")
        }
        if (bridgeIdentity == nil) != (bridgePSK == nil) {
            throw directive.error(.incompleteSection, "bridge '\(name)' needs both bridge_identity and bridge_psk")
        }
        if bridgeIdentity != nil && (bridgeCAFile != nil || bridgeCAPath != nil || bridgeCertFile != nil) {
            throw directive.error(
                .incompleteSection,
                "bridge '\(name)' sets both certificate and PSK encryption; only one can be used on a bridge (as in Mosquitto)"
            )
        }
        if !usesTLS && (bridgeCertFile != nil || bridgeInsecure || bridgeALPN != nil) {
            throw directive.error(
                .incompleteSection,
                "bridge '\(name)' sets TLS options but neither bridge_cafile nor bridge_capath"
            )
        }
    }
}

/// A hexadecimal key (`bridge_psk`, psk_file) as bytes; nil for anything else (odd length, other characters).
public func hexBytes(_ text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    for index in stride(from: 0, to: digits.count, by: 2) {
        guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
    }
    return bytes
}

private func hexValue(_ digit: UInt8) -> UInt8? {
    switch digit {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
    default: nil
    }
}
