import NIOCore
import Testing

@testable import MQTTCore

@Suite("Framing and data types")
struct FramingTests {
    @Test func shortInputReturnsNilAndRewinds() throws {
        let whole = Array(
            encode(.publish(PublishPacket(topic: "a/b", payload: payload("hello"))), .v3_1_1).readableBytesView
        )
        for cut in 0..<whole.count {
            var input = buffer(Array(whole[..<cut]))
            let readerIndex = input.readerIndex
            #expect(try MQTTCodec.readFrame(from: &input, maximumPacketSize: 1000) == nil)
            #expect(input.readerIndex == readerIndex)
        }
        var input = buffer(whole + [0xC0])
        let frame = try #require(try MQTTCodec.readFrame(from: &input, maximumPacketSize: 1000))
        #expect(frame.firstByte == 0x30)
        #expect(frame.body.readableBytes == whole.count - 2)
        #expect(input.readableBytes == 1)  // the next packet's first byte stays
    }

    @Test func decodePacketFramesAndDecodes() throws {
        var input = encode(.pingReq, .v5)
        input.writeBytes([0xD0])
        #expect(try MQTTCodec.decodePacket(from: &input, version: .v5) == .pingReq)
        #expect(try MQTTCodec.decodePacket(from: &input, version: .v5) == nil)
        #expect(input.readableBytes == 1)
        input.writeBytes([0])
        #expect(try MQTTCodec.decodePacket(from: &input, version: .v5) == .pingResp)
    }

