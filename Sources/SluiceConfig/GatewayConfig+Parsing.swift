// Reading gateway.conf: the lexer turns text into directives, `Builder` applies each directive
// through `KeyRule.table` to the section it belongs to, and `finish` validates whole sections and
// fills in defaults. Nothing is half-applied: a parse either returns a whole config or throws.

#if canImport(Glibc)
    import Glibc
#endif

extension GatewayConfig {
    /// Reads and validates the file at `path` (and any `include_dir` files). Errors name `path` as given.
    public static func load(path: String) throws(ConfigError) -> GatewayConfig {
        try parse(try Lexer.readFile(path, from: nil), fileName: path)
    }

    /// Validates configuration text; `fileName` is used in error messages. `include_dir` and the
    /// files named by the configuration (password_file, cafile…) are looked up on disk, relative
    /// paths against the current directory (as Mosquitto does).
    public static func parse(_ text: String, fileName: String) throws(ConfigError) -> GatewayConfig {
        var builder = Builder()
        for directive in try Lexer.directives(in: text, fileName: fileName) {
            try builder.apply(directive)
        }
        return try builder.finish()
    }

    /// What `sluice check` reports: every line's error rather than only the first (Mosquitto stops at
    /// the first), and the config with its notices when there is none.
    public struct Diagnosis: Sendable {
        public var config: GatewayConfig?
        public var errors: [ConfigError]
        /// Accepted-but-not-honoured keys, reported even when there are errors.
        public var notices: [ConfigNotice]
    }

    /// Reads the file at `path` like `load`, but carries on after a line's error to report them all.
    public static func diagnose(path: String) -> Diagnosis {
        let directives: [Directive]
        do {
            directives = try Lexer.directives(in: try Lexer.readFile(path, from: nil), fileName: path)
        } catch {
            return Diagnosis(config: nil, errors: [error], notices: [])
        }
        var builder = Builder()
        var errors: [ConfigError] = []
        for directive in directives {
            do { try builder.apply(directive) } catch { errors.append(error) }
        }
        guard errors.isEmpty else { return Diagnosis(config: nil, errors: errors, notices: builder.notices) }
        do {
            let config = try builder.finish()
            return Diagnosis(config: config, errors: [], notices: config.notices)
        } catch {
            return Diagnosis(config: nil, errors: [error], notices: builder.notices)
        }
    }
}

private struct Builder {
    private enum Section {
        case top
        case listener
        case bridge
    }

    private struct BridgeDraft {
        var bridge: BridgeConfig
        var directive: Directive
        /// Queue options written in this section; they override the top-level defaults.
        var queueOverrides: [Directive] = []
    }

    private var config: GatewayConfig
    private var listeners: [ListenerDraft] = []
    private var bridges: [BridgeDraft] = []
    /// Holds the top-level defaults of the per-bridge queue options.
    private var bridgeDefaults = BridgeConfig(name: "")
    /// The most recent section line, for keys that are global or per-section.
    private var section = Section.top
    /// `port`/`bind_address` (Mosquitto's default listener), nil when neither is written.
    private var defaultListener: ListenerDraft?
    /// Listener keys before the first `listener` line: the default listener's, as in Mosquitto.
    private var defaultListenerKeys: [Directive] = []
    /// `allow_anonymous`/`password_file`/`acl_file` written inside a listener section, with that
    /// listener's index: they apply to every listener, which `finish` points out.
    private var securityKeysInListeners: [(directive: Directive, listener: Int)] = []
    /// The security keys written outside listener sections, for `per_listener_settings true`.
    private var topLevelSecurity = GatewayConfig()

    var notices: [ConfigNotice] { config.notices }

    init() {
        config = GatewayConfig()
        config.listeners = []
        config.logTypes = []
    }

