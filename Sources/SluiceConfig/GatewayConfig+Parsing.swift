// Reading gateway.conf: the lexer turns text into directives, `Builder` applies each directive
// through `KeyRule.table` to the section it belongs to, and `finish` validates whole sections and
// fills in defaults. Nothing is half-applied: a parse either returns a whole config or throws.

import Foundation

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

    init() {
        config = GatewayConfig()
        config.listeners = []
        config.logTypes = []
    }

    mutating func apply(_ d: Directive) throws(ConfigError) {
        guard let rule = KeyRule.table[d.key] else {
            throw d.error(.unknownKey, "unknown key (check the spelling; see gateway.conf.example for every key)")
        }
        switch rule {
        case .section where d.key == "listener":
            try openListener(d)
        case .section:
            try openBridge(d)
        case .global(let apply):
            try apply(&config, d)
        case .listener(let apply):
            guard !listeners.isEmpty else {
                throw d.error(
                    .listenerKeyOutsideListener,
                    "this key belongs to a listener: write a 'listener PORT' line first"
                )
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
        case .ignored:
            break
        case .unsupported(let hint):
            throw d.error(.unsupportedKey, hint)
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

    func finish() throws(ConfigError) -> GatewayConfig {
        var result = config
        if result.logTypes.isEmpty { result.logTypes = GatewayConfig.defaultLogTypes }
        result.listeners = []
        for draft in listeners { result.listeners.append(try draft.validated()) }
        if result.listeners.isEmpty { result.listeners = [GatewayConfig.defaultListener] }
        for draft in bridges {
            var bridge = draft.bridge
            bridge.adoptQueueSettings(from: bridgeDefaults)
            for d in draft.queueOverrides {
                if case .bridgeDefault(let apply) = KeyRule.table[d.key] { try apply(&bridge, d) }
            }
            try bridge.validate(at: draft.directive)
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
}
