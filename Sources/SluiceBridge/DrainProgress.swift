/// The drain's log lines: a start line when the link comes up with a backlog (or falls `threshold`
/// behind while up), a progress line every `interval` with the rate and the time left, and an end line
/// with the count and the rate — so a person watching the log sees a backlog go, and how fast.
///
/// Fed about once a second with the queue's depth and the link's delivered count (acknowledged, QoS 0
/// written or dead-lettered: what left the queue); it does no I/O and reads no clock.
public struct DrainProgress<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    private struct Drain: Sendable {
        var start: Instant
        var startDelivered: UInt64
        var lastReport: Instant
        var lastDelivered: UInt64
    }

    public let name: String
    public let interval: Duration
    public let threshold: Int
    private var current: Drain?
    private var wasConnected = false

    public init(name: String, interval: Duration = .seconds(10), threshold: Int = 1000) {
        self.name = name
        self.interval = interval
        self.threshold = threshold
    }

    public var isDraining: Bool { current != nil }

    /// The line to log for this sample, if any.
    public mutating func update(now: Instant, depth: Int, delivered: UInt64, connected: Bool) -> String? {
        let justConnected = connected && !wasConnected
        wasConnected = connected
        guard var drain = current else {
            guard connected, depth > 0, justConnected || depth >= threshold else { return nil }
            current = Drain(start: now, startDelivered: delivered, lastReport: now, lastDelivered: delivered)
            return "bridge \(name): draining \(depth) queued messages"
        }
        let sent = delivered &- drain.startDelivered
        let elapsed = drain.start.duration(to: now)
        if depth == 0 {
            current = nil
            return
                "bridge \(name): drain finished: \(sent) messages in \(elapsed.logText) (\(Self.rate(from: drain.startDelivered, to: delivered, elapsed)) msg/s)"
        }
        if !connected {
            current = nil
            return
                "bridge \(name): drain stopped (link down) after \(sent) messages in \(elapsed.logText); \(depth) left"
        }
        let span = drain.lastReport.duration(to: now)
        guard span >= interval else { return nil }
        let rate = Self.rate(from: drain.lastDelivered, to: delivered, span)
        drain.lastReport = now
        drain.lastDelivered = delivered
        current = drain
        let left = rate > 0 ? "about \(Duration.seconds(Double(depth) / Double(rate)).logText) to go" : "not moving"
        return "bridge \(name): draining: \(sent) sent, \(depth) left, \(rate) msg/s; \(left)"
    }

    /// Whole messages per second.
    static func rate(from earlier: UInt64, to later: UInt64, _ span: Duration) -> Int {
        let seconds = Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18
        return Int((CounterRate.perSecond(from: earlier, to: later, seconds: seconds) ?? 0).rounded())
    }
}
