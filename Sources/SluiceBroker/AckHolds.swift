import DequeModule
import MQTTCore

/// The one owner of when a publisher's PUBACK/PUBREC may go. Acknowledgements go out in the order the
/// PUBLISHes came [MQTT-4.6.0-2, MQTT-4.6.0-3], and one waits for either of two things:
///
/// - **The disk.** A message bound for a bridge queue, or one that changed saved state, is acknowledged
///   once its commits are in (`hold` with its token, then `committed`). Its place in the order is kept meanwhile,
///   so an acknowledgement that needs no disk does not overtake it.
/// - **A subscriber's backlog (flow control).** A message that leaves a connected subscriber (the gate)
///   with a backlog has its acknowledgement held until that subscriber drains, so a publisher that honours
///   its in-flight window sends no faster than the slowest subscriber it feeds takes messages, instead of
///   filling that subscriber's queue until it drops what was acknowledged. Nothing is read more slowly: a
///   held connection's packets are still read, so no two clients can wait on each other. Bounded: a gate
///   that takes nothing for `holdLimit` is stalled: its holds go out and it holds no more until it
///   acknowledges a message again. A client that stops reading slows its publishers for a moment, not for
///   good; its queue then fills and drops, as without flow control.
///
/// Every acknowledgement behind a waiting one waits too; what is ready at the head goes out.
struct AckHolds: Sendable {
    /// A PUBACK (QoS 1) or PUBREC (QoS 2) on its way out, and whether it counts in the publisher's
    /// unacknowledged QoS 1 publishes (`ClientConnection.inboundUnacknowledged`) until it is sent.
    /// Small and flat: the durable path keeps one per bridged message.
    struct Ack: Sendable, Equatable {
        var ack: PubAckPacket
        var isPubRec: Bool
        var countsInbound: Bool

        init(_ ack: PubAckPacket, qos: QoS, countsInbound: Bool) {
            self.ack = ack
            self.isPubRec = qos == .exactlyOnce
            self.countsInbound = countsInbound
        }

        var packet: Packet { isPubRec ? .pubRec(ack) : .pubAck(ack) }
    }

    /// One acknowledgement in a publisher's order.
    private struct Entry: Sendable {
        var ack: Ack
        /// The commits it waits for (0: none); its reason code is decided when they are in.
        var token: UInt64 = 0
        /// The subscriber whose backlog it waits for.
        var gate: String? = nil

        var isReady: Bool { token == 0 && gate == nil }
    }

    /// A subscriber holding acknowledgements: since when, and whose (a publisher that left stays listed
    /// until the gate is released).
    private struct Gate: Sendable {
        var since: BrokerTime
        var publishers: [ConnectionID]
    }

    /// How long a gate may take nothing before it is stalled (ms).
    static let holdLimit: BrokerTime = 250

    /// Each publisher's acknowledgements that wait, in PUBLISH order; no empty ones.
    private var byPublisher: [ConnectionID: Deque<Entry>] = [:]
    private var gates: [String: Gate] = [:]
    /// Gates that took nothing for `holdLimit`: no acknowledgement waits for them until they take one.
    private var stalled: Set<String> = []

    var isEmpty: Bool { byPublisher.isEmpty && gates.isEmpty && stalled.isEmpty }
    /// Whether any acknowledgement waits for a subscriber's backlog.
    var holdsAny: Bool { !gates.isEmpty }

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

    /// Keeps `ack` in `publisher`'s order, to go after every acknowledgement ahead of it, once `token`'s
    /// commits are in (`committed`; 0: no commits), and once `gate` drained when the message left that
    /// subscriber with a backlog.
    mutating func hold(_ ack: Ack, for publisher: ConnectionID, token: UInt64 = 0, gate: String?, now: BrokerTime) {
        if let gate {
            if gates[gate] == nil {
                gates[gate] = Gate(since: now, publishers: [publisher])
            } else if gates[gate]!.publishers.last != publisher {
                gates[gate]!.publishers.append(publisher)
            }
        }
        byPublisher[publisher, default: []].append(Entry(ack: ack, token: token, gate: gate))
    }

    /// Holds `ack` behind the ones `publisher` holds already; false (send it) when it holds none.
    mutating func append(_ ack: @autoclosure () -> Ack, for publisher: ConnectionID) -> Bool {
        guard isHolding(publisher) else { return false }
        byPublisher[publisher]!.append(Entry(ack: ack()))
        return true
    }

    /// `token`'s commits are in and `ack` (its reason code decided) answers them; `takeReady` has what may go.
    mutating func committed(token: UInt64, for publisher: ConnectionID, _ ack: PubAckPacket) {
        // Commits land in order, so this is nearly always the head. Read in place (a copy would be copied again
        // on write).
        guard let slot = byPublisher.index(forKey: publisher),
            let index = byPublisher.values[slot].firstIndex(where: { $0.token == token })
        else {
            return
        }
        byPublisher.values[slot][index].ack.ack = ack
        byPublisher.values[slot][index].token = 0
    }

    /// The next acknowledgement to `publisher` that may go now, if the head of its order is ready.
    mutating func takeReady(_ publisher: ConnectionID) -> Ack? {
        // In place: the publisher's order is neither copied nor hashed again.
        guard let slot = byPublisher.index(forKey: publisher), byPublisher.values[slot].first!.isReady else {
            return nil
        }
        let ack = byPublisher.values[slot].removeFirst().ack
        if byPublisher.values[slot].isEmpty { byPublisher.remove(at: slot) }
        return ack
    }

    /// `subscriber` took a message: it may gate again.
    mutating func progressed(_ subscriber: String) {
        if !stalled.isEmpty { stalled.remove(subscriber) }
    }

    /// Frees what `gate` held; returns the publishers it held, in the order they were first held, for
    /// `takeReady`.
    mutating func release(gate: String) -> [ConnectionID] {
        guard let held = gates.removeValue(forKey: gate) else { return [] }
        for publisher in held.publishers {
            guard let slot = byPublisher.index(forKey: publisher) else { continue }
            for index in byPublisher.values[slot].indices where byPublisher.values[slot][index].gate == gate {
                byPublisher.values[slot][index].gate = nil
            }
        }
        return held.publishers
    }

    /// Releases the holds of every gate that held one for `holdLimit` or longer, and stalls those gates.
    mutating func releaseOverdue(now: BrokerTime) -> [ConnectionID] {
        var released: [ConnectionID] = []
        for (gate, held) in gates.sorted(by: { $0.key < $1.key }) where held.since + Self.holdLimit <= now {
            stalled.insert(gate)
            released += release(gate: gate)
        }
        return released
    }

    /// `publisher` is gone: what it waited for is not sent.
    mutating func forget(publisher: ConnectionID) { byPublisher[publisher] = nil }

    /// `subscriber`'s session is gone: it neither gates nor is stalled any more.
    mutating func forget(subscriber: String) -> [ConnectionID] {
        stalled.remove(subscriber)
        return release(gate: subscriber)
    }
}
