import SluiceAuth
import SluiceConfig

/// `local_password`: Mosquitto documents it as the password of the bridge's connection to the local broker,
/// so a wrong one would have that connection refused. Sluice's bridge has no local connection; the pair is
/// checked against password_file instead, by `sluice check` and at start (and SIGHUP), and a mismatch is a
/// configuration error on the `local_password` line rather than a bridge that silently runs as that user.
public enum BridgeLocalCredentials {
    /// One error per bridge whose `local_username`/`local_password` the password file refuses. Without a
    /// (global) password_file there is nothing to check against, as for any client. SLOW (PBKDF2).
    public static func problems(_ config: GatewayConfig, passwords: PasswordFile?) -> [ConfigError] {
        guard let passwords, let file = config.passwordFile else { return [] }
        return config.bridges.compactMap { bridge in
            guard let username = bridge.localUsername, let password = bridge.localPassword,
                let line = bridge.localPasswordLine
            else { return nil }
            guard passwords.usernames.contains(username) else {
                return line.error(
                    .badValue,
                    "local_username '\(username)' of bridge '\(bridge.name)' is not in password_file \(file)"
                )
            }
            guard passwords.verify(username: username, password: Array(password.utf8)) else {
                return line.error(
                    .badValue,
                    "password_file \(file) refuses this password for local_username '\(username)' of bridge '\(bridge.name)'"
                )
            }
            return nil
        }
    }

    /// `sluice check`: reads the password file only when a bridge sets `local_password`.
    public static func problems(_ config: GatewayConfig) -> [String] {
        guard config.bridges.contains(where: { $0.localPassword != nil }), let path = config.passwordFile else {
            return []
        }
        do {
            return problems(config, passwords: try PasswordFile.load(path: path)).map(\.description)
        } catch {
            return ["\(error)"]
        }
    }
}
