/// Delayed wills and session expiry as due times (Mosquitto's will_delay.c and session_expiry.c):
/// `tick` asks what is due instead of walking every session. The sessions stay the truth (their
/// `delayedWill` and `expiresAt()`); a timer only says when to look.
struct WillAndExpiryTimers: Sendable {
    enum Kind: Sendable, Comparable {
        /// A will whose delay interval passed [MQTT-3.1.3-9].
        case will
        /// A session offline for its expiry interval [MQTT-3.1.2-23].
        case sessionExpiry
    }

    struct Due: Sendable, Equatable {
        var clientID: String
        var kind: Kind
        var at: BrokerTime
    }

    private var wills: [String: BrokerTime] = [:]
    private var expiries: [String: BrokerTime] = [:]
    /// No timer is due before this. A lower bound (cancelling does not raise it), so that a tick with
    /// nothing due costs one comparison.
    private var earliest = BrokerTime.max

    /// Timers set (for tests and metrics).
    var count: Int { wills.count + expiries.count }

    /// The will of `clientID` is due at `at`; nil cancels it.
    mutating func setWill(_ clientID: String, at: BrokerTime?) {
        wills[clientID] = at
        if let at { earliest = min(earliest, at) }
    }

    /// The session of `clientID` expires at `at`; nil (never) cancels it.
    mutating func setExpiry(_ clientID: String, at: BrokerTime?) {
        expiries[clientID] = at
        if let at { earliest = min(earliest, at) }
    }

    /// The session reconnected or ended: neither timer fires.
    mutating func cancel(_ clientID: String) {
        wills[clientID] = nil
        expiries[clientID] = nil
    }

    /// The timers due by `now`, removed: in due-time order, a will before an expiry due at the same
    /// time (so a session due for both sends its will, then ends), then by client identifier.
    mutating func takeDue(now: BrokerTime) -> [Due] {
        guard earliest <= now else { return [] }
        earliest = .max
        var due: [Due] = []
        func collect(_ timers: inout [String: BrokerTime], _ kind: Kind) {
            for (clientID, at) in timers {
                if at <= now {
                    due.append(Due(clientID: clientID, kind: kind, at: at))
                } else {
                    earliest = min(earliest, at)
                }
            }
            for entry in due where entry.kind == kind { timers[entry.clientID] = nil }
        }
        collect(&wills, .will)
        collect(&expiries, .sessionExpiry)
        return due.sorted { ($0.at, $0.kind, $0.clientID) < ($1.at, $1.kind, $1.clientID) }
    }
}
