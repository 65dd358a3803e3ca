import SluiceAuth
import SluiceConfig

/// `local_password`: Mosquitto documents it as the password of the bridge's connection to the local broker,
/// but 2.0 never checks it (its bridge has no real local connection either), so a mosquitto.conf with a stale
/// one runs. Sluice runs it too, and says so: `sluice check`, the start and SIGHUP warn, naming the
/// `local_password` line, when password_file refuses the pair. The bridge still acts as local_username.
public enum BridgeLocalCredentials {
    /// One warning per bridge whose `local_username`/`local_password` the password file refuses. Without a
    /// (global) password_file there is nothing to check against, as for any client. SLOW (PBKDF2).
    public static func warnings(_ config: GatewayConfig, passwords: PasswordFile?) -> [String] {
        guard let passwords, let file = config.passwordFile else { return [] }
        let refusals: [ConfigError] = config.bridges.compactMap { bridge in
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
        return refusals.map { "\($0) (Mosquitto does not check it either: the bridge still acts as that user)" }
    }
}
