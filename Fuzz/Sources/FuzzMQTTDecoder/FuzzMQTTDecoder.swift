// libFuzzer entry point for the MQTT decoder. No `main` and no `@main`: libFuzzer supplies `main`.
//
// Input layout: the first byte picks how the rest is decoded (its low two bits; the other bits are
// ignored so mutations of them are harmless):
//   0 → before CONNECT (version unknown: only CONNECT is accepted and sets the version),
//   1 → MQTT 3.1, 2 → MQTT 3.1.1, 3 → MQTT 5.
// The rest is a byte stream: packets are framed with `MQTTCodec.readFrame` and decoded with
// `MQTTCodec.decode` until the bytes run out or one throws, as a connection reads them. Each framed
// packet, short of its last byte, must frame as nil ("more bytes") without moving the reader. Every packet
// that decodes is encoded again (as the connection's version; a CONNECT as its own), decoded again and
// encoded a second time; the two packets and the two encodings must be equal (a mismatch traps, so
// libFuzzer keeps the input).
// Tests/MQTTCoreTests/FuzzCorpusTests.swift replays the corpus with the same rules.

import MQTTCore

/// Protocol version selected by the first input byte; nil means "before CONNECT".
func version(selector: UInt8) -> ProtocolVersion?? {
    switch selector & 0x03 {
    case 0: return .some(nil)
    case 1: return .v3_1
    case 2: return .v3_1_1
    default: return .v5
    }
}

func checkRoundTrip(_ packet: Packet, version: ProtocolVersion) {
    // AUTH does not exist before MQTT 5 (the decoder rejects it there), so there is nothing to encode.
    if case .auth = packet, version < .v5 { return }
    var first = ByteBuffer()
    MQTTCodec.encode(packet, version: version, into: &first)
    let announced = MQTTCodec.encodedSize(packet, version: version)
    guard first.readableBytes == announced else {
        fatalError("encodedSize \(announced) but \(first.readableBytes) bytes written for \(packet)")
    }
    let again: Packet
    do {
        var input = first
        guard let frame = try MQTTCodec.readFrame(from: &input, maximumPacketSize: MQTTCodec.maximumPacketSize),
            input.readableBytes == 0
        else { fatalError("re-encoded \(packet.type) does not frame as one packet") }
        again = try MQTTCodec.decode(frame, version: version)
    } catch {
        fatalError("re-encoded \(packet) does not decode as \(version): \(error)")
    }
    guard again == packet else { fatalError("round trip changed the packet:\n\(packet)\n→ \(again)") }
    var second = ByteBuffer()
    MQTTCodec.encode(again, version: version, into: &second)
    guard second == first else { fatalError("encoding is not stable for \(packet)") }
}

/// A packet short of its last byte is not an error: `readFrame` returns nil and leaves the reader index.
func checkShortInputWaits(_ short: ByteBuffer) {
    var buffer = short
    do {
        guard try MQTTCodec.readFrame(from: &buffer, maximumPacketSize: MQTTCodec.maximumPacketSize) == nil,
            buffer.readerIndex == short.readerIndex
        else { fatalError("a packet short of one byte was framed or consumed") }
    } catch {
        fatalError("a packet short of one byte threw \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    var current = version(selector: data[0])!
    var input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    while true {
        do {
            let before = input
            guard let frame = try MQTTCodec.readFrame(from: &input, maximumPacketSize: MQTTCodec.maximumPacketSize)
            else { return 0 }
            let frameLength = input.readerIndex - before.readerIndex
            checkShortInputWaits(before.getSlice(at: before.readerIndex, length: frameLength - 1)!)
            let packet = try MQTTCodec.decode(frame, version: current)
            if current == nil, case .connect(let connect) = packet { current = connect.protocolVersion }
            // A CONNECT carries its own version (and may differ from the connection's: a second CONNECT).
            if case .connect(let connect) = packet {
                checkRoundTrip(packet, version: connect.protocolVersion)
            } else {
                checkRoundTrip(packet, version: current ?? .v5)
            }
        } catch {
            return 0
        }
    }
}
