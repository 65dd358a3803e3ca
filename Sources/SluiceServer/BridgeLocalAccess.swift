import Logging
import NIOConcurrencyHelpers
import SluiceBridge
import SluiceBroker

/// Mosquitto's `local_username`: the bridge's local side is held to the ACL as that user (client id
/// `local_clientid`, by default Mosquitto's `local.<remote_clientid>`, for `%c` patterns). A message from the
/// central (`in` rules) is published locally only if the user may write its topic; a local message is queued
/// for the central (`out` rules) only if the user may read it. Denials are counted per direction (metrics) and
/// logged once, then summed once a minute. Without an `acl_file` everything passes, as in Mosquitto.
///
/// Called on the broker's loop (the ACL lives there); the counts are read from the bridge's loop, hence the lock.
final class BridgeLocalAccess: Sendable {
    enum Direction: String, Sendable {
        case inbound = "in"
        case outbound = "out"
    }

    let clientID: String
    let username: String
    private let logger: Logger
    private struct State {
        var denied: [Direction: UInt64] = [:]
        var warnings = WarningAggregator<ContinuousClock.Instant>()
    }
    private let state = NIOLockedValueBox(State())

    init(username: String, clientID: String, logger: Logger) {
        self.username = username
        self.clientID = clientID
        self.logger = logger
    }

    /// Whether `policy` lets the local side take `topic` (the local topic) in `direction`; counts and logs a denial.
    func allows(_ direction: Direction, topic: String, policy: (any AccessPolicy)?) -> Bool {
        guard let policy else { return true }
        let allowed =
            switch direction {
            case .inbound: policy.mayPublish(clientID: clientID, username: username, topic: topic)
            case .outbound: policy.mayReceive(clientID: clientID, username: username, topic: topic)
            }
        if allowed { return true }
        let now = ContinuousClock.now
        let access = direction == .inbound ? "write" : "read"
        let refusal = "acl_file does not let local_username '\(username)' \(access)"
        let line = state.withLockedValue { state in
            state.denied[direction, default: 0] += 1
            return state.warnings.note(
                direction.rawValue,
                now: now,
                first: "\(refusal) '\(topic)' as client id '\(clientID)': \(direction.rawValue) message dropped"
                    + " (further denials are summed once a minute)",
                summary: "\(direction.rawValue) messages dropped because \(refusal) their topics"
            )
        }
        if let line { logger.warning("\(line)") }
        return false
    }

    /// Logs the sums of denial periods that have ended (from the bridge's tick).
    func flushWarnings() {
        let lines = state.withLockedValue { $0.warnings.flush(now: .now) }
        for line in lines { logger.warning("\(line)") }
    }

    /// Messages dropped so far, by direction ("in", "out").
    var denied: [String: UInt64] {
        state.withLockedValue { state in
            Dictionary(uniqueKeysWithValues: state.denied.map { ($0.key.rawValue, $0.value) })
        }
    }
}
