import Logging
import MQTTCore
import SluiceBridge
import SluiceBroker

/// The broker's client lines: one per connect, one per disconnect with why, one per refusal — refusals
/// of one kind summed per minute after the first (a client retrying against `max_connections` in a
/// tight loop costs a line a minute). Owned by the broker host, used on its loop.
struct ClientEventLog {
    let logger: Logger
    /// `connection_messages`: connects and disconnects are logged (refusals always are).
    var enabled = true
    /// Set at shutdown: the closes that follow are the gateway's, not the clients'.
    var shuttingDown = false
    private var refusals = WarningAggregator<ContinuousClock.Instant>()

    init(logger: Logger) {
        self.logger = logger
    }

    static func version(_ version: ProtocolVersion) -> String {
        switch version {
        case .v3_1: "MQTT 3.1"
        case .v3_1_1: "MQTT 3.1.1"
        case .v5: "MQTT 5.0"
        }
    }

    func connected(clientID: String, remote: String, packet: ConnectPacket) {
        guard enabled else { return }
        let session = packet.cleanStart ? "clean start" : "persistent session"
        logger.info(
            "client \(clientID) connected from \(remote) (\(Self.version(packet.protocolVersion)), \(session), keep-alive \(packet.keepAlive) s)"
        )
    }

    func departed(_ departure: Departure, remote: String) {
        guard enabled else { return }
        let why: String
        if shuttingDown, case .socketClosed = departure.reason {
            why = "gateway shutting down"
        } else {
            why = "\(departure.reason)"
        }
        logger.info(
            "client \(departure.clientID) disconnected from \(remote) (\(Self.version(departure.protocolVersion))): \(why)"
        )
    }

    /// A CONNECT answered with a failure CONNACK by the broker's rules (limits, client identifier, will ACL).
    mutating func refused(clientID: String, remote: String, packet: ConnectPacket, code: ReasonCode) {
        let hint = code == .quotaExceeded ? ": max_connections reached" : ""
        let first =
            "client \(clientID.isEmpty ? "(no client id)" : clientID) from \(remote) (\(Self.version(packet.protocolVersion))) refused: \(code.named)\(hint)"
        if let line = refusals.note(
            "\(code)",
            now: .now,
            first: first,
            summary: "more connections refused with \(code.named)\(hint)"
        ) {
            logger.notice("\(line)")
        }
    }

    /// `log_type subscribe` / `unsubscribe` lines (Mosquitto writes these only when asked).
    func received(_ packet: Packet, clientID: String?) {
        switch packet {
        case .subscribe(let subscribe):
            for subscription in subscribe.subscriptions {
                logger.info(
                    "client \(clientID ?? "?") subscribed to '\(subscription.filter)' (QoS \(subscription.options.qos.rawValue))",
                    metadata: ["log_type": "subscribe"]
                )
            }
        case .unsubscribe(let unsubscribe):
            for filter in unsubscribe.filters {
                logger.info(
                    "client \(clientID ?? "?") unsubscribed from '\(filter)'",
                    metadata: ["log_type": "unsubscribe"]
                )
            }
        default:
            break
        }
    }

    mutating func flush() {
        for line in refusals.flush(now: .now) { logger.notice("\(line)") }
    }
}

extension Packet {
    /// SUBSCRIBE or UNSUBSCRIBE: the packets `log_type subscribe|unsubscribe` writes a line for.
    var isSubscription: Bool {
        switch self {
        case .subscribe, .unsubscribe: true
        default: false
        }
    }
}
