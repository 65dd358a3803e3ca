import NIOCore

// A note on the codec's shape. Decoding is two steps, as in postgres-nio: `readFrame` takes one whole
// packet off the front of the stream (or returns nil for more bytes, leaving the reader index where
// it was), and `decode` parses that frame's body and requires it to be consumed exactly; trailing
// bytes are a malformed packet. The maximum packet size is checked on the fixed header alone, before
// the body is buffered. Encoding computes the exact size first, reserves it once and writes.

/// One framed MQTT control packet: the first byte of the fixed header (type and flags) and the
/// body (variable header and payload), a slice of the received bytes.
public struct MQTTFrame: Sendable, Hashable {
    public var firstByte: UInt8
    public var body: ByteBuffer

    public init(firstByte: UInt8, body: ByteBuffer) {
        self.firstByte = firstByte
        self.body = body
    }

    /// The packet type, or nil for the reserved value 0.
    public var packetType: PacketType? { PacketType(rawValue: firstByte >> 4) }
    /// The four flag bits of the fixed header.
    public var flags: UInt8 { firstByte & 0x0F }
}

/// The MQTT 3.1 / 3.1.1 / 5.0 wire codec.
public enum MQTTCodec {
    /// The largest packet the wire can carry: one type byte, four length bytes and the largest
    /// remaining length (spec 1.5.5, 2.1.4).
    public static let maximumPacketSize = 1 + 4 + VariableByteInteger.maximum

    // MARK: Framing

    /// Frames one packet from the front of `buffer`. Returns nil (reader index unchanged) when more
    /// bytes are needed.
    ///
    /// Throws `.malformedPacket` for a bad remaining length (more than four bytes, or an overlong,
    /// non-minimal form [MQTT-1.5.5-1]), and `.packetTooLarge` when the whole packet (fixed header
    /// plus remaining length) exceeds `maximumPacketSize`: that is checked on the fixed header alone,
    /// before the body is buffered.
    public static func readFrame(from buffer: inout ByteBuffer, maximumPacketSize: Int) throws(MQTTError) -> MQTTFrame?
    {
        let start = buffer.readerIndex
        guard let firstByte = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        var remainingLength = 0
        var lengthBytes = 0
        while true {
            guard let byte = buffer.getInteger(at: start + 1 + lengthBytes, as: UInt8.self) else { return nil }
            remainingLength |= Int(byte & 0x7F) << (7 * lengthBytes)
            lengthBytes += 1
            if byte & 0x80 == 0 {
                if lengthBytes > 1 && byte == 0 {
                    throw .malformed("remaining length is not in its minimal form [MQTT-1.5.5-1]")
                }
                break
            }
            // [MQTT-1.5.5-1] at most four bytes.
            if lengthBytes == 4 { throw .malformed("remaining length longer than four bytes [MQTT-1.5.5-1]") }
        }
        let headerLength = 1 + lengthBytes
        let packetSize = headerLength + remainingLength
        // Bound before buffering: the server's Maximum Packet Size (spec 3.1.2.11.4, 3.2.2.3.6).
        guard packetSize <= maximumPacketSize else {
            throw MQTTError(
                .packetTooLarge,
                "packet of \(packetSize) bytes exceeds the maximum packet size \(maximumPacketSize)"
            )
        }
        guard buffer.readableBytes >= packetSize else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        guard let body = buffer.readSlice(length: remainingLength) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        return MQTTFrame(firstByte: firstByte, body: body)
    }

    // MARK: Decoding

    /// Decodes one framed packet. `version` is nil before CONNECT: then only CONNECT is accepted
    /// (anything else throws `.protocolError` [MQTT-3.1.0-1]) and the version is read from it.
    public static func decode(_ frame: MQTTFrame, version: ProtocolVersion?) throws(MQTTError) -> Packet {
        var lastTopic = ""
        return try decode(frame, version: version, lastTopic: &lastTopic)
    }

