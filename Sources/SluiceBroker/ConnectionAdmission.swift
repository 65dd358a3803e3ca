import MQTTCore

/// What the owner's authentication of a CONNECT decided (`Broker.authenticated`).
public enum AuthenticationDecision: Sendable, Equatable {
    case accept
    /// CONNACK with this reason (0x86 bad user name or password, 0x87 not authorized, 0x88 server
    /// unavailable; the codec maps them for 3.1.1), then close.
    case refuse(ReasonCode)
}

/// One connection's way in, from its CONNECT until the broker admits it (then `ClientConnection`
/// holds it) or refuses it (then it is closed):
///
///     awaitingAuthentication --accept--> (the broker rules) --identifier held--> awaitingTakeover
///              |                                  |                                   |
///            refuse                          admitted/refused                 previous one gone
///              v                                  v                                   v
///           refused                       packets kept are handled         (the broker rules again)
///
/// What the client sends meanwhile is kept, in order, and handled once it is admitted; a client
/// that floods while it waits is refused rather than buffered without bound.
struct ConnectionAdmission: Sendable {
    enum State: Sendable, Equatable {
        /// The owner checks the credentials (`BrokerAction.authenticate`); `authenticated` moves on.
        case awaitingAuthentication
        /// Admitted by the rules, but `previous` still holds the client identifier: told to go once
        /// what its client sent has been read, and this connection is admitted when it is gone.
        case awaitingTakeover(previous: ConnectionID)
    }

    /// What to do next, for the broker to carry out.
    enum Next: Sendable, Equatable {
        /// Apply the broker's CONNECT rules now (they may admit, refuse, or wait for a takeover).
        case applyRules
        /// CONNACK with this failure, then close.
        case refuse(ReasonCode)
        /// Nothing: the packet was kept, or the event does not apply in this state.
        case wait
    }

    /// A client that floods while it waits is closed rather than buffered.
    static let maxBufferedPackets = 1000

    let state: State
    let packet: ConnectPacket
    let listener: Int
    /// What the client sent after its CONNECT, handled once it is admitted.
    private(set) var buffered: [Packet] = []

    init(_ packet: ConnectPacket, listener: Int, state: State = .awaitingAuthentication) {
        self.packet = packet
        self.listener = listener
        self.state = state
    }

    /// A packet that arrived while the connection waits.
    mutating func received(_ packet: Packet) -> Next {
        guard buffered.count < Self.maxBufferedPackets else { return .refuse(.serverBusy) }
        buffered.append(packet)
        return .wait
    }

    /// The owner's authentication decided.
    func authenticated(_ decision: AuthenticationDecision) -> Next {
        guard state == .awaitingAuthentication else { return .wait }
        switch decision {
        case .accept: return .applyRules
        case .refuse(let reason): return .refuse(reason)
        }
    }

    /// Whether it waits for `previous` to be gone.
    func awaits(_ previous: ConnectionID) -> Bool { state == .awaitingTakeover(previous: previous) }

    /// `previous` is gone: apply the rules again (a second waiter then finds the first connected,
    /// and waits again, for it).
    func previousGone(_ previous: ConnectionID) -> Next { awaits(previous) ? .applyRules : .wait }
}
