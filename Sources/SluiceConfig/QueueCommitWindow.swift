/// `queue_commit_window auto | MILLISECONDS` (Sluice addition): how long a bridge queue append waits for
/// others to share its commit (and its two device flushes).
public enum QueueCommitWindow: Sendable, Hashable {
    /// The default: an append waits a short hold only while other publishers, not waiting on a PUBACK of
    /// their own, are expected to send within it (see `CommitHoldEstimator`); a lone or closed-loop
    /// publisher never waits. Broker-state saves never wait.
    case auto
    /// A fixed window for every write, broker-state saves included; 0 commits every write at once.
    case milliseconds(Int)

    /// The largest fixed window accepted.
    public static let maximumMilliseconds = 10_000
}

extension Directive {
    func queueCommitWindow() throws(ConfigError) -> QueueCommitWindow {
        let word = try singleToken()
        if word == "auto" { return .auto }
        guard let milliseconds = Int(word), (0...QueueCommitWindow.maximumMilliseconds).contains(milliseconds) else {
            throw error(
                .badValue,
                "expected auto or milliseconds from 0 to \(QueueCommitWindow.maximumMilliseconds), got '\(word)'"
            )
        }
        return .milliseconds(milliseconds)
    }
}