    /// `decode(_:version:)` for a connection's stream of packets: `lastTopic` is the topic of its previous
    /// PUBLISH, kept by the caller; a PUBLISH on the same topic gets that string, not a new one.
    public static func decode(
        _ frame: MQTTFrame,
        version: ProtocolVersion?,
        lastTopic: inout String
    ) throws(MQTTError) -> Packet {
        guard let type = frame.packetType else { throw .malformed("reserved packet type 0 [MQTT-2.1.2]") }
        let flags = frame.flags
        var body = frame.body
        let packet: Packet
        guard let version else {
            guard type == .connect else {
                throw .protocolError("first packet must be CONNECT, got \(type) [MQTT-3.1.0-1]")
            }
            try checkReservedFlags(type, flags, version: nil)
            packet = .connect(try ConnectPacket.decode(from: &body))
            try requireEmpty(body, type)
            return packet
        }
        try checkReservedFlags(type, flags, version: version)
        switch type {
        case .connect:
            packet = .connect(try ConnectPacket.decode(from: &body))
        case .connAck:
            packet = .connAck(try ConnAckPacket.decode(from: &body, version: version))
        case .publish:
            packet = .publish(
                try PublishPacket.decode(from: &body, flags: flags, version: version, lastTopic: &lastTopic)
            )
        case .pubAck:
            packet = .pubAck(try PubAckPacket.decode(from: &body, type: type, version: version))
        case .pubRec:
            packet = .pubRec(try PubAckPacket.decode(from: &body, type: type, version: version))
        case .pubRel:
            packet = .pubRel(try PubAckPacket.decode(from: &body, type: type, version: version))
        case .pubComp:
            packet = .pubComp(try PubAckPacket.decode(from: &body, type: type, version: version))
        case .subscribe:
            packet = .subscribe(try SubscribePacket.decode(from: &body, version: version))
        case .subAck:
            packet = .subAck(try SubAckPacket.decode(from: &body, version: version))
        case .unsubscribe:
            packet = .unsubscribe(try UnsubscribePacket.decode(from: &body, version: version))
        case .unsubAck:
            packet = .unsubAck(try UnsubAckPacket.decode(from: &body, version: version))
        case .pingReq, .pingResp:
            // [MQTT-3.12.1] / [MQTT-3.13.1]: no variable header, no payload.
            guard body.readableBytes == 0 else {
                throw .malformed("\(type) with remaining length \(body.readableBytes)")
            }
            packet = type == .pingReq ? .pingReq : .pingResp
        case .disconnect:
            packet = .disconnect(try DisconnectPacket.decode(from: &body, version: version))
        case .auth:
            guard version == .v5 else { throw .malformed("AUTH (packet type 15) is reserved before MQTT 5") }
            packet = .auth(try AuthPacket.decode(from: &body))
        }
        try requireEmpty(body, type)
        return packet
    }

    /// Frames and decodes one packet from the front of `buffer`: `readFrame` then `decode`. Returns nil
    /// (reader index unchanged) when more bytes are needed. After a decoding error the reader index is
    /// past the bad packet; the connection is to be closed anyway.
    public static func decodePacket(
        from buffer: inout ByteBuffer,
        version: ProtocolVersion?,
        maximumPacketSize: Int = MQTTCodec.maximumPacketSize
    ) throws(MQTTError) -> Packet? {
        guard let frame = try readFrame(from: &buffer, maximumPacketSize: maximumPacketSize) else { return nil }
        return try decode(frame, version: version)
    }

    /// Frame, decode the slice, require it empty: leftover bytes are a malformed packet.
    @inline(__always)
    private static func requireEmpty(_ body: ByteBuffer, _ type: PacketType) throws(MQTTError) {
        guard body.readableBytes == 0 else {
            throw .malformed("\(type): \(body.readableBytes) unexpected bytes after the packet")
        }
    }

