import MQTTCore

/// Why a connected client's connection ended, for the one log line per disconnect.
public enum DepartureReason: Sendable, Hashable, CustomStringConvertible {
    /// The client sent DISCONNECT with this reason code (0x00 for 3.1/3.1.1).
    case clientDisconnect(ReasonCode)
    /// Nothing from the client for 1.5 × its keep-alive [MQTT-3.1.2-22].
    case keepAliveTimeout
    /// The socket closed without a DISCONNECT.
    case socketClosed
    /// The socket failed (the cause in plain words, e.g. `connection reset by peer`).
    case socketError(String)
    /// A new connection with the same client identifier took the session over [MQTT-3.1.4-3].
    case takenOver
    /// The client broke the protocol; the text says how.
    case protocolError(String)
    /// The broker closed the connection because a message could not be kept (3.1.1: no PUBACK without a commit).
    case notStored(ReasonCode?)

    public var description: String {
        switch self {
        case .clientDisconnect(let code): code == .normalDisconnection ? "DISCONNECT" : "DISCONNECT \(code.named)"
        case .keepAliveTimeout: "keep-alive timeout"
        case .socketClosed: "socket closed without DISCONNECT"
        case .socketError(let cause): "socket error: \(cause)"
        case .takenOver: "session taken over by a new connection"
        case .protocolError(let text): "protocol error: \(text)"
        case .notStored(let code): "a message could not be stored\(code.map { " (\($0.named))" } ?? "")"
        }
    }
}

/// A connected client left: who, how it had connected, and why.
public struct Departure: Sendable, Hashable {
    public var connection: ConnectionID
    public var clientID: String
    public var protocolVersion: ProtocolVersion
    public var reason: DepartureReason
}
