import SluiceBroker
import SluiceConfig
import SluiceStore

/// `queue_commit_window auto` on the broker loop: feeds `CommitHoldEstimator` with every durable publish
/// and its commit, so `DurableBatcher` can give each append the hold that waiting is expected to gain.
/// Loop-bound: every call comes from the broker loop.
final class CommitPacing {
    private var estimator = CommitHoldEstimator()
    /// Tokens whose publisher waits for their commit, and who that is.
    private var awaiting: [UInt64: String] = [:]
    private let clock: () -> UInt64

    init(clock: @escaping () -> UInt64 = monotonicNanoseconds) {
        self.clock = clock
    }

    /// A durable message went to at least one queue under `token`.
    func arrived(token: UInt64, message: SluiceBroker.Message) {
        // Broker-internal messages ($SYS, bridge `in`) have no publisher waiting; QoS 0 publishers never wait.
        let publisher = message.origin ?? ""
        let awaitsCommit = message.origin != nil && message.qos != .atMostOnce
        estimator.arrived(publisher: publisher, awaitsCommit: awaitsCommit, at: clock())
        if awaitsCommit { awaiting[token] = publisher }
    }

    /// The hold for the append being submitted now.
    func hold() -> Duration { estimator.hold(at: clock()) }

    /// The appends holding `tokens` completed (committed or failed): their publishers wait no more.
    func completed(_ tokens: some Sequence<UInt64>) {
        for token in tokens {
            if let publisher = awaiting.removeValue(forKey: token) { estimator.committed(publisher: publisher) }
        }
    }
}

@available(*, unavailable) extension CommitPacing: Sendable {}

extension QueueCommitWindow {
    /// The store's fixed commit window: zero under `auto` (holds come per append from `CommitPacing`).
    var fixedWindow: Duration {
        switch self {
        case .auto: return .zero
        case .milliseconds(let milliseconds): return .milliseconds(milliseconds)
        }
    }
}
