// Note on saving broker state when the store fails:
// - A change set whose save failed is never dropped: it is kept, and the next attempt writes it
//   ahead of anything newer (saves are puts and deletes applied in order, so replaying them is
//   exact). Attempts back off from 1 s, doubling to 30 s, until one commits.
// - While saves fail and the next attempt is not due, what waits for a save (a QoS 1/2 publish that
//   changed retained messages or a persistent session, a persistent SUBACK) is answered at once with
//   the last failure instead of hanging up to 30 s: MQTT 5 publishers get a failure code, 3.1/3.1.1
//   publishers are disconnected and resend (see `AcknowledgementDecision`). The changes themselves
//   join the ones kept for the retry, so the broker's state still reaches the disk.

/// Decides when broker state is saved, and keeps what could not be saved. Pure: its owner takes the
/// changes from the broker, runs the saves, keeps the time.
public struct StateSaver: Sendable {
    /// What to do with the changes just taken.
    public enum Step: Sendable {
        /// Nothing to write: the waiting acknowledgements may go out as committed.
        case nothing
        /// Write these change sets, in order, in one transaction.
        case save([PendingChanges])
        /// Saves are failing and the retry is not due: answer the waiting acknowledgements with this
        /// outcome now. The changes are kept for the retry.
        case answerNow(CommitOutcome)
    }

    public static let firstRetryDelay: BrokerTime = 1_000
    public static let maximumRetryDelay: BrokerTime = 30_000

    private var unsaved: [PendingChanges] = []
    /// How the last save failed; nil while saves commit.
    public private(set) var failure: CommitOutcome?
    public private(set) var failedAttempts = 0
    private var retryDelay = StateSaver.firstRetryDelay
    private var retryDue = true

    public init() {}

    /// Change sets kept because their save failed (for tests and logs).
    public var unsavedCount: Int { unsaved.count }

    /// `changes` were just taken from the broker (their acknowledgements stay with the caller).
    /// `force`: save now whatever the backoff says (at shutdown).
    public mutating func next(_ changes: PendingChanges, force: Bool = false) -> Step {
        if let failure, !force, !retryDue {
            if !changes.isEmpty { unsaved.append(changes) }
            return .answerNow(failure)
        }
        var batch = unsaved
        unsaved = []
        if !changes.isEmpty { batch.append(changes) }
        return batch.isEmpty ? .nothing : .save(batch)
    }

    /// The save of `batch` (from `.save`) ended with `outcome`. Returns the delay in milliseconds
    /// after which to call `retryIsDue()` and save again, when it failed.
    public mutating func finished(_ batch: [PendingChanges], _ outcome: CommitOutcome) -> BrokerTime? {
        if outcome.isCommitted {
            failure = nil
            failedAttempts = 0
            retryDelay = Self.firstRetryDelay
            return nil
        }
        unsaved = batch + unsaved  // oldest first
        failure = outcome
        failedAttempts += 1
        retryDue = false
        defer { retryDelay = min(retryDelay * 2, Self.maximumRetryDelay) }
        return retryDelay
    }

    public mutating func retryIsDue() {
        retryDue = true
    }
}
