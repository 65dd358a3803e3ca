/// The per-second rate of a counter that only goes up, read twice on a monotonic clock: one
/// computation for the status page, the `$SYS` bridge topics and the drain log lines.
public enum CounterRate {
    /// `later - earlier` per second; 0 when the counter went backwards (reset by a restart or wrapped),
    /// nil when `seconds` is not a positive, finite interval.
    public static func perSecond(from earlier: UInt64, to later: UInt64, seconds: Double) -> Double? {
        guard seconds > 0, seconds.isFinite else { return nil }
        return later >= earlier ? Double(later - earlier) / seconds : 0
    }
}
