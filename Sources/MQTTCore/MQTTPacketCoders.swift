import NIOCore

/// NIO decoder: frames and decodes MQTT packets. When `version` starts nil (a server before CONNECT)
/// only CONNECT is accepted, and the version is learned from it.
///
/// A single-step decoder, so one type serves both `ByteToMessageHandler` (the bridge and the CLI
/// clients) and `NIOSingleStepByteToMessageProcessor` (the server's connection handler, which must
/// batch packets itself); it is the decoder the verifier tests and the fuzz target's rules check.
///
/// Errors are `MQTTError`s carrying the reason code to report (0x81 malformed, 0x82 protocol error,
/// 0x95 packet too large, 0x84 unsupported protocol version...). A packet larger than
/// `maximumPacketSize` is rejected from its fixed header, before its body is buffered.
public struct MQTTPacketDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Packet

    /// The negotiated protocol version; nil until CONNECT has been decoded.
    public var version: ProtocolVersion?
    /// The largest whole packet (fixed header included) accepted.
    public var maximumPacketSize: Int
    /// The topic of the last PUBLISH decoded, given again to the next one on the same topic.
    private var lastTopic = ""

    public init(version: ProtocolVersion? = nil, maximumPacketSize: Int = 268_435_460) {
        self.version = version
        self.maximumPacketSize = maximumPacketSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(MQTTError) -> Packet? {
        guard let frame = try MQTTCodec.readFrame(from: &buffer, maximumPacketSize: maximumPacketSize) else {
            return nil
        }
        let packet = try MQTTCodec.decode(frame, version: version, lastTopic: &lastTopic)
        if version == nil, case .connect(let connect) = packet {
            version = connect.protocolVersion
        }
        return packet
    }

    /// A partial packet left at end of stream is dropped, as the connection is gone anyway.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(MQTTError) -> Packet? {
        try decode(buffer: &buffer)
    }
}

/// NIO encoder: writes packets for one protocol version.
public struct MQTTPacketEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Packet

    public var version: ProtocolVersion

    public init(version: ProtocolVersion) {
        self.version = version
    }

    public func encode(data: Packet, out: inout ByteBuffer) throws {
        MQTTCodec.encode(data, version: version, into: &out)
    }
}
