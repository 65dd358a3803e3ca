import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceAuth

/// Who may connect, with Mosquitto's rules: a TLS identity (`use_identity_as_username`) is
/// accepted as is; a client without a username needs `allow_anonymous`; a username is checked
/// against the password file when there is one. PBKDF2 runs on a thread pool, never on an event
/// loop. The password file can be replaced on SIGHUP.
final class Authenticator: Sendable {
    enum Decision: Sendable, Equatable {
        case accept
        case refuse(ReasonCode)
    }

    private let passwords: NIOLockedValueBox<PasswordFile?>
    private let allowAnonymous: Bool
    private let pool: HashingPool

    init(passwords: PasswordFile?, allowAnonymous: Bool, pool: HashingPool) {
        self.passwords = NIOLockedValueBox(passwords)
        self.allowAnonymous = allowAnonymous
        self.pool = pool
        if passwords != nil { pool.startIfNeeded() }
    }

    func replacePasswords(_ file: PasswordFile?) {
        if file != nil { pool.startIfNeeded() }
        passwords.withLockedValue { $0 = file }
    }

    /// Decides at once when no hashing is needed; otherwise hashes on the pool and completes on `loop`.
    func authenticate(
        _ connect: ConnectPacket,
        identityVerified: Bool,
        on loop: any EventLoop
    ) -> EventLoopFuture<Decision> {
        if identityVerified { return loop.makeSucceededFuture(.accept) }
        guard let username = connect.username else {
            return loop.makeSucceededFuture(allowAnonymous ? .accept : .refuse(.notAuthorized))
        }
        guard let file = passwords.withLockedValue({ $0 }) else {
            // Without a password file Mosquitto takes usernames at their word, if anonymous access is on.
            return loop.makeSucceededFuture(allowAnonymous ? .accept : .refuse(.notAuthorized))
        }
        let password = connect.password ?? []
        return pool.run(on: loop) {
            file.verify(username: username, password: password) ? .accept : .refuse(.badUserNameOrPassword)
        }
    }
}
