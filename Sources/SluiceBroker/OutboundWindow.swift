import DequeModule

/// The bounds of one client's outbound flow, read from the settings (and the client's Receive Maximum)
/// once per call site: a few integers handed to `OutboundWindow`, not `BrokerSettings`.
struct OutboundLimits: Sendable {
    /// QoS 1/2 messages in flight at most: the client's Receive Maximum within ours.
    var window: Int
    /// `max_inflight_bytes` (0 = no bound).
    var maxInflightBytes: Int
    /// `max_queued_messages` and `max_queued_bytes` (0 = no bound).
    var maxQueuedMessages: Int
    var maxQueuedBytes: Int
    /// Whether QoS 0 messages wait for an offline session (`queue_qos0_messages`).
    var queueQoS0: Bool

    /// The window towards a client that announced `clientReceiveMaximum` (nil: none, the protocol's
    /// 65,535), within `ours` (`max_inflight_messages`, 0 = 65,535: `BrokerSettings.receiveMaximum`).
    static func window(clientReceiveMaximum: Int?, ours: Int) -> Int { min(clientReceiveMaximum ?? 65535, ours) }
}

extension BrokerSettings {
    /// The limits towards a client that announced `clientReceiveMaximum`. Each setting read by field:
    /// `self` (with its dictionaries and strings) is borrowed, never copied.
    func outboundLimits(clientReceiveMaximum: Int?) -> OutboundLimits {
        OutboundLimits(
            window: OutboundLimits.window(clientReceiveMaximum: clientReceiveMaximum, ours: receiveMaximum),
            maxInflightBytes: maxInflightBytes,
            maxQueuedMessages: maxQueuedMessages,
            maxQueuedBytes: maxQueuedBytes,
            queueQoS0: queueQoS0Messages
        )
    }
}

/// The outbound flow towards one subscriber, owned by its session: the QoS 1/2 messages in flight (in
/// send order), the messages waiting behind them, and the packet identifiers and seqs it hands out. Its
/// operations say what to send; the broker sends it and reports back (`sent`), so a message that the
/// client cannot take (expired, too large) is never counted in flight.
///
/// Four words and no padding: `queuedBytes` and `lastPacketID` share one, so a `Session` (a dictionary
/// value, whose empty slots cost its stride too) keeps its small fields packed after the words.
struct OutboundWindow: Sendable {
    /// What to do with a message offered to the window.
    enum Offer: Equatable, Sendable {
        /// Send it now with this packet identifier, then report it `sent`.
        case send(packetID: UInt16)
        /// Send it now at QoS 0: nothing is kept.
        case sendUnacknowledged
        /// It waits in the queue (numbered, its seq in `Delivery.seq`).
        case queued(Delivery)
        /// Not kept: a full queue drops it (and counts it); an offline session drops QoS 0 silently
        /// unless `queue_qos0_messages`, as Mosquitto does.
        case refused(DropReason?)
    }

    /// What a reconnecting client gets again, in send order [MQTT-4.4.0-1].
    enum Resend: Equatable, Sendable {
        case publish(Delivery, packetID: UInt16)
        case pubRel(packetID: UInt16)
    }

    /// In send order, so redelivery on reconnect keeps it [MQTT-4.6.0-1].
    private(set) var inflight: Deque<Outgoing> = []
    /// Waiting for room in the in-flight window, or for the client to come back.
    private(set) var queue: Deque<Delivery> = []
    /// The `seq` the next stored delivery gets.
    var nextSeq: UInt64 = 1
    /// Payload bytes queued in the low 48 bits (256 TiB), the last packet identifier handed out in the
    /// high 16.
    private var queuedBytesAndLastPacketID: UInt64 = 0

    private static let queuedBytesMask: UInt64 = (1 << 48) - 1

    /// Payload bytes of the queued messages (`max_queued_bytes`).
    private(set) var queuedBytes: Int {
        get { Int(queuedBytesAndLastPacketID & Self.queuedBytesMask) }
        set {
            queuedBytesAndLastPacketID =
                (queuedBytesAndLastPacketID & ~Self.queuedBytesMask)
                | (UInt64(clamping: newValue) & Self.queuedBytesMask)
        }
    }

    /// The packet identifier handed out last (saved, so a restored session does not reuse one at once).
    var lastPacketID: UInt16 {
        get { UInt16(truncatingIfNeeded: queuedBytesAndLastPacketID >> 48) }
        set {
            queuedBytesAndLastPacketID = (queuedBytesAndLastPacketID & Self.queuedBytesMask) | UInt64(newValue) << 48
        }
    }

    var hasQueued: Bool { !queue.isEmpty }
    var isEmpty: Bool { inflight.isEmpty && queue.isEmpty }
    /// Every message held, in flight first, each in its order.
    var deliveries: [Delivery] { inflight.map(\.delivery) + queue }
    /// Payload bytes of the QoS 1/2 messages in flight (`max_inflight_bytes`); summed when asked, since
    /// the window is small and only that option asks.
    var inflightPayloadBytes: Int { inflight.reduce(0) { $0 + $1.delivery.message.payload.readableBytes } }

    /// Room for one more QoS 1/2 message in flight: the count window, and `max_inflight_bytes` as
    /// Mosquitto counts it (one more while the bytes in flight are below the bound, so a larger
    /// message still goes, alone).
    func hasRoomInFlight(_ limits: OutboundLimits) -> Bool {
        guard inflight.count < limits.window else { return false }
        return limits.maxInflightBytes == 0 || inflightPayloadBytes < limits.maxInflightBytes
    }