    mutating func apply(_ d: Directive) throws(ConfigError) {
        guard let rule = KeyRule.rule(for: d.key) else {
            throw d.error(.unknownKey, "unknown key (check the spelling; see gateway.conf.example for every key)")
        }
        switch rule {
        case .section where d.key == "listener":
            try openListener(d)
        case .section:
            try openBridge(d)
        case .global(let apply):
            try apply(&config, d)
            if Self.securityKeys.contains(d.key) {
                // With per_listener_settings true, `finish` keeps only the top-level lines global and
                // gives each listener its own.
                if section == .listener {
                    securityKeysInListeners.append((d, listeners.count - 1))
                } else {
                    try apply(&topLevelSecurity, d)
                }
            }
        case .defaultListener(let apply):
            var draft = defaultListener ?? ListenerDraft(listener: Listener(port: 1883), directive: d)
            try apply(&draft, d)
            defaultListener = draft
        case .listener(let apply):
            guard !listeners.isEmpty else {
                // `finish` applies it to the default listener, or says a listener line is missing.
                defaultListenerKeys.append(d)
                return
            }
            try apply(&listeners[listeners.count - 1], d)
        case .listenerOrGlobal(let listener, let global):
            if section == .listener {
                try listener(&listeners[listeners.count - 1], d)
            } else {
                try global(&config, d)
            }
        case .bridge(let apply):
            guard !bridges.isEmpty else {
                throw d.error(
                    .bridgeKeyOutsideConnection,
                    "this key belongs to a bridge: write a 'connection NAME' line first"
                )
            }
            try apply(&bridges[bridges.count - 1].bridge, d)
        case .bridgeDefault(let apply):
            if section == .bridge {
                // Applied now so errors come in file order; `finish` replays it over the top-level defaults.
                try apply(&bridges[bridges.count - 1].bridge, d)
                bridges[bridges.count - 1].queueOverrides.append(d)
            } else {
                try apply(&bridgeDefaults, d)
            }
        case .ignored(let reason):
            config.notices.append(.notHonoured(d, reason: reason))
        case .unsupported(let why):
            throw d.unsupported(why)
        }
    }

    private mutating func openListener(_ d: Directive) throws(ConfigError) {
        let words = try d.tokens(min: 1, max: 2)
        let port = try Directive.int(words[0], 0...65535, d)
        let listener = Listener(port: port, address: words.count == 2 ? words[1] : nil)
        if port != 0,
            let earlier = listeners.first(where: { $0.listener.port == port && $0.listener.address == listener.address }
            )
        {
            throw d.error(
                .duplicateListener,
                "port \(port) on \(listener.address ?? "all interfaces") is already a listener at \(earlier.directive.file):\(earlier.directive.line)"
            )
        }
        listeners.append(ListenerDraft(listener: listener, directive: d))
        section = .listener
    }

    private mutating func openBridge(_ d: Directive) throws(ConfigError) {
        let name = try d.singleToken()
        guard BridgeConfig.isValidName(name) else {
            throw d.error(.badValue, "a connection name is 1 to 64 letters, digits, '.', '_' or '-', got '\(name)'")
        }
        if let earlier = bridges.first(where: { $0.bridge.name == name }) {
            throw d.error(
                .duplicateConnection,
                "connection '\(name)' is already defined at \(earlier.directive.file):\(earlier.directive.line)"
            )
        }
        bridges.append(BridgeDraft(bridge: BridgeConfig(name: name), directive: d))
        section = .bridge
    }

    static let securityKeys: Set<String> = ["allow_anonymous", "password_file", "acl_file"]

