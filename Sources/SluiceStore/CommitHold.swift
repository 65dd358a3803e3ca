#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Decides, for `queue_commit_window auto`, whether an append should wait for company (issue 15).
///
/// Every commit costs LMDB two or three pages and two device flushes, whatever it holds, so at the rates
/// gateways run at (sensors publishing every so often, each at its own phase) sharing commits is what saves
/// the flash. Waiting only gains when someone else is expected to publish during the wait: the publishers
/// seen recently that are NOT waiting on a PUBACK of their own (open-loop sensors). A publisher that waits
/// for its PUBACK before sending again (closed loop, or one whose in-flight window is full) would only be
/// slowed by a hold, and a lone sensor has nobody to share with. A publisher seen with two or more messages
/// awaiting their commit in the last `recentWindow` is paced by its PUBACKs (an in-flight window) and does
/// not count either: a sensor at 10 msg/s never has two awaiting a 20 ms hold. So the hold is `autoHold` when
/// (summed arrival rate of the idle recent publishers) × `autoHold` ≥ 1, else zero.
///
/// Pure: the caller (the broker loop, which sees every durable publish) passes the time of each event in
/// monotonic nanoseconds; nothing here reads a clock.
public struct CommitHoldEstimator: Sendable {
    /// The hold an append gets when waiting is expected to gain (at most 25 ms, so a PUBACK is late by at
    /// most that; 20 ms gathers ~4 messages per commit at 200 msg/s).
    public static let autoHold: Duration = .milliseconds(20)

    /// How long a publisher counts as active after its last message: at least `recentWindow`, and for a
    /// slow publisher three of its mean intervals (capped), so that many slow sensors still add up.
    public static let recentWindow: UInt64 = 1_000_000_000
    static let slowPublisherHorizonCap: UInt64 = 60_000_000_000
    /// Weight of the newest interval in the mean (EWMA).
    static let smoothing = 0.3

    struct Publisher {
        var lastArrival: UInt64
        /// Mean interval between messages, nanoseconds; nil until the second message.
        var meanInterval: Double?
        /// Messages whose publisher waits for their commit (QoS 1/2) and that are not yet committed.
        var awaitingCommit = 0
        /// Until when it counts as paced by its PUBACKs: it had several messages awaiting commit at once (an
        /// in-flight window), so its next messages follow our commits and waiting for them gains nothing that
        /// group commit does not already give.
        var pacedUntil: UInt64 = 0

        /// Messages per second; 0 until the second message.
        var rate: Double { meanInterval.map { $0 > 0 ? 1e9 / $0 : 0 } ?? 0 }

        /// Until its second message a publisher has no rate, but is kept (up to the cap) so that it gets one.
        var horizon: UInt64 {
            let cap = CommitHoldEstimator.slowPublisherHorizonCap
            guard let meanInterval else { return cap }
            return max(CommitHoldEstimator.recentWindow, UInt64(min(3 * meanInterval, Double(cap))))
        }
    }

    private var publishers: [String: Publisher] = [:]
    private var lastPrune: UInt64 = 0
    public let hold: Duration
    private let holdNanoseconds: Double

    public init(hold: Duration = CommitHoldEstimator.autoHold) {
        self.hold = hold
        let (seconds, attoseconds) = hold.components
        holdNanoseconds = Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }

    /// Publishers being tracked (bounded: idle ones are forgotten after their horizon).
    public var trackedPublishers: Int { publishers.count }

    /// A durable message from `publisher` arrived at `now`; `awaitsCommit` when its publisher gets a PUBACK
    /// (or PUBREC) only after the commit, i.e. until `committed(publisher:)` is called for it.
    public mutating func arrived(publisher: String, awaitsCommit: Bool, at now: UInt64) {
        prune(at: now)
        var entry = publishers[publisher] ?? Publisher(lastArrival: now)
        if now > entry.lastArrival {
            let interval = Double(now - entry.lastArrival)
            entry.meanInterval = entry.meanInterval.map { $0 + Self.smoothing * (interval - $0) } ?? interval
        }
        entry.lastArrival = now
        if awaitsCommit { entry.awaitingCommit += 1 }
        if entry.awaitingCommit >= 2 { entry.pacedUntil = now &+ Self.recentWindow }
        publishers[publisher] = entry
    }

    /// A message counted by `arrived(publisher:awaitsCommit: true, ...)` was committed (or failed).
    public mutating func committed(publisher: String) {
        guard var entry = publishers[publisher], entry.awaitingCommit > 0 else { return }
        entry.awaitingCommit -= 1
        publishers[publisher] = entry
    }

    /// The hold for an append submitted at `now`: `hold` when the idle active publishers are expected to
    /// send at least one message within it, else zero.
    public func hold(at now: UInt64) -> Duration {
        var expected = 0.0
        for entry in publishers.values where entry.awaitingCommit == 0 && now >= entry.pacedUntil {
            guard now &- entry.lastArrival <= entry.horizon || entry.lastArrival > now else { continue }
            expected += entry.rate * holdNanoseconds / 1e9
            if expected >= 1 { return hold }
        }
        return .zero
    }

    /// Forgets publishers silent past their horizon that wait for nothing (at most once per `recentWindow`).
    private mutating func prune(at now: UInt64) {
        guard now &- lastPrune >= Self.recentWindow else { return }
        lastPrune = now
        publishers = publishers.filter { _, entry in
            entry.awaitingCommit > 0 || entry.lastArrival > now || now - entry.lastArrival <= entry.horizon
        }
    }
}

/// When the writer of a batch whose eager operations carry holds may commit: at the earliest
/// (submission + hold) among them, or at once if one of them has no hold.
struct HoldDeadline: Sendable, Equatable {
    /// Eager operations pending with no hold: the batch commits now.
    private(set) var unheld = 0
    /// The earliest (submission + hold), monotonic nanoseconds, among held eager operations.
    private(set) var earliest: UInt64?

    /// An eager operation was submitted at `now` with `hold` (nil or zero: commit at once).
    mutating func add(hold: Duration?, at now: UInt64) {
        guard let hold, hold > .zero else {
            unheld += 1
            return
        }
        let due = now &+ hold.nanoseconds
        earliest = min(earliest ?? due, due)
    }

    /// Nil: commit now; otherwise the moment to commit by (monotonic nanoseconds).
    var commitBy: UInt64? { unheld > 0 ? nil : earliest }

    /// Whether the batch may wait at `now`.
    func mayWait(at now: UInt64) -> Bool {
        guard let commitBy else { return false }
        return now < commitBy
    }
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : whole &+ UInt64(attoseconds / 1_000_000_000)
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC), the clock of `CommitHoldEstimator` and the writer's holds.
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
