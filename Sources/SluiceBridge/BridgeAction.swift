import MQTTCore

/// One message taken from the bridge's durable queue, in FIFO (`seq`) order.
///
/// The payload is a NIOCore `ByteBuffer`, which this module cannot name (it depends on `MQTTCore`
/// only, and `MQTTCore` does not re-export NIOCore), so the item carries a ready `PublishPacket`:
/// `message.topic` is already remapped to the remote topic, `message.qos` is the QoS to use on the
/// remote (0 = fire-and-forget; 1 or 2 are both sent at QoS 1), and `retain`/`properties`/`payload`
/// are passed through. `message.packetIdentifier` and `message.dup` are ignored: the link sets them.
public struct QueuedItem: Sendable, Hashable {
    public var seq: UInt64
    public var message: PublishPacket

    public init(seq: UInt64, message: PublishPacket) {
        self.seq = seq
        self.message = message
    }
}

/// Why the link asks to close the connection.
public enum BridgeCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// No CONNACK (or no TCP/TLS connection) within `connectTimeout`.
    case connectTimeout
    /// The remote refused the CONNECT (0x86 bad user name or password, 0x87 not authorized...).
    case connAckRefused(ReasonCode)
    /// Nothing received within 1.5 × keep-alive.
    case keepAliveTimeout
    /// Messages were in flight and no PUBACK came within `progressTimeout`.
    case progressStalled
    /// The remote broke the protocol (unexpected packet...).
    case protocolError(String)
    /// The remote sent DISCONNECT (MQTT 5) with this reason.
    case remoteDisconnected(ReasonCode)
    /// `stop()` was called.
    case stopped
    /// `start_type lazy`: nothing sent or received for `idle_timeout`.
    case idle

    public var description: String {
        switch self {
        case .connectTimeout: "connect timeout"
        case .connAckRefused(let code): "CONNACK refused with reason \(code) (\(code.name))"
        case .keepAliveTimeout: "keep-alive timeout"
        case .progressStalled: "no PUBACK within the progress timeout"
        case .protocolError(let message): "protocol error: \(message)"
        case .remoteDisconnected(let code): "remote sent DISCONNECT with reason \(code) (\(code.name))"
        case .stopped: "bridge stopped"
        case .idle: "idle (start_type lazy)"
        }
    }
}

public enum BridgeLogLevel: Sendable, Hashable {
    case debug, info, warning, error
}

/// What the I/O layer must do. Actions of one event are to be run in order.
public enum BridgeAction: Sendable, Hashable {
    /// Open TCP (and TLS) to `addresses[addressIndex]`; then call `connected()` or `connectionClosed(error:)`.
    case connect(addressIndex: Int)
    /// Send this CONNECT. With `try_private` (3.1/3.1.1) its `isBridge` is set, which the codec writes as
    /// the bridge bit in the protocol level (0x80 | level, e.g. 0x84).
    case sendConnect(ConnectPacket)
    /// Write one packet to the remote.
    case send(Packet)
    /// Ask the queue for up to `limit` messages with seq > `after` (nil: from the head), in seq order;
    /// answer with `fetched(_:)`, exactly once per fetch, in the order the fetches were asked.
    case fetch(after: UInt64?, limit: Int)
    /// Delete these messages from the queue: the remote acknowledged them (or they were QoS 0 and written).
    case remove(seqs: [UInt64])
    /// Move these messages from the queue to the bridge's dead letters (one transaction), counted
    /// under `reason`. Until that commits, fetches must not return them.
    case deadLetter(seqs: [UInt64], reason: DeadLetterReason)
    /// Publish this message on the local broker (an `in` rule; topic already mapped). With
    /// `acknowledge`, the remote's QoS 1/2 message waits for its PUBACK/PUBREC until the local broker
    /// has kept it (saved, when it changed saved state): then call `publishedLocally(_:)` with it.
    case publishLocally(PublishPacket, acknowledge: LocalDelivery?)
    /// Close the connection; then call `connectionClosed(error:)`.
    case close(BridgeCloseReason)
    /// Wait, then call `reconnectTimerFired()`.
    case scheduleReconnect(after: Duration)
    /// The link went up or down: publish the local notification (retained "1"/"0") if configured.
    case stateChanged(connected: Bool)
    case log(BridgeLogLevel, String)
}

/// A remote QoS 1/2 message handed to the local broker, awaiting its acknowledgement to the remote.
public struct LocalDelivery: Sendable, Hashable {
    public var packetID: UInt16
    /// Which connection it arrived on: an acknowledgement for an earlier connection is not sent
    /// (the remote resends the message on the next one).
    public var connection: UInt64
}
