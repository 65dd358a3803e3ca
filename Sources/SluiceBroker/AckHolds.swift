import MQTTCore

/// Flow control from subscribers back to publishers. A QoS 1/2 PUBLISH that leaves a connected subscriber
/// with a backlog has its PUBACK/PUBREC held until that subscriber (the gate) drains, so a publisher that
/// honours its in-flight window sends no faster than the slowest subscriber it feeds takes messages, instead
/// of filling that subscriber's queue until it drops what was acknowledged. Nothing is read more slowly: a
/// held connection's packets are still read, so no two clients can wait on each other.
///
/// - Order: once a publisher has a held acknowledgement, every later one to it waits behind it, since a
///   server sends PUBACKs in the order the PUBLISHes came [MQTT-4.6.0-2].
/// - Bounded: a gate that takes nothing for `holdLimit` is stalled: its holds go out and it holds no more
///   until it acknowledges a message again. A client that stops reading slows its publishers for a moment,
///   not for good; its queue then fills and drops, as without flow control.
struct AckHolds: Sendable {
    /// An acknowledgement that waits: the packet, and whether it counts in the publisher's unacknowledged
    /// QoS 1 publishes (`ClientConnection.inboundUnacknowledged`) until it is sent.
    struct Held: Sendable {
        var packet: Packet
        var countsInbound: Bool
    }

    private struct Holding: Sendable {
        var gate: String
        var since: BrokerTime
        var acks: [Held]
    }

    /// How long a gate may take nothing before it is stalled (ms).
    static let holdLimit: BrokerTime = 250

    private var byPublisher: [ConnectionID: Holding] = [:]
    /// The publishers each gate holds. A publisher that left stays listed until its gate is released.
    private var publishersByGate: [String: [ConnectionID]] = [:]
    /// Gates that took nothing for `holdLimit`: no acknowledgement waits for them until they take one.
    private var stalled: Set<String> = []

    var isEmpty: Bool { byPublisher.isEmpty && stalled.isEmpty }
    /// Whether any acknowledgement waits.
    var holdsAny: Bool { !byPublisher.isEmpty }

    /// Whether acknowledgements to `publisher` wait: any new one must wait behind them.
    func isHolding(_ publisher: ConnectionID) -> Bool { !byPublisher.isEmpty && byPublisher[publisher] != nil }

    /// The backlog at which a connected subscriber holds its publishers' acknowledgements: half its queue
    /// bound (`max_queued_messages`), so a publisher that honours its in-flight window is held before the
    /// queue drops what it acknowledged; Mosquitto's default bound, 1,000, for an unbounded queue. Released
    /// at half of it. Well above the in-flight window, so a subscriber never waits for want of messages
    /// (a backlog of 80 cut closed-loop fan-in throughput by a tenth).
    static func backlog(_ settings: BrokerSettings) -> Int {
        settings.maxQueuedMessages > 0 ? max(1, settings.maxQueuedMessages / 2) : 1000
    }

    /// Whether a backlog at `subscriber` may hold acknowledgements.
    func mayGate(_ subscriber: String) -> Bool { !stalled.contains(subscriber) }

    /// Holds `ack` for `publisher` behind the ones it holds already, or else gated by `gate`; false (not
    /// held: send it) when it holds none and there is no gate.
    mutating func hold(_ ack: Held, for publisher: ConnectionID, gate: String?, now: BrokerTime) -> Bool {
        if append(ack, for: publisher) { return true }
        guard let gate else { return false }
        byPublisher[publisher] = Holding(gate: gate, since: now, acks: [ack])
        publishersByGate[gate, default: []].append(publisher)
        return true
    }

    /// Holds `ack` behind the ones `publisher` holds already; false (send it) when it holds none.
    mutating func append(_ ack: @autoclosure () -> Held, for publisher: ConnectionID) -> Bool {
        guard isHolding(publisher) else { return false }
        byPublisher[publisher]!.acks.append(ack())
        return true
    }

    /// `subscriber` took a message: it may gate again.
    mutating func progressed(_ subscriber: String) {
        if !stalled.isEmpty { stalled.remove(subscriber) }
    }

    /// The acknowledgements `gate` held, by publisher in the order they were first held, each in its order.
    mutating func release(gate: String) -> [(ConnectionID, [Held])] {
        guard let publishers = publishersByGate.removeValue(forKey: gate) else { return [] }
        return publishers.compactMap { publisher in
            byPublisher.removeValue(forKey: publisher).map { (publisher, $0.acks) }
        }
    }

    /// Releases the holds of every gate that held one for `holdLimit` or longer, and stalls those gates.
    mutating func releaseOverdue(now: BrokerTime) -> [(ConnectionID, [Held])] {
        var overdue: Set<String> = []
        for holding in byPublisher.values where holding.since + Self.holdLimit <= now {
            overdue.insert(holding.gate)
        }
        var released: [(ConnectionID, [Held])] = []
        for gate in overdue.sorted() {
            stalled.insert(gate)
            released += release(gate: gate)
        }
        return released
    }

    /// `publisher` is gone: what it waited for is not sent.
    mutating func forget(publisher: ConnectionID) { byPublisher[publisher] = nil }

    /// `subscriber`'s session is gone: it neither gates nor is stalled any more.
    mutating func forget(subscriber: String) -> [(ConnectionID, [Held])] {
        stalled.remove(subscriber)
        return release(gate: subscriber)
    }
}
