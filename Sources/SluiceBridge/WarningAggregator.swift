/// Repeated warnings, summarised: the first of a kind is logged at once, the rest are counted and
/// reported as one line ("N PUBACKs for unknown packet ids in the last 60 s") once the period ends.
/// A central that misbehaves on every message then costs a line a minute, not a line a message.
public struct WarningAggregator<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    private struct Pending: Sendable {
        var count: Int
        var since: Instant?
        var summary: String
    }

    public let period: Duration
    private var pending: [String: Pending] = [:]

    public init(period: Duration = .seconds(60)) {
        self.period = period
    }

    /// Records one occurrence of `key`. Returns `first` when the warning should be logged now (the
    /// first in its period); later ones are counted under `summary`, a phrase for "N <summary>".
    public mutating func note(_ key: String, now: Instant?, first: String, summary: String) -> String? {
        if var entry = pending[key] {
            entry.count += 1
            entry.summary = summary
            pending[key] = entry
            return nil
        }
        pending[key] = Pending(count: 0, since: now, summary: summary)
        return first
    }

    /// The summaries of periods that have ended, sorted by key; those keys start afresh.
    public mutating func flush(now: Instant) -> [String] {
        var lines: [String] = []
        let seconds = period.components.seconds
        for key in pending.keys.sorted() {
            guard var entry = pending[key] else { continue }
            guard let since = entry.since else {
                entry.since = now
                pending[key] = entry
                continue
            }
            guard since.duration(to: now) >= period else { continue }
            if entry.count > 0 { lines.append("\(entry.count) \(entry.summary) in the last \(seconds) s") }
            pending[key] = nil
        }
        return lines
    }
}
