import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The thread PBKDF2 runs on, started only when a password file is in use: a gateway without
/// one runs a thread fewer at idle (its stack and malloc arena; issue 17, idle RSS). Once
/// stopped it stays stopped, so a reload that races the shutdown cannot restart it.
final class HashingPool: Sendable {
    private enum State {
        case notStarted
        case running
        case stopped
    }

    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let state = NIOLockedValueBox(State.notStarted)

    /// True while the thread runs.
    var isRunning: Bool { state.withLockedValue { $0 == .running } }

    /// Starts the thread unless it runs already or the pool was stopped.
    func startIfNeeded() {
        state.withLockedValue { state in
            guard state == .notStarted else { return }
            pool.start()
            state = .running
        }
    }

    /// Runs `body` on the thread; fails with NIO's `ThreadPoolInactive` when it is not running.
    func run<Value: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable () -> Value) -> EventLoopFuture<Value>
    {
        pool.runIfActive(eventLoop: loop, body)
    }

    func shutdown() async {
        let wasRunning = state.withLockedValue { state in
            defer { state = .stopped }
            return state == .running
        }
        if wasRunning { try? await pool.shutdownGracefully() }
    }
}