    func finish() throws(ConfigError) -> GatewayConfig {
        var result = config
        if result.logTypes.isEmpty { result.logTypes = GatewayConfig.defaultLogTypes }
        result.listeners = []
        var drafts = listeners
        if var draft = defaultListener {
            for d in defaultListenerKeys {
                if case .listener(let apply) = KeyRule.table[d.key] { try apply(&draft, d) }
            }
            if let twin = listeners.first(where: {
                $0.listener.port == draft.listener.port && $0.listener.address == draft.listener.address
            }) {
                throw twin.directive.error(
                    .duplicateListener,
                    "port \(draft.listener.port) on \(draft.listener.address ?? "all interfaces") is already the default listener ('port'/'bind_address' at \(draft.directive.file):\(draft.directive.line))"
                )
            }
            drafts.insert(draft, at: 0)
        } else if let first = defaultListenerKeys.first {
            throw first.error(
                .listenerKeyOutsideListener,
                "this key belongs to a listener: write a 'listener PORT' line (or Mosquitto's 'port PORT') first"
            )
        }
        for draft in drafts { result.listeners.append(try draft.validated()) }
        if result.listeners.isEmpty { result.listeners = [GatewayConfig.defaultListener] }
        let offset = defaultListener == nil ? 0 : 1
        if result.perListenerSettings {
            result.allowAnonymous = topLevelSecurity.allowAnonymous
            result.passwordFile = topLevelSecurity.passwordFile
        }
        for (d, index) in securityKeysInListeners where result.perListenerSettings {
            guard case .global(let apply) = KeyRule.table[d.key] else { continue }
            if d.key == "acl_file" {
                throw d.unsupported(
                    "an ACL file per listener is not implemented; with per_listener_settings true only allow_anonymous and password_file are per listener (write one acl_file above the first listener: it applies to every listener)"
                )
            }
            var own = GatewayConfig()
            try apply(&own, d)
            if let allow = own.allowAnonymous { result.listeners[index + offset].allowAnonymous = allow }
            if let file = own.passwordFile { result.listeners[index + offset].passwordFile = file }
        }
        if result.listeners.count > 1 && !result.perListenerSettings {
            for (d, index) in securityKeysInListeners {
                let others = result.listeners.enumerated().filter { $0.offset != index + offset }.map {
                    $0.element.name
                }
                result.notices.append(
                    ConfigNotice(
                        file: d.file,
                        line: d.line,
                        key: d.key,
                        message:
                            "written in the section of listener \(result.listeners[index + offset].name) but applies to every listener, also \(others.joined(separator: ", ")) (per_listener_settings is false, as Mosquitto's default; move the line above the first listener to make that plain)"
                    )
                )
            }
        }
        for draft in bridges {
            var bridge = draft.bridge
            bridge.adoptQueueSettings(from: bridgeDefaults)
            for d in draft.queueOverrides {
                if case .bridgeDefault(let apply) = KeyRule.table[d.key] { try apply(&bridge, d) }
            }
            try bridge.validate(at: draft.directive)
            try bridge.validateLocalSide()
            if bridge.localCleanSession == true, let line = bridge.localCleanSessionLine {
                result.notices.append(line.notice("accepted but not honoured: \(BridgeConfig.localCleanSessionNotice)"))
            }
            result.bridges.append(bridge)
        }
        return result
    }
}

extension GatewayConfig {
    /// The Mosquitto keys gateway.conf accepts and ignores, each with why that is harmless on a
    /// gateway (so `sluice check` can say what it skipped).
    public static let ignoredKeys: [String: String] = KeyRule.table.compactMapValues { rule in
        if case .ignored(let reason) = rule { reason } else { nil }
    }

    /// How gateway.conf answers one key, for `sluice check --list-keys` and docs/mosquitto-keys.md.
    public struct KeyAnswer: Sendable, Equatable {
        public enum Status: String, Sendable {
            case honoured
            case ignored = "accepted, not honoured"
            case refused
        }

        public var key: String
        public var status: Status
        /// Why a key is ignored or refused; empty for honoured keys.
        public var note: String
    }

