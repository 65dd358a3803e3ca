import MQTTCore

// Note on acknowledgements and failed commits (design: "an acknowledgement is a promise or it is
// not sent"):
// - A success PUBACK/PUBREC goes out only when every commit that should hold the message (its bridge
//   queue append, the save of the retained message or persistent session it changed) committed.
// - Anything else is no success. MQTT 5 publishers hear why: 0x97 Quota exceeded when storage policy
//   refused the message (a queue bound under reject_new, the store or its filesystem out of space),
//   0x80 Unspecified error when the device failed; both with a reason string.
// - MQTT 3.1/3.1.1 cannot say "not accepted" in a PUBACK, so the connection is closed without one:
//   the client sends the message again when it reconnects [MQTT-4.4.0-1], by which time there may be
//   room. (Answering success, as before, threw acknowledged messages away.)
// - A SUBACK/UNSUBACK that waited for the save of a persistent session's subscriptions is not sent
//   when that save failed: the connection is closed (MQTT 5: DISCONNECT with the reason), and the
//   client subscribes again when it reconnects.

/// How a commit that should hold a message ended.
public enum CommitOutcome: Sendable, Hashable {
    /// On disk: the acknowledgement may say success.
    case committed
    /// Storage policy refused it: a queue bound under `reject_new`, or the store or its filesystem
    /// is out of space. The text says which, for logs and MQTT 5 reason strings.
    case refused(String)
    /// The commit failed: the device reported an error. Nothing was kept.
    case failed(String)

    public var isCommitted: Bool { self == .committed }

    /// A message held by several commits is acknowledged by the worst of them.
    public func combined(with other: CommitOutcome) -> CommitOutcome {
        switch (self, other) {
        case (.failed, _): return self
        case (_, .failed): return other
        case (.refused, _): return self
        case (_, .refused): return other
        default: return .committed
        }
    }

    /// The MQTT 5 reason code a publisher gets for this outcome.
    var reasonCode: ReasonCode {
        switch self {
        case .committed: return .success
        case .refused: return .quotaExceeded
        case .failed: return .unspecifiedError
        }
    }

    public var reasonString: String? {
        switch self {
        case .committed: return nil
        case .refused(let why), .failed(let why): return why
        }
    }
}

/// What one client hears once every commit for its message (or its persistent subscriptions) is in:
/// the single place where commit outcomes become acknowledgements. Pure, so it is tested as a table.
public struct AcknowledgementDecision: Sendable, Hashable {
    public enum Action: Sendable, Hashable {
        /// Send this packet (a PUBACK/PUBREC, success or MQTT 5 failure code, or the awaited SUBACK/UNSUBACK).
        case send(Packet)
        /// Close the connection without acknowledging; with a DISCONNECT first for MQTT 5.
        case disconnect(DisconnectPacket?)
    }

    public let action: Action

    /// - Parameters:
    ///   - reply: the SUBACK/UNSUBACK waiting for a save, instead of a PUBACK/PUBREC.
    public init(outcome: CommitOutcome, version: ProtocolVersion, qos: QoS, packetID: UInt16, reply: Packet? = nil) {
        if let reply {
            if outcome.isCommitted {
                action = .send(reply)
            } else {
                action = .disconnect(Self.disconnect(outcome, version: version))
            }
            return
        }
        if outcome.isCommitted || version >= .v5 {
            var properties = Properties()
            properties.reasonString = version >= .v5 ? outcome.reasonString : nil
            let ack = PubAckPacket(packetIdentifier: packetID, reasonCode: outcome.reasonCode, properties: properties)
            action = .send(qos == .exactlyOnce ? .pubRec(ack) : .pubAck(ack))
        } else {
            // MQTT 3.1/3.1.1: no way to refuse in a PUBACK; no acknowledgement, the client resends.
            action = .disconnect(nil)
        }
    }

    private static func disconnect(_ outcome: CommitOutcome, version: ProtocolVersion) -> DisconnectPacket? {
        guard version >= .v5 else { return nil }
        var properties = Properties()
        properties.reasonString = outcome.reasonString
        return DisconnectPacket(reasonCode: outcome.reasonCode, properties: properties)
    }
}

extension BrokerStats {
    mutating func notAcknowledged(_ outcome: CommitOutcome) {
        switch outcome {
        case .committed: break
        case .refused: publishRefused += 1
        case .failed: publishFailed += 1
        }
    }
}