    /// Numbers `delivery` as the session's newest stored message.
    mutating func numbered(_ delivery: Delivery) -> Delivery {
        var delivery = delivery
        delivery.seq = nextSeq
        nextSeq += 1
        return delivery
    }

    /// The next free packet identifier (1...65535, skipping ones in flight) [MQTT-2.2.1-3].
    mutating func nextPacketID() -> UInt16 {
        var packetID = lastPacketID
        repeat {
            packetID = packetID == UInt16.max ? 1 : packetID + 1
        } while isInFlight(packetID)
        lastPacketID = packetID
        return packetID
    }

    /// A new message for the client. `deliverable`: connected and its socket takes more now.
    /// `connected`: a connection holds the session (backed up or not).
    mutating func offer(_ delivery: Delivery, deliverable: Bool, connected: Bool, _ limits: OutboundLimits) -> Offer {
        if deliverable {
            if delivery.qos == .atMostOnce { return .sendUnacknowledged }
            if queue.isEmpty && hasRoomInFlight(limits) { return .send(packetID: nextPacketID()) }
        } else if !connected && delivery.qos == .atMostOnce && !limits.queueQoS0 {
            return .refused(nil)
        }
        let size = delivery.message.payload.readableBytes
        if (limits.maxQueuedMessages > 0 && queue.count >= limits.maxQueuedMessages)
            || (limits.maxQueuedBytes > 0 && queuedBytes + size > limits.maxQueuedBytes)
        {
            return .refused(.queueFull)
        }
        // Queued, it may wait long (for an offline client, until it comes back): not with the buffer its
        // payload was read into. Sent at once (above), it is not copied: in flight it waits for one round trip.
        var stored = numbered(delivery)
        stored.message.payload = stored.message.payload.compacted()
        queue.append(stored)
        queuedBytes += size
        return .queued(stored)
    }

    /// The message `offer` or `next` said to send with `packetID` went out: it now awaits the client's
    /// acknowledgement, numbered here if it was new (came from `offer`). Moved into the window, not
    /// copied: `inflight.last` is it as kept.
    mutating func sent(_ delivery: consuming Delivery, packetID: UInt16) {
        if delivery.seq == 0 {
            delivery.seq = nextSeq
            nextSeq += 1
        }
        let state: Outgoing.State = delivery.qos == .atLeastOnce ? .awaitingPubAck : .awaitingPubRec
        inflight.append(Outgoing(packetID: packetID, delivery: delivery, state: state))
    }

    /// Takes the head of the queue when it may go now: QoS 0 at once (no packet identifier), QoS 1/2
    /// while the window has room (with the packet identifier to send it with, then report it `sent`).
    mutating func next(_ limits: OutboundLimits) -> (delivery: Delivery, packetID: UInt16?)? {
        guard let head = queue.first, head.qos == .atMostOnce || hasRoomInFlight(limits) else { return nil }
        let delivery = queue.removeFirst()
        queuedBytes -= delivery.message.payload.readableBytes
        return (delivery, delivery.qos == .atMostOnce ? nil : nextPacketID())
    }

    /// PUBACK, PUBCOMP, or a refusing PUBREC for `packetID` in `state`: the flow ends and leaves the window.
    /// Nil for an unknown identifier, or one in another state.
    mutating func acknowledge(_ packetID: UInt16, _ state: Outgoing.State) -> Outgoing? {
        guard let index = index(of: packetID, in: state) else { return nil }
        // Nearly always the oldest: clients acknowledge in order.
        return index == inflight.startIndex ? inflight.removeFirst() : inflight.remove(at: index)
    }

    /// A successful PUBREC: the QoS 2 message now awaits PUBCOMP. False when none awaited this PUBREC.
    mutating func received(pubRec packetID: UInt16) -> Bool {
        guard let index = index(of: packetID, in: .awaitingPubRec) else { return false }
        inflight[index].state = .awaitingPubComp
        return true
    }

    /// Where the flow of `packetID` in `state` is in the window. By index, not `firstIndex(where:)`, whose
    /// closure gets a copy of each message it looks at.
    private func index(of packetID: UInt16, in state: Outgoing.State) -> Int? {
        for index in inflight.indices where inflight[index].packetID == packetID && inflight[index].state == state {
            return index
        }
        return nil
    }

    /// What a reconnecting client gets again, in send order: the PUBLISH (with DUP) of messages it had
    /// not acknowledged, the PUBREL of QoS 2 ones it had received.
    func resend() -> [Resend] {
        inflight.map { outgoing in
            switch outgoing.state {
            case .awaitingPubAck, .awaitingPubRec: .publish(outgoing.delivery, packetID: outgoing.packetID)
            case .awaitingPubComp: .pubRel(packetID: outgoing.packetID)
            }
        }
    }

    /// The client went away: what it had in flight now waits for it to come back, maybe long, so it is
    /// kept compacted (`ByteBuffer.compacted()`), as queued messages are. At most the window's worth, once
    /// per disconnection, rather than a copy of every message sent.
    mutating func compactInflight() {
        for index in inflight.indices {
            inflight[index].delivery.message.payload = inflight[index].delivery.message.payload.compacted()
        }
    }

    // MARK: Restoring (a saved or imported session): as they were, no limits applied.

    mutating func restoreInflight(_ outgoing: Outgoing) { inflight.append(outgoing) }

    mutating func restoreQueued(_ delivery: Delivery) {
        queue.append(delivery)
        queuedBytes += delivery.message.payload.readableBytes
    }

    /// Whether `packetID` is in flight (a new identifier skips it; an import keeps a message's identifier only once).
    func isInFlight(_ packetID: UInt16) -> Bool {
        inflight.indices.contains { inflight[$0].packetID == packetID }  // by index: see `index(of:in:)`
    }
}
