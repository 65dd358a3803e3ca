// The bridge keys about its socket and its local side (`bridge_bind_address`, `local_clientid`,
// `local_password`, `local_cleansession`): how their values are read. Sluice's bridge has no local MQTT
// client; these keys give its local side the identity Mosquitto's local connection would have.

#if canImport(Glibc)
    import Glibc
#endif

/// A line of the configuration, for errors found after parsing (e.g. `local_password` checked against
/// password_file at start).
public struct ConfigLine: Sendable, Equatable {
    public var file: String
    public var line: Int
    public var key: String

    init(_ directive: Directive) {
        file = directive.file
        line = directive.line
        key = directive.key
    }

    public func error(_ kind: ConfigError.Kind, _ message: String) -> ConfigError {
        ConfigError(kind, file: file, line: line, key: key, message)
    }

    func notice(_ message: String) -> ConfigNotice {
        ConfigNotice(file: file, line: line, key: key, message: message)
    }

    /// Equal whatever the line: where a key is written is not a setting, so a SIGHUP after lines
    /// moved reports no bridge setting as changed.
    public static func == (a: ConfigLine, b: ConfigLine) -> Bool { a.key == b.key }
}

extension Directive {
    /// `bridge_bind_address`: an IPv4 or IPv6 address (mosquitto.conf(5): "ip address").
    func ipAddress() throws(ConfigError) -> String {
        let address = try singleToken()
        guard IPAddressText.isIPv4(address) || IPAddressText.isIPv6(address) else {
            throw error(.badValue, "expected an IPv4 or IPv6 address of this machine, got '\(address)'")
        }
        return address
    }

    /// `local_clientid`: an MQTT client id, 1 to 65535 bytes without NUL (the id Mosquitto's local side takes).
    func clientID() throws(ConfigError) -> String {
        let id = try singleString()
        guard (1...65535).contains(id.utf8.count), !id.contains("\u{0}") else {
            throw error(.badValue, "a client id is 1 to 65535 bytes without NUL")
        }
        return id
    }
}

/// IP address literals, as inet_pton(3) reads them.
public enum IPAddressText {
    public static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    public static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }
}

extension BridgeConfig {
    /// `local_cleansession`: what it means for Sluice. Mosquitto's local session holds the bridge's local
    /// subscriptions and, when not clean, the messages queued for the remote across a restart. Sluice's
    /// queue is on disk and always kept: that is `false`; `true` is accepted with a notice saying so.
    static let localCleanSessionNotice =
        "the bridge's out messages wait in its durable queue, kept across restarts as with local_cleansession false (to discard them run 'sluice queue purge NAME --yes')"

    /// Checks of the local side that need the whole section.
    func validateLocalSide() throws(ConfigError) {
        if let line = localPasswordLine, localUsername == nil {
            throw line.error(
                .incompleteSection,
                "bridge '\(name)' sets local_password without local_username; the password belongs to that user"
            )
        }
    }
}
