// A note on the Semtech UDP protocol (Lora-net/packet_forwarder PROTOCOL.TXT, version 2).
//
// Every datagram starts with a four-byte header: protocol version (2), a two-byte random token
// chosen by the sender of a request and echoed by its acknowledgement, and an identifier.
// Gateway-to-server requests (PUSH_DATA, PULL_DATA, TX_ACK) then carry the gateway's 8-byte EUI;
// PUSH_DATA, PULL_RESP and TX_ACK end with a JSON object. Nothing else is framed: one datagram
// is one packet, so anything left after the fixed part of an ack is a malformed datagram.

/// The six packet types of the Semtech UDP protocol, version 2.
public enum GWMPPacket: Sendable, Equatable {
    /// Gateway → server: received radio packets (`rxpk`) and/or status (`stat`). Answered by PUSH_ACK.
    case pushData(token: UInt16, gateway: GatewayEUI, PushDataBody)
    /// Server → gateway: acknowledges a PUSH_DATA with its token.
    case pushAck(token: UInt16)
    /// Gateway → server: keep-alive that opens the downlink path through NAT. Answered by PULL_ACK.
    case pullData(token: UInt16, gateway: GatewayEUI)
    /// Server → gateway: one packet to transmit (`txpk`). Sent to the address of the last PULL_DATA.
    case pullResp(token: UInt16, PullRespBody)
    /// Server → gateway: acknowledges a PULL_DATA with its token.
    case pullAck(token: UInt16)
    /// Gateway → server: outcome of a PULL_RESP, with its token. The JSON body is optional
    /// (older forwarders send none, meaning no error).
    case txAck(token: UInt16, gateway: GatewayEUI, TxAckBody?)

    public var token: UInt16 {
        switch self {
        case .pushData(let token, _, _), .pushAck(let token), .pullData(let token, _), .pullResp(let token, _),
            .pullAck(let token), .txAck(let token, _, _):
            return token
        }
    }

    public var identifier: GWMPIdentifier {
        switch self {
        case .pushData: .pushData
        case .pushAck: .pushAck
        case .pullData: .pullData
        case .pullResp: .pullResp
        case .pullAck: .pullAck
        case .txAck: .txAck
        }
    }
}

/// Byte 3 of the header.
public enum GWMPIdentifier: UInt8, Sendable, CaseIterable {
    case pushData = 0x00
    case pushAck = 0x01
    case pullData = 0x02
    case pullResp = 0x03
    case pullAck = 0x04
    case txAck = 0x05
}

/// Why a datagram was dropped. Every case is counted by the listener, never thrown past it.
public struct GWMPError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Shorter than the header, or than the fixed part of its packet type.
        case tooShort = "too_short"
        /// Larger than `GWMPCodec.maximumDatagramSize`.
        case tooLarge = "too_large"
        /// Protocol version other than 2 (version 1 forwarders are not supported).
        case unsupportedVersion = "unsupported_version"
        /// Identifier byte not one of the six packet types.
        case unknownIdentifier = "unknown_identifier"
        /// The JSON body is not valid JSON, not an object, or has fields of the wrong type.
        case badJSON = "bad_json"
        /// Bytes after the fixed part of a packet that has no body.
        case trailingBytes = "trailing_bytes"
    }

    public var code: Code
    public var detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// Decodes and encodes whole datagrams. Pure: no sockets, no clocks.
public enum GWMPCodec {
    /// The protocol version this codec speaks (PROTOCOL.TXT §3: "protocol version = 2").
    public static let protocolVersion: UInt8 = 2
    /// Datagrams above this size are dropped unread. The reference forwarder's PUSH_DATA buffer
    /// holds 8 packets of ≤ 540 bytes of JSON each plus status (~4.6 KB); 32 KiB leaves room for
    /// the larger batches of SX1302 forwarders while bounding what one datagram can cost us.
    public static let maximumDatagramSize = 32 * 1024

    static let headerSize = 4
    static let euiSize = 8

    public static func decode(_ datagram: [UInt8]) throws(GWMPError) -> GWMPPacket {
        guard datagram.count <= maximumDatagramSize else {
            throw GWMPError(.tooLarge, "\(datagram.count) bytes, limit \(maximumDatagramSize)")
        }
        guard datagram.count >= headerSize else {
            throw GWMPError(.tooShort, "\(datagram.count) bytes, header needs \(headerSize)")
        }
        guard datagram[0] == protocolVersion else {
            throw GWMPError(.unsupportedVersion, "version \(datagram[0])")
        }
        let token = UInt16(datagram[1]) << 8 | UInt16(datagram[2])
        guard let identifier = GWMPIdentifier(rawValue: datagram[3]) else {
            throw GWMPError(.unknownIdentifier, "identifier 0x\(String(datagram[3], radix: 16))")
        }
        let rest = datagram[headerSize...]
        switch identifier {
        case .pushAck:
            try requireEmpty(rest, identifier)
            return .pushAck(token: token)
        case .pullAck:
            try requireEmpty(rest, identifier)
            return .pullAck(token: token)
        case .pullData:
            let gateway = try readEUI(rest, identifier)
            try requireEmpty(rest.dropFirst(euiSize), identifier)
            return .pullData(token: token, gateway: gateway)
        case .pushData:
            let gateway = try readEUI(rest, identifier)
            let body: PushDataBody = try GWMPJSON.decode(rest.dropFirst(euiSize), identifier)
            return .pushData(token: token, gateway: gateway, body)
        case .txAck:
            let gateway = try readEUI(rest, identifier)
            let json = rest.dropFirst(euiSize)
            // Some forwarders end an empty body with a NUL byte; treat that as no body.
            if json.allSatisfy({ $0 == 0 || $0 == 0x20 || $0 == 0x0A || $0 == 0x0D }) {
                return .txAck(token: token, gateway: gateway, nil)
            }
            let body: TxAckBody = try GWMPJSON.decode(json, identifier)
            return .txAck(token: token, gateway: gateway, body)
        case .pullResp:
            let body: PullRespBody = try GWMPJSON.decode(rest, identifier)
            return .pullResp(token: token, body)
        }
    }

    public static func encode(_ packet: GWMPPacket) -> [UInt8] {
        let token = packet.token
        var bytes: [UInt8] = [protocolVersion, UInt8(token >> 8), UInt8(token & 0xFF), packet.identifier.rawValue]
        switch packet {
        case .pushAck, .pullAck:
            break
        case .pullData(_, let gateway):
            bytes += gateway.bytes
        case .pushData(_, let gateway, let body):
            bytes += gateway.bytes
            bytes += GWMPJSON.encode(body)
        case .pullResp(_, let body):
            bytes += GWMPJSON.encode(body)
        case .txAck(_, let gateway, let body):
            bytes += gateway.bytes
            if let body { bytes += GWMPJSON.encode(body) }
        }
        return bytes
    }

    private static func readEUI(_ bytes: ArraySlice<UInt8>, _ identifier: GWMPIdentifier) throws(GWMPError)
        -> GatewayEUI
    {
        guard bytes.count >= euiSize else {
            throw GWMPError(.tooShort, "\(identifier) without the 8-byte gateway EUI")
        }
        return GatewayEUI(bytes: bytes.prefix(euiSize))
    }

    private static func requireEmpty(_ bytes: ArraySlice<UInt8>, _ identifier: GWMPIdentifier) throws(GWMPError) {
        guard bytes.isEmpty else { throw GWMPError(.trailingBytes, "\(bytes.count) byte(s) after \(identifier)") }
    }
}
