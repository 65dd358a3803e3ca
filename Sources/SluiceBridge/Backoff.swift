/// Reconnect delays with "decorrelated jitter" (AWS Architecture Blog, "Exponential Backoff And
/// Jitter"): `sleep = min(cap, random(base, previous * 3))`, starting from `previous = base`.
/// Mosquitto's `restart_timeout BASE CAP` means the same; `BASE == CAP` gives a constant delay.
/// The random source is passed in, so tests use a seeded generator.
public struct Backoff: Sendable, Hashable {
    public let base: Duration
    public let cap: Duration
    /// The last delay handed out (or `base` after a reset).
    public private(set) var previous: Duration

    /// `base` must be positive and `cap >= base` (a smaller cap is raised to `base`).
    public init(base: Duration, cap: Duration) {
        let base = base > .zero ? base : .milliseconds(1)
        self.base = base
        self.cap = max(cap, base)
        self.previous = base
    }

    /// The next delay, in `[base, cap]`.
    public mutating func next(using generator: inout some RandomNumberGenerator) -> Duration {
        let low = Self.nanoseconds(base)
        let (tripled, overflow) = Self.nanoseconds(previous).multipliedReportingOverflow(by: 3)
        let high = overflow ? Int64.max : max(low, tripled)
        let pick = Int64.random(in: low...high, using: &generator)
        let delay = min(cap, Duration.nanoseconds(pick))
        previous = delay
        return delay
    }

    /// Back to `base`: call after a connection that stayed up.
    public mutating func reset() { previous = base }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        let (s, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? 0 : Int64.max }
        return max(0, s &+ attoseconds / 1_000_000_000)
    }
}