    @Test(arguments: [
        ([0x00] as [UInt8], 0), ([0x7F], 127), ([0x80, 0x01], 128), ([0xFF, 0x7F], 16_383),
        ([0x80, 0x80, 0x01], 16_384), ([0xFF, 0xFF, 0x7F], 2_097_151), ([0x80, 0x80, 0x80, 0x01], 2_097_152),
        ([0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
    ])
    func variableByteIntegers(bytes: [UInt8], value: Int) throws {
        var input = buffer(bytes)
        #expect(try input.readMQTTVariableByteInteger("test") == value)
        #expect(input.readableBytes == 0)
        var out = ByteBuffer()
        out.writeMQTTVariableByteInteger(value)
        #expect(Array(out.readableBytesView) == bytes)
        #expect(VariableByteInteger.size(value) == bytes.count)
    }

    @Test(arguments: [
        [0x80, 0x00] as [UInt8], [0xFF, 0x00], [0x80, 0x80, 0x00], [0x81, 0x80, 0x80, 0x00], [0x80, 0x80, 0x80, 0x00],
    ])
    func nonMinimalVariableByteIntegersAreMalformed(bytes: [UInt8]) {
        // [MQTT-1.5.5-1]
        var input = buffer(bytes)
        expectError(.malformedPacket) { () throws(MQTTError) in _ = try input.readMQTTVariableByteInteger("test") }
        var frame = buffer([0x30] + bytes + [UInt8](repeating: 0, count: 10))
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try MQTTCodec.readFrame(from: &frame, maximumPacketSize: .max)
        }
    }

    @Test func fiveByteVariableByteIntegerIsMalformed() throws {
        var input = buffer([0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        expectError(.malformedPacket) { () throws(MQTTError) in _ = try input.readMQTTVariableByteInteger("test") }
        // Detected from the four length bytes alone, without waiting for a fifth.
        var frame = buffer([0x30, 0x80, 0x80, 0x80, 0x80])
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try MQTTCodec.readFrame(from: &frame, maximumPacketSize: .max)
        }
        var incomplete = buffer([0x30, 0x80, 0x80, 0x80])
        #expect(try MQTTCodec.readFrame(from: &incomplete, maximumPacketSize: .max) == nil)
    }

    @Test func truncatedVariableByteIntegerInsideABodyIsMalformed() {
        var input = buffer([0x80])
        expectError(.malformedPacket) { () throws(MQTTError) in _ = try input.readMQTTVariableByteInteger("test") }
    }

    @Test func maximumPacketSizeIsCheckedFromTheFixedHeaderAlone() throws {
        // Only the fixed header of a 268 MB PUBLISH: rejected before any of the body arrives.
        var header = buffer([0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        expectError(.packetTooLarge) { () throws(MQTTError) in
            _ = try MQTTCodec.readFrame(from: &header, maximumPacketSize: 1024)
        }
        // The limit counts the whole packet: header (2 bytes) + remaining length.
        var exact = buffer([0x30, 100])
        #expect(try MQTTCodec.readFrame(from: &exact, maximumPacketSize: 102) == nil)  // fits, needs body
        var over = buffer([0x30, 101])
        expectError(.packetTooLarge) { () throws(MQTTError) in
            _ = try MQTTCodec.readFrame(from: &over, maximumPacketSize: 102)
        }
    }

    @Test func maximumPacketSizeThroughTheChannelDecoder() {
        var decoder = MQTTPacketDecoder(version: .v5, maximumPacketSize: 1024)
        #expect(decoder.maximumPacketSize == 1024)
        var header = buffer([0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        decoder.version = .v5
        do {
            _ = try MQTTCodec.readFrame(from: &header, maximumPacketSize: decoder.maximumPacketSize)
            Issue.record("no error")
        } catch {
            #expect(error.code == .packetTooLarge)
        }
    }

    @Test func strings() throws {
        var input = buffer(str("héllo ✓ 𝄞") + str(""))
        #expect(try input.readMQTTString("s") == "héllo ✓ 𝄞")
        #expect(try input.readMQTTString("s") == "")
        #expect(input.readableBytes == 0)
        // A long ASCII string exercises the eight-bytes-at-a-time path.
        let long = String(repeating: "abcdefgh", count: 100) + "xyz"
        var longInput = buffer(str(long))
        #expect(try longInput.readMQTTString("s") == long)
    }

    @Test(arguments: [
        ([0x61, 0x00, 0x62] as [UInt8], "U+0000"),
        (Array("abcdefgh\u{0}ijklmnop".utf8), "U+0000 in an ASCII word"),
        ([0xC0, 0x80], "overlong NUL"),
        ([0xC1, 0xBF], "overlong two-byte"),
        ([0xE0, 0x80, 0x80], "overlong three-byte"),
        ([0xF0, 0x80, 0x80, 0x80], "overlong four-byte"),
        ([0xED, 0xA0, 0x80], "surrogate D800"),
        ([0xED, 0xBF, 0xBF], "surrogate DFFF"),
        ([0xF4, 0x90, 0x80, 0x80], "above U+10FFFF"),
        ([0xF5, 0x80, 0x80, 0x80], "F5 lead byte"),
        ([0xFF], "FF"),
        ([0x80], "lone continuation"),
        ([0xC3], "truncated two-byte"),
        ([0xE2, 0x82], "truncated three-byte"),
        ([0xC3, 0x41], "bad continuation"),
    ])
    func invalidStringsAreMalformed(bytes: [UInt8], name: String) {
        // [MQTT-1.5.4-1] [MQTT-1.5.4-2]
        var input = buffer([0, UInt8(bytes.count)] + bytes)
        expectError(.malformedPacket, "\(name)") { () throws(MQTTError) in _ = try input.readMQTTString("s") }
    }

    /// A PUBLISH's topic name is checked for wildcards in the UTF-8 pass: in an eight-byte ASCII word, in
    /// the bytes after the last whole word, and next to multi-byte characters.
    @Test(arguments: [
        "+", "#", "a/+", "sensors/#", "abcdefg+", "abcdefgh#", "abcdefgh/ijklmno+/p", "é+", "+é", "日本#語",
        "abcdefghé/ijklmnop/#",
    ])
    func wildcardsInTopicNamesAreRefused(topic: String) {
        var input = buffer(str(topic))
        let error = expectError(.topicNameInvalid, "\(topic)") { () throws(MQTTError) in
            _ = try input.readMQTTTopicName("t")
        }
        #expect(error?.message == "topic name contains a wildcard [MQTT-3.3.2-2]")
        // The same bytes are a valid string elsewhere (a topic filter is one).
        var plain = buffer(str(topic))
        #expect((try? plain.readMQTTString("s")) == topic)
    }

    @Test(arguments: ["", "a", "a/b/c", "abcdefgh/ijklmnop/qrstuvwx", "héllo/✓/𝄞", "$SYS/broker", "a b/*/!"])
    func topicNamesWithoutWildcardsAreRead(topic: String) throws {
        var input = buffer(str(topic) + [0xAA])
        #expect(try input.readMQTTTopicName("t") == topic)
        #expect(input.readableBytes == 1)
    }

    /// The address of a (non-small) string's bytes: the same for one string, another for a new one.
    static func storage(_ string: String) -> UnsafePointer<UInt8>? {
        string.utf8.withContiguousStorageIfAvailable { $0.baseAddress } ?? nil
    }

    /// A topic like the last is that string again, not a new one; anything else is read and checked anew.
    @Test func aTopicLikeTheLastIsReusedAndNothingElseIs() throws {
        let topic = "site/12345/sensor/temperature"  // past 15 bytes: a string with storage of its own
        var previous = ""
        var first = buffer(str(topic) + [0xAA])
        let read = try first.readMQTTTopicName("t", reusing: &previous)
        #expect(read == topic && previous == topic && first.readableBytes == 1)
        var again = buffer(str(topic) + [0xAA])
        let reused = try again.readMQTTTopicName("t", reusing: &previous)
        #expect(reused == topic && again.readableBytes == 1)
        #expect(Self.storage(reused) != nil && Self.storage(reused) == Self.storage(read))

        // Same length, other bytes (first, middle and last byte, and within the eight-byte words).
        for position in [0, 7, 8, 15, topic.utf8.count - 1] {
            var bytes = Array(topic.utf8)
            bytes[position] = UInt8(ascii: "x")
            var other = buffer(str(String(decoding: bytes, as: UTF8.self)))
            var remembered = topic
            let different = try other.readMQTTTopicName("t", reusing: &remembered)
            #expect(Array(different.utf8) == bytes && Array(remembered.utf8) == bytes, "byte \(position)")
        }
        // Same length, but invalid: a wildcard, U+0000, malformed UTF-8; and a body too short for the length.
        for bad: [UInt8] in [
            Array("site/12345/sensor/temperatur#".utf8), Array("site/12345/sensor/temperatur\u{0}".utf8),
            Array("site/12345/sensor/temperatur".utf8) + [0xC3],
        ] {
            var input = buffer([0, UInt8(bad.count)] + bad)
            var remembered = topic
            #expect(throws: MQTTError.self, "\(bad)") { try input.readMQTTTopicName("t", reusing: &remembered) }
            #expect(remembered == topic)
        }
        var truncated = buffer([0, UInt8(topic.utf8.count)] + Array(topic.utf8).dropLast())
        var remembered = topic
        #expect(throws: MQTTError.self) { try truncated.readMQTTTopicName("t", reusing: &remembered) }
        // An MQTT 5 topic alias's empty name is read and leaves the remembered topic.
        var empty = buffer(str(""))
        #expect(try empty.readMQTTTopicName("t", reusing: &remembered) == "" && remembered == topic)
    }

    /// Through the decoder a connection keeps: the second PUBLISH on a topic shares the first's string.
    @Test func theDecoderGivesAPublishOnTheLastTopicThatString() throws {
        var decoder = MQTTPacketDecoder(version: .v3_1_1)
        let topic = "gateway/lorawan/0011223344556677/up"
        var input = ByteBuffer()
        for payload in ["a", "b"] {
            MQTTCodec.encode(
                .publish(PublishPacket(topic: topic, payload: ByteBuffer(string: payload), qos: .atMostOnce)),
                version: .v3_1_1,
                into: &input
            )
        }
        guard case .publish(let first)? = try decoder.decode(buffer: &input),
            case .publish(let second)? = try decoder.decode(buffer: &input)
        else {
            Issue.record("two PUBLISH packets expected")
            return
        }
        #expect(first.topic == topic && second.topic == topic)
        #expect(String(buffer: second.payload) == "b")
        #expect(Self.storage(first.topic) == Self.storage(second.topic))
    }

    /// Malformed UTF-8 is malformed even with a wildcard before it: the packet is malformed, whatever else.
    @Test func aMalformedTopicNameWithAWildcardIsMalformed() {
        for bytes: [UInt8] in [Array("+bcdefgh\u{0}".utf8), [0x23, 0x61, 0x00], [0x2B, 0xC3, 0x41]] {
            var input = buffer([0, UInt8(bytes.count)] + bytes)
            expectError(.malformedPacket, "\(bytes)") { () throws(MQTTError) in _ = try input.readMQTTTopicName("t") }
        }
    }

    @Test func truncatedStringsAndBinaryAreMalformed() {
        for bytes: [UInt8] in [[], [0], [0, 3, 0x61, 0x62]] {
            var s = buffer(bytes)
            expectError(.malformedPacket) { () throws(MQTTError) in _ = try s.readMQTTString("s") }
            var b = buffer(bytes)
            expectError(.malformedPacket) { () throws(MQTTError) in _ = try b.readMQTTBinary("b") }
            var c = buffer(bytes)
            expectError(.malformedPacket) { () throws(MQTTError) in _ = try c.readMQTTBinarySlice("b") }
        }
    }

    @Test func binaryData() throws {
        var input = buffer([0, 3, 0, 0xFF, 7, 0, 0])
        #expect(try input.readMQTTBinary("b") == [0, 0xFF, 7])
        #expect(try input.readMQTTBinary("b") == [])
    }

    @Test func reservedPacketTypeZeroIsMalformed() {
        expectDecodeError(.malformedPacket, [0x00, 0x00], .v3_1_1)
        expectDecodeError(.malformedPacket, [0x00, 0x00], .v5)
    }

    @Test func authBefore5IsMalformed() {
        expectDecodeError(.malformedPacket, [0xF0, 0x00], .v3_1_1)
        expectDecodeError(.malformedPacket, [0xF0, 0x00], .v3_1)
    }

    @Test(arguments: [0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0] as [UInt8])
    func onlyConnectBeforeTheVersionIsKnown(firstByte: UInt8) {
        // [MQTT-3.1.0-1]
        expectDecodeError(.protocolError, packetBytes(firstByte, [0, 1, 0]), nil)
    }

    @Test(arguments: allVersions)
    func reservedFixedHeaderFlags(version: ProtocolVersion) throws {
        // (packet type, valid flags, a sample valid body)
        let cases: [(UInt8, UInt8, [UInt8])] = [
            (2, 0, [0, 0] + (version == .v5 ? [0] : [])),  // CONNACK
            (4, 0, [0, 1]), (5, 0, [0, 1]), (6, 2, [0, 1]), (7, 0, [0, 1]),  // PUBACK..PUBCOMP
            (8, 2, [0, 1] + (version == .v5 ? [0] : []) + str("a") + [0]),  // SUBSCRIBE
            (9, 0, [0, 1] + (version == .v5 ? [0] : []) + [0]),  // SUBACK
            (10, 2, [0, 1] + (version == .v5 ? [0] : []) + str("a")),  // UNSUBSCRIBE
            (11, 0, [0, 1] + (version == .v5 ? [0, 0] : [])),  // UNSUBACK
            (12, 0, []), (13, 0, []), (14, 0, []),
        ]
        for (type, flags, body) in cases {
            _ = try decode(packetBytes(type << 4 | flags, body), version)
            for bad in 0..<16 as Range<UInt8> where bad != flags {
                let bytes = packetBytes(type << 4 | bad, body)
                if version == .v3_1 {
                    // 3.1 used these bits as DUP/QoS/RETAIN and did not fix them (Mosquitto ignores them too).
                    _ = try decode(bytes, version)
                } else {
                    expectDecodeError(.malformedPacket, bytes, version, "type \(type) flags \(bad) [MQTT-2.1.3-1]")
                }
            }
        }
        if version == .v5 {
            _ = try decode(packetBytes(0xF0, []), .v5)
            expectDecodeError(.malformedPacket, packetBytes(0xF1, []), .v5)
        }
        // CONNECT flags are checked in every version.
        let connect = Array(
            encode(.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c")), version).readableBytesView
        )
        var badConnect = connect
        badConnect[0] |= 0x01
        expectDecodeError(.malformedPacket, badConnect, nil)
        expectDecodeError(.malformedPacket, badConnect, version)
    }

    @Test(arguments: allVersions)
    func trailingBytesAreMalformed(version: ProtocolVersion) {
        var packets: [Packet] = [
            .connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c")),
            .connAck(ConnAckPacket()),
            .pubAck(PubAckPacket(packetIdentifier: 1, reasonCode: .unspecifiedError, properties: allProperties)),
            .pubRec(PubAckPacket(packetIdentifier: 1, reasonCode: .unspecifiedError, properties: allProperties)),
            .pubRel(PubAckPacket(packetIdentifier: 1, reasonCode: .unspecifiedError, properties: allProperties)),
            .pubComp(PubAckPacket(packetIdentifier: 1, reasonCode: .unspecifiedError, properties: allProperties)),
            .pingReq, .pingResp,
            .disconnect(DisconnectPacket(reasonCode: .unspecifiedError, properties: allProperties)),
        ]
        // A 3.x UNSUBACK is the identifier only (in 5.0 a trailing byte would be one more reason code).
        if version < .v5 { packets.append(.unsubAck(UnsubAckPacket(packetIdentifier: 1))) }
        if version == .v5 {
            packets.append(.auth(AuthPacket(reasonCode: .continueAuthentication, properties: allProperties)))
        }
        for packet in packets {
            var bytes = Array(encode(packet, version).readableBytesView)
            // Grow the remaining length by one (all these fit in a one-byte length) and append a byte.
            bytes[1] += 1
            bytes.append(0)
            expectDecodeError(.malformedPacket, bytes, packet.type == .connect ? nil : version, "\(packet.type)")
        }
    }
}
