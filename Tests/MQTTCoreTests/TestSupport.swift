import NIOCore
import Testing

@testable import MQTTCore

/// Bytes → ByteBuffer.
func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// A ByteBuffer holding a string's UTF-8 bytes.
func payload(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

/// Encodes `packet` and checks the size it announced.
func encode(_ packet: Packet, _ version: ProtocolVersion) -> ByteBuffer {
    var out = ByteBuffer()
    MQTTCodec.encode(packet, version: version, into: &out)
    #expect(out.readableBytes == MQTTCodec.encodedSize(packet, version: version), "encodedSize of \(packet.type)")
    return out
}

/// Frames and decodes exactly one packet from `bytes`, requiring all bytes to be used.
func decode(
    _ bytes: ByteBuffer,
    _ version: ProtocolVersion?,
    maximumPacketSize: Int = MQTTCodec.maximumPacketSize
) throws(MQTTError) -> Packet {
    var input = bytes
    guard let frame = try MQTTCodec.readFrame(from: &input, maximumPacketSize: maximumPacketSize) else {
        throw MQTTError(.unspecifiedError, "test: incomplete frame")
    }
    let packet = try MQTTCodec.decode(frame, version: version)
    guard input.readableBytes == 0 else { throw MQTTError(.unspecifiedError, "test: bytes after the frame") }
    return packet
}

func decode(_ bytes: [UInt8], _ version: ProtocolVersion?) throws(MQTTError) -> Packet {
    try decode(buffer(bytes), version)
}

/// A packet from a fixed-header byte and a body; the remaining length is computed.
func packetBytes(_ firstByte: UInt8, _ body: [UInt8]) -> [UInt8] {
    var out = ByteBuffer()
    out.writeInteger(firstByte)
    out.writeMQTTVariableByteInteger(body.count)
    out.writeBytes(body)
    return Array(out.readableBytesView)
}

/// Two-byte length-prefixed UTF-8.
func str(_ s: String) -> [UInt8] {
    let bytes = Array(s.utf8)
    return [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
}

/// Expects `body` to throw an MQTTError with `code`, and returns it.
@discardableResult
func expectError(
    _ code: ReasonCode,
    _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(MQTTError) -> Void
) -> MQTTError? {
    do {
        try body()
        Issue.record(
            "expected error \(code), nothing thrown. \(comment?.description ?? "")",
            sourceLocation: sourceLocation
        )
        return nil
    } catch {
        #expect(error.code == code, "\(error) \(comment?.description ?? "")", sourceLocation: sourceLocation)
        return error
    }
}

/// Decoding `bytes` fails with `code`.
func expectDecodeError(
    _ code: ReasonCode,
    _ bytes: [UInt8],
    _ version: ProtocolVersion?,
    _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectError(code, comment, sourceLocation: sourceLocation) { () throws(MQTTError) in
        _ = try decode(bytes, version)
    }
}

/// Every property, set to a value that is valid where the property is allowed.
let allProperties: Properties = {
    var p = Properties()
    p.payloadFormatIndicator = 1
    p.messageExpiryInterval = 3600
    p.contentType = "application/json"
    p.responseTopic = "reply/to/me"
    p.correlationData = [1, 2, 3, 0, 255]
    p.subscriptionIdentifiers = [7, 268_435_455]
    p.sessionExpiryInterval = 0xFFFF_FFFF
    p.assignedClientIdentifier = "auto-1234"
    p.serverKeepAlive = 30
    p.authenticationMethod = "SCRAM-SHA-1"
    p.authenticationData = [9, 8, 7]
    p.requestProblemInformation = 0
    p.willDelayInterval = 10
    p.requestResponseInformation = 1
    p.responseInformation = "resp/"
    p.serverReference = "other.example:1883"
    p.reasonString = "because ünïcödé"
    p.receiveMaximum = 20
    p.topicAliasMaximum = 10
    p.topicAlias = 5
    p.maximumQoS = 1
    p.retainAvailable = 1
    p.userProperties = [UserProperty("a", "1"), UserProperty("a", "2"), UserProperty("", "")]
    p.maximumPacketSize = 1_048_576
    p.wildcardSubscriptionAvailable = 0
    p.subscriptionIdentifierAvailable = 1
    p.sharedSubscriptionAvailable = 0
    return p
}()

let versions3: [ProtocolVersion] = [.v3_1, .v3_1_1]
let allVersions: [ProtocolVersion] = [.v3_1, .v3_1_1, .v5]

/// A small deterministic PRNG (SplitMix64) so fuzz-style tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
