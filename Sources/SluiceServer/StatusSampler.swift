/// The counters of one bridge at one moment.
public struct BridgeReading: Sendable, Equatable {
    /// Queue messages the remote acknowledged, ever (this process).
    public var acknowledged: UInt64
    /// Messages received from the remote on `in` rules, ever (this process).
    public var received: UInt64
    /// The queue's next sequence number: every append ever made moved it on by one.
    public var appended: UInt64
    public var depth: UInt64

    public init(acknowledged: UInt64, received: UInt64, appended: UInt64, depth: UInt64) {
        self.acknowledged = acknowledged
        self.received = received
        self.appended = appended
        self.depth = depth
    }
}

/// The gateway's counters at one moment.
public struct StatusReading: Sendable, Equatable {
    /// Monotonic seconds: rates are measured on this clock, never on the wall clock that NTP moves.
    public var at: Double
    /// Unix seconds, for the graphs' time axis.
    public var wallClock: Double
    public var clients: Int
    /// In the gateway's bridge order.
    public var bridges: [BridgeReading]

    public init(at: Double, wallClock: Double, clients: Int, bridges: [BridgeReading]) {
        self.at = at
        self.wallClock = wallClock
        self.clients = clients
        self.bridges = bridges
    }
}

/// What the rates of one bridge are at a reading.
public struct BridgeRates: Sendable, Equatable {
    public var sendRate: Double?
    public var receiveRate: Double?
    public var queueRate: Double?
    public var drainRate: Double?
}

/// Keeps the last minute of readings (for rates) and one reading every `historyInterval` seconds for
/// the last hour (for the graphs). Memory is bounded by both capacities, however often `record` runs.
public struct StatusSampler: Sendable {
    /// The window of the send, receive and queue rates.
    public static let rateWindow: Double = 60
    /// The window of the drain rate behind the time to drain: short, so a drain that just began is not
    /// averaged with the outage before it.
    public static let drainWindow: Double = 10

    public let historyInterval: Double
    public let historyCapacity: Int
    private let recentCapacity: Int
    private(set) var recent: [StatusReading] = []
    private(set) var history: [StatusReading] = []

    public init(historyInterval: Double = 10, historyCapacity: Int = 360, recentCapacity: Int = 240) {
        self.historyInterval = max(0.001, historyInterval)
        self.historyCapacity = max(2, historyCapacity)
        self.recentCapacity = max(2, recentCapacity)
    }

    public mutating func record(_ reading: StatusReading) {
        recent.append(reading)
        // Keep one reading older than the window, so a full minute is always covered.
        while recent.count > 1, recent[1].at <= reading.at - Self.rateWindow { recent.removeFirst() }
        if recent.count > recentCapacity { recent.removeFirst(recent.count - recentCapacity) }
        // A little slack, so a timer that fires a few milliseconds early does not skip a point.
        let slack = min(0.25, historyInterval / 10)
        if let last = history.last, reading.at < last.at + historyInterval - slack { return }
        history.append(reading)
        if history.count > historyCapacity { history.removeFirst(history.count - historyCapacity) }
    }

    /// Rates of each bridge at `now` (a reading taken now, recorded or not). `linkChangedAt` holds, per
    /// bridge, when (on the `at` clock) its link last came up or went down: the drain rate is measured
    /// only since then, so a drain that began three seconds ago is not diluted by the outage before it.
    public func rates(at now: StatusReading, linkChangedAt: [Double?] = []) -> [BridgeRates] {
        let minute = baseline(for: now, window: Self.rateWindow)
        return now.bridges.indices.map { index in
            let changed = index < linkChangedAt.count ? linkChangedAt[index] : nil
            let short = baseline(for: now, window: min(Self.drainWindow, changed.map { now.at - $0 } ?? .infinity))
            let current = now.bridges[index]
            var rates = BridgeRates()
            if let minute, index < minute.bridges.count {
                let earlier = minute.bridges[index]
                let seconds = now.at - minute.at
                rates.sendRate = StatusArithmetic.rate(
                    from: earlier.acknowledged,
                    to: current.acknowledged,
                    seconds: seconds
                )
                rates.receiveRate = StatusArithmetic.rate(
                    from: earlier.received,
                    to: current.received,
                    seconds: seconds
                )
                rates.queueRate = StatusArithmetic.rate(from: earlier.appended, to: current.appended, seconds: seconds)
            }
            if let short, index < short.bridges.count {
                let seconds = now.at - short.at
                if seconds >= 0.5 {
                    rates.drainRate = (Double(short.bridges[index].depth) - Double(current.depth)) / seconds
                }
            }
            return rates
        }
    }

    /// The oldest reading within `window` seconds before `now`, at least half a second before it.
    private func baseline(for now: StatusReading, window: Double) -> StatusReading? {
        recent.first { $0.at >= now.at - window && $0.at <= now.at - 0.5 }
    }

    /// The graphs' points: each history reading, then `now`; send rates are measured since the point
    /// before (the first point has none).
    public func points(now: StatusReading?) -> [HistoryPoint] {
        var readings = history
        // A live point only a moment after the last one would show a rate over too short a time.
        if let now, now.at >= (readings.last?.at ?? -.infinity) + 1 { readings.append(now) }
        return readings.indices.map { index in
            let reading = readings[index]
            guard index > 0 else {
                return HistoryPoint(
                    at: reading.wallClock,
                    clients: reading.clients,
                    depths: reading.bridges.map(\.depth),
                    sendRates: []
                )
            }
            let earlier = readings[index - 1]
            let seconds = reading.at - earlier.at
            let sendRates = reading.bridges.indices.map { bridge -> Double in
                guard bridge < earlier.bridges.count else { return 0 }
                return StatusArithmetic.rate(
                    from: earlier.bridges[bridge].acknowledged,
                    to: reading.bridges[bridge].acknowledged,
                    seconds: seconds
                ) ?? 0
            }
            return HistoryPoint(
                at: reading.wallClock,
                clients: reading.clients,
                depths: reading.bridges.map(\.depth),
                sendRates: sendRates
            )
        }
    }
}
