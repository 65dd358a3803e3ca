import SluiceAuth
import SluiceConfig

/// The password and ACL files a configuration names, read and parsed (libcrypto loaded for the password hashes):
/// what `sluice run` reads at start and on SIGHUP and `sluice check` reads the same way, so a file that would stop
/// `run` fails `check` with the same error, naming the file and line. Hashes nothing (no PBKDF2): cheap.
public struct SecurityFiles: Sendable {
    /// `password_file` above the listeners; nil: none.
    public var passwords: PasswordFile?
    /// The password file of each listener asked for (its own, else the global one; nil: none), by index.
    public var listenerPasswords: [Int: PasswordFile?] = [:]
    /// `acl_file`; nil: none.
    public var acl: AccessControlList?

    /// Reads the files `config` names, in `run`'s order (so the first error is `run`'s): the global password
    /// file, the ACL file, then the password file of each listener in `listeners` (see `ownListeners`). A file
    /// named more than once is read once.
    public init(loading config: GatewayConfig, listeners: some Sequence<Int>) throws(AuthError) {
        var read: [String: PasswordFile] = [:]
        func load(_ path: String?) throws(AuthError) -> PasswordFile? {
            guard let path else { return nil }
            if let file = read[path] { return file }
            let file = try PasswordFile.load(path: path)
            read[path] = file
            return file
        }
        passwords = try load(config.passwordFile)
        acl = try config.aclFile.map { path throws(AuthError) in try AccessControlList.load(path: path) }
        for index in listeners {
            listenerPasswords[index] = try load(config.authentication(forListener: index).passwordFile)
        }
    }

    /// The listeners with password files of their own: all of them with `per_listener_settings true`, else none.
    public static func ownListeners(_ config: GatewayConfig) -> Range<Int> {
        config.perListenerSettings ? config.listeners.indices : 0..<0
    }
}
