/// The rules of a session's outbound flow, apart from the flow itself (`Broker.enqueue`, `pump`): how
/// many QoS 1/2 messages may be in flight to a client (its Receive Maximum, `max_inflight_messages`,
/// `max_inflight_bytes`), and when a message that must wait is dropped because the client's queue is
/// full (`max_queued_messages`, `max_queued_bytes`). Functions of the settings, which are passed in
/// rather than copied: this runs for every message delivered.
enum OutboundWindow {
    /// QoS 1/2 messages in flight at most towards a client: its Receive Maximum (none said: 65,535),
    /// within ours.
    static func size(clientReceiveMaximum: Int?, settings: BrokerSettings) -> Int {
        min(clientReceiveMaximum ?? 65535, settings.receiveMaximum)
    }

    /// Room for one more QoS 1/2 message in flight: the count window, and `max_inflight_bytes` as
    /// Mosquitto counts it (one more while the bytes in flight are below the bound, so a larger
    /// message still goes, alone).
    static func hasRoomInFlight(_ session: Session, window: Int, settings: BrokerSettings) -> Bool {
        guard session.inflight.count < window else { return false }
        return settings.maxInflightBytes == 0 || session.inflightPayloadBytes < settings.maxInflightBytes
    }

    /// Whether a message of `size` payload bytes may join the session's queue; 0 is no bound.
    static func queueAccepts(_ session: Session, size: Int, settings: BrokerSettings) -> Bool {
        !((settings.maxQueuedMessages > 0 && session.queue.count >= settings.maxQueuedMessages)
            || (settings.maxQueuedBytes > 0 && session.queuedBytes + size > settings.maxQueuedBytes))
    }
}