    /// Fixed header flags (spec 2.1.3): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH its own
    /// flags, every other packet 0; anything else is malformed [MQTT-2.1.3-1]. MQTT 3.1 (MQIsdp) used
    /// these bits as DUP/QoS/RETAIN on every packet and did not require values, so, as Mosquitto does,
    /// they are not checked for 3.1 (CONNECT excepted: the version is not known before it).
    private static func checkReservedFlags(_ type: PacketType, _ flags: UInt8, version: ProtocolVersion?)
        throws(MQTTError)
    {
        let expected: UInt8
        switch type {
        case .publish: return
        case .pubRel, .subscribe, .unsubscribe: expected = 0b0010
        default: expected = 0
        }
        if version == .v3_1 && type != .connect { return }
        guard flags == expected else {
            throw .malformed("\(type): reserved fixed header flags 0b\(String(flags, radix: 2)) [MQTT-2.1.3-1]")
        }
    }

    // MARK: Encoding

    /// Encodes a packet for the given version. Fields the version lacks are left out: properties and
    /// reason codes before 5.0, a password without a user name before 5.0; AUTH does not exist before
    /// 5.0 and writes nothing there. Strings must fit in 65,535 bytes (validate user input first).
    public static func encode(_ packet: Packet, version: ProtocolVersion, into buffer: inout ByteBuffer) {
        if case .publish(let publish) = packet {
            // Every message delivered is encoded here.
            publish.encode(version: version, into: &buffer)
            return
        }
        if case .auth = packet, version < .v5 { return }
        let bodySize = bodySize(packet, version: version)
        buffer.reserveCapacity(minimumWritableBytes: 1 + VariableByteInteger.size(bodySize) + bodySize)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 5) { bytes in
            var header = RawBytesWriter(bytes)
            header.write(firstByte(packet))
            header.writeVariableByteInteger(bodySize)
            return header.count
        }
        switch packet {
        case .connect(let connect): connect.encodeBody(into: &buffer, version: version)
        case .connAck(let connAck): connAck.encodeBody(into: &buffer, version: version)
        case .publish: break  // written above
        case .pubAck(let ack), .pubRec(let ack), .pubRel(let ack), .pubComp(let ack):
            ack.encodeBody(into: &buffer, version: version)
        case .subscribe(let subscribe): subscribe.encodeBody(into: &buffer, version: version)
        case .subAck(let subAck): subAck.encodeBody(into: &buffer, version: version)
        case .unsubscribe(let unsubscribe): unsubscribe.encodeBody(into: &buffer, version: version)
        case .unsubAck(let unsubAck): unsubAck.encodeBody(into: &buffer, version: version)
        case .pingReq, .pingResp: break
        case .disconnect(let disconnect): disconnect.encodeBody(into: &buffer, version: version)
        case .auth(let auth): auth.encodeBody(into: &buffer)
        }
    }

    /// The size of `packet` on the wire when encoded for `version` (0 for AUTH before 5.0).
    public static func encodedSize(_ packet: Packet, version: ProtocolVersion) -> Int {
        if case .auth = packet, version < .v5 { return 0 }
        let body = bodySize(packet, version: version)
        return 1 + VariableByteInteger.size(body) + body
    }

    /// The remaining length of `packet` encoded for `version`.
    static func bodySize(_ packet: Packet, version: ProtocolVersion) -> Int {
        switch packet {
        case .connect(let connect): connect.bodySize(version: version)
        case .connAck(let connAck): connAck.bodySize(version: version)
        case .publish(let publish): publish.bodySize(version: version)
        case .pubAck(let ack), .pubRec(let ack), .pubRel(let ack), .pubComp(let ack): ack.bodySize(version: version)
        case .subscribe(let subscribe): subscribe.bodySize(version: version)
        case .subAck(let subAck): subAck.bodySize(version: version)
        case .unsubscribe(let unsubscribe): unsubscribe.bodySize(version: version)
        case .unsubAck(let unsubAck): unsubAck.bodySize(version: version)
        case .pingReq, .pingResp: 0
        case .disconnect(let disconnect): disconnect.bodySize(version: version)
        case .auth(let auth): auth.bodySize()
        }
    }

    static func firstByte(_ packet: Packet) -> UInt8 {
        let type = packet.type.rawValue << 4
        switch packet {
        case .publish(let publish):
            return publish.firstByte
        case .pubRel, .subscribe, .unsubscribe:
            return type | 0b0010
        default:
            return type
        }
    }
}
