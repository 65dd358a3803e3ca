import MQTTCore
import NIOCore
import NIOPosix
import SluiceAuth
import Testing

@testable import SluiceServer

/// The password-hashing thread starts only when a password file needs it (issue 17, idle RSS).
@Suite struct HashingPoolTests {
    private func connect(_ username: String?, _ password: String?) -> ConnectPacket {
        ConnectPacket(
            protocolVersion: .v5,
            clientIdentifier: "c",
            username: username,
            password: password.map { Array($0.utf8) }
        )
    }

    private func passwords() throws -> PasswordFile {
        try PasswordFile.parse(try PasswordFile.hashLine(username: "alice", password: "secret"), fileName: "pw")
    }

    @Test func withoutPasswordFileNoThreadStartsAndUsernamesNeedNoHashing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = HashingPool()
        let authenticator = Authenticator(passwords: nil, allowAnonymous: true, pool: pool)
        #expect(!pool.isRunning)
        let decision = try await authenticator.authenticate(
            connect("bob", "x"),
            identityVerified: false,
            on: group.next()
        ).get()
        #expect(decision == .accept)
        #expect(!pool.isRunning)
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aPasswordFileAtStartStartsTheThreadAndChecksPasswords() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = HashingPool()
        let authenticator = Authenticator(passwords: try passwords(), allowAnonymous: false, pool: pool)
        #expect(pool.isRunning)
        let loop = group.next()
        #expect(
            try await authenticator.authenticate(connect("alice", "secret"), identityVerified: false, on: loop).get()
                == .accept
        )
        #expect(
            try await authenticator.authenticate(connect("alice", "wrong"), identityVerified: false, on: loop).get()
                == .refuse(.badUserNameOrPassword)
        )
        await pool.shutdown()
        #expect(!pool.isRunning)
        try await group.shutdownGracefully()
    }

    @Test func aPasswordFileAddedByReloadStartsTheThread() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = HashingPool()
        let authenticator = Authenticator(passwords: nil, allowAnonymous: false, pool: pool)
        authenticator.replacePasswords(nil)
        #expect(!pool.isRunning)
        authenticator.replacePasswords(try passwords())
        #expect(pool.isRunning)
        pool.startIfNeeded()  // a second start is a no-op
        #expect(
            try await authenticator.authenticate(connect("alice", "secret"), identityVerified: false, on: group.next())
                .get() == .accept
        )
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aStoppedPoolStaysStoppedAndRefusesWork() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = HashingPool()
        await pool.shutdown()  // never started: nothing to join
        pool.startIfNeeded()  // e.g. a reload racing the shutdown
        #expect(!pool.isRunning)
        await #expect(throws: (any Error).self) { try await pool.run(on: group.next()) { 1 }.get() }
        try await group.shutdownGracefully()
    }
}
