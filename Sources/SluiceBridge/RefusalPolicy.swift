import MQTTCore

// Note on refusals: a PUBACK with a reason code >= 0x80 never deletes a queued message silently.
// Transient codes (the remote is busy or over a quota) keep the message in the queue: sending pauses
// for a hold that doubles while no message gets through and resets on the first success, then the
// refused messages go again, in seq order, before anything newer. Every other failure code is
// permanent: the message moves to the bridge's dead-letter table (same transaction as its removal
// from the queue), where an operator can list, requeue or drop it. A transient refusal counts
// towards `bridge_max_attempts` only when nothing else got through since the message's previous
// refusal, so a quota (0x97 above a rate) delays a backlog but never dead-letters it, while a
// message the remote refuses forever on an otherwise idle link ends in the dead letters.

/// Why a message left the queue for the dead-letter table. `code` is its byte in the store.
public enum DeadLetterReason: Sendable, Hashable, CustomStringConvertible {
    /// The remote's PUBACK refused it with this permanent reason code (>= 0x80).
    case refused(ReasonCode)
    /// Larger than the remote's Maximum Packet Size or `bridge_max_packet_size`: it can never be sent.
    case tooLarge
    /// In flight at `bridge_max_attempts` connection losses (a poison message), or refused
    /// transiently that often with no progress in between.
    case maxAttempts

    /// The byte kept in the store: the reason code itself for refusals, small values otherwise
    /// (reason codes below 0x80 are successes, so the ranges cannot collide).
    public var code: UInt8 {
        switch self {
        case .refused(let code): code.rawValue
        case .tooLarge: DeadLetterCodes.tooLarge
        case .maxAttempts: DeadLetterCodes.maxAttempts
        }
    }

    public var description: String {
        switch self {
        case .refused(let code): "refused with reason \(code) (\(code.name))"
        case .tooLarge: "too large for the remote"
        case .maxAttempts: "failed bridge_max_attempts times"
        }
    }
}

/// The store's dead-letter reason bytes below 0x80, shared with the store and the CLI.
public enum DeadLetterCodes {
    public static let tooLarge: UInt8 = 0x01
    public static let maxAttempts: UInt8 = 0x02
    /// `sluice queue drop BRIDGE --seq N` moved it.
    public static let operatorDrop: UInt8 = 0x03

    /// The metric label for a reason byte: "0x87", "too_large", "max_attempts", "operator_drop".
    public static func label(_ code: UInt8) -> String {
        switch code {
        case tooLarge: "too_large"
        case maxAttempts: "max_attempts"
        case operatorDrop: "operator_drop"
        default: ReasonCode(rawValue: code).hexLabel
        }
    }
}

extension ReasonCode {
    /// "0x97": the form metrics labels and aggregated warnings use.
    public var hexLabel: String {
        let hex = String(rawValue, radix: 16, uppercase: false)
        return "0x" + (hex.count < 2 ? "0" + hex : hex)
    }
}

/// How a failed PUBACK is handled.
public enum RefusalPolicy {
    public enum Kind: Sendable, Hashable {
        /// Retry after a hold: the remote may take it later.
        case transient
        /// Retrying cannot help: dead-letter it.
        case permanent
    }

    /// 0x80 Unspecified, 0x83 Implementation specific, 0x89 Server busy and 0x97 Quota exceeded are
    /// transient (MQTT 5 §3.4.2.1 allows them for conditions that pass); everything else is permanent.
    public static func classify(_ code: ReasonCode) -> Kind {
        switch code.rawValue {
        case 0x80, 0x83, 0x89, 0x97: .transient
        default: .permanent
        }
    }

    /// The hold after a transient refusal: `base` doubled for each hold in a row that saw no
    /// message get through, at most `cap`.
    public static func hold(base: Duration, cap: Duration, holdsWithoutProgress: Int) -> Duration {
        var delay = base
        for _ in 0..<min(holdsWithoutProgress, 30) where delay < cap { delay = delay * 2 }
        return min(delay, cap)
    }
}