    /// Every key of the table, sorted, with the prefix families (`auth_opt_*`, `plugin_opt_*`).
    public static var keyAnswers: [KeyAnswer] {
        let entries =
            KeyRule.table.map { ($0.key, $0.value) } + KeyRule.prefixRules.map { ($0.prefix + "*", $0.rule) }
            + [("include_dir", KeyRule.section)]
        return entries.map { key, rule in
            switch rule {
            case .ignored(let reason): KeyAnswer(key: key, status: .ignored, note: reason)
            case .unsupported(let why): KeyAnswer(key: key, status: .refused, note: why)
            default: KeyAnswer(key: key, status: .honoured, note: KeyRule.notes[key] ?? "")
            }
        }.sorted { $0.key < $1.key }
    }
}

extension KeyRule {
    /// Key families Mosquitto documents with a wildcard.
    static let prefixRules: [(prefix: String, rule: KeyRule)] = [
        (
            "auth_opt_",
            .unsupported(
                "options of an authentication plugin, and Sluice cannot load Mosquitto's C plugins (use password_file and acl_file)"
            )
        ),
        (
            "plugin_opt_",
            .unsupported(
                "options of a plugin, and Sluice cannot load Mosquitto's C plugins (use password_file and acl_file)"
            )
        ),
    ]

    /// Honoured keys whose values Sluice restricts: shown in the key list beside "honoured".
    static let notes: [String: String] = [
        "psk_hint":
            "a listener is either certificate or PSK TLS (TLS 1.2 PSK suites); use_identity_as_username does not apply to PSK",
        "crlfile":
            "each list's signature must verify against a CA of cafile/capath; intermediates are checked too when their issuer has a list",
        "local_username":
            "checked against acl_file as client id local_clientid; a denied in message is acknowledged to the central and dropped",
        "start_type": "lazy counts the messages in the bridge's disk queue against threshold",
        "bridge_outgoing_retain":
            "false also clears the retain flag of the remote notification \"1\", as Mosquitto does; its will \"0\" stays retained",
        "bridge_attempt_unsubscribe":
            "at each connect one UNSUBSCRIBE for the remote topics of out rules that no in/both rule subscribes",
        "bridge_bind_address":
            "an IPv4 or IPv6 address, not a host name; the remote is reached in the same address family",
        "local_clientid":
            "the bridge's local side's client id: for acl_file %c patterns (with local_username) and its log lines; default local.<remote_clientid>",
        "local_password":
            "checked with local_username against password_file by sluice check, at start and on SIGHUP: a wrong one is a warning (Mosquitto 2.0 does not check it)",
        "local_cleansession":
            "false is what Sluice does (its queue is durable); true is accepted with a notice saying so",
        "upgrade_outgoing_qos":
            "global, as in Mosquitto 2.0 (valid anywhere, also in a connection section); local subscribers only: bridge queues stay QoS 1",
        "notifications_local_only": "false (the default) only",
        "bridge_require_ocsp": "false (the default) only",
        "check_retain_source":
            "default false, as Mosquitto 2.0.11 behaves (its man page says true); needs acl_file; retained messages saved before their publisher was kept (record version 2) are not checked",
        "memory_limit": "0 (the default, no bound) only",
        "tls_keyform": "pem (the default) only",
        "per_listener_settings": "true makes allow_anonymous and password_file per listener; acl_file stays global",
        "log_timestamp": "never on stderr under systemd (the journal stamps each line); default stamp ISO 8601 UTC",
        "log_timestamp_format":
            "strftime(3) in local time, then ': ' as Mosquitto; applied at start (SIGHUP does not change it)",
        "set_tcp_nodelay": "Sluice always sets TCP_NODELAY: true is honoured, false draws a notice",
        "use_subject_as_username":
            "the subject as `openssl x509 -nameopt RFC2253` prints it (Mosquitto's form); needs require_certificate",
        "use_username_as_clientid":
            "per listener, as in Mosquitto (before the first listener: the port/bind_address listener's)",
    ]

    static func rule(for key: String) -> KeyRule? {
        if let rule = table[key] { return rule }
        return prefixRules.first { key.hasPrefix($0.prefix) && key.count > $0.prefix.count }?.rule
    }
}
