// Note on pacing: `bridge_max_rate MSGS_PER_S [BYTES_PER_S]` is a token bucket per bridge that every
// sent PUBLISH passes through (backlog and live traffic alike: both leave through the queue; the
// link-state notification too). The bucket holds at most a twentieth of a second of tokens (two
// ticks of a paced link, which ticks every 25 ms) plus one token of change, so any one-second window
// carries at most 1.05 × the rate + 1 as sent; the central sees a little more when its reads bunch up.
// The change matters: messages go whole, so a bucket capped at exactly 4.5 tokens (90/s, 50 ms ticks)
// sent 4 a tick and threw the half away, 80/s, and less when ticks ran late (77.7/s measured: 50,000
// messages took 10.7 minutes instead of 9.3). Measured against a central that cuts above
// 100/s: 90/s with a 0.1 s bucket was cut (101 in its busiest second, the notification on top of
// a full bucket); keep 10 % below a hard limit. The byte bucket may go negative by one message, so a
// message larger than the burst still goes.

/// A token bucket over an injected clock (the link's ticks).
public struct TokenBucket<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// Tokens added per second.
    public let rate: Double
    /// The most tokens the bucket holds.
    public let burst: Double
    public private(set) var tokens: Double
    private var last: Instant?

    /// `rate` must be positive; the burst is a twentieth of a second's worth, at least one.
    public init(rate: Double) {
        self.rate = max(rate, 0.001)
        self.burst = max(1, self.rate / 20)
        self.tokens = self.burst
    }

    /// Adds the tokens earned since the previous refill.
    public mutating func refill(now: Instant) {
        defer { last = now }
        guard let last else { return }
        let elapsed = last.duration(to: now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        guard seconds > 0 else { return }
        tokens = min(burst + 1, tokens + seconds * rate)  // + 1: the fraction left after whole sends (see the note)
    }

    /// Whole tokens available now.
    public var available: Int { tokens >= 1 ? Int(tokens) : 0 }

    /// True while at least part of a token remains (for byte budgets, which may run one message negative).
    public var hasCredit: Bool { tokens > 0 }

    public mutating func take(_ amount: Double) { tokens -= amount }
}

/// `bridge_max_rate`: messages per second and optionally bytes per second.
public struct DrainPacer<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public private(set) var messages: TokenBucket<Instant>
    public private(set) var bytes: TokenBucket<Instant>?

    public init(messagesPerSecond: Double, bytesPerSecond: Double?) {
        messages = TokenBucket(rate: messagesPerSecond)
        bytes = bytesPerSecond.map { TokenBucket(rate: $0) }
    }

    public mutating func refill(now: Instant) {
        messages.refill(now: now)
        bytes?.refill(now: now)
    }

    /// How many messages may go now (0 while the byte budget is spent).
    public var allowance: Int {
        if let bytes, !bytes.hasCredit { return 0 }
        return messages.available
    }

    /// Records one message of `size` bytes sent.
    public mutating func spend(size: Int) {
        messages.take(1)
        bytes?.take(Double(size))
    }
}
