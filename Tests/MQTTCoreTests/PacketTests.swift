import NIOCore
import Testing

@testable import MQTTCore

@Suite("PUBLISH, acknowledgements, SUBSCRIBE, UNSUBSCRIBE, PING, DISCONNECT, AUTH")
struct PacketTests {
    func props(_ version: ProtocolVersion, _ bytes: [UInt8] = []) -> [UInt8] {
        version == .v5 ? [UInt8(bytes.count)] + bytes : []
    }

    // MARK: PUBLISH

    @Test(arguments: allVersions)
    func publishQoS3IsMalformed(version: ProtocolVersion) {
        // [MQTT-3.3.1-4]
        expectDecodeError(.malformedPacket, packetBytes(0x36, str("t") + [0, 1] + props(version)), version)
    }

    @Test(arguments: allVersions)
    func publishDupWithQoS0IsMalformed(version: ProtocolVersion) {
        // [MQTT-3.3.1-2]
        expectDecodeError(.malformedPacket, packetBytes(0x38, str("t") + props(version)), version)
    }

    @Test(arguments: allVersions)
    func publishPacketIdentifier(version: ProtocolVersion) throws {
        // [MQTT-2.2.1-3] non-zero at QoS 1 and 2.
        expectDecodeError(.protocolError, packetBytes(0x32, str("t") + [0, 0] + props(version)), version)
        expectDecodeError(.protocolError, packetBytes(0x34, str("t") + [0, 0] + props(version)), version)
        // Missing entirely.
        expectDecodeError(.malformedPacket, packetBytes(0x32, str("t")), version)
        // QoS 0 has none: the two bytes belong to the payload.
        guard case .publish(let p) = try decode(packetBytes(0x30, str("t") + props(version) + [0, 7]), version)
        else { Issue.record("not PUBLISH"); return }
        #expect(p.packetIdentifier == nil && p.payload == buffer([0, 7]))
    }

    @Test(arguments: allVersions)
    func publishTopicIsATopicName(version: ProtocolVersion) {
        for topic in ["a/+", "#", "a/#/b", "+", "a\u{0}b"] {
            let code: ReasonCode = topic.contains("\u{0}") ? .malformedPacket : .topicNameInvalid
            expectDecodeError(code, packetBytes(0x30, str(topic) + props(version)), version, "\(topic)")
        }
        expectDecodeError(.malformedPacket, packetBytes(0x30, [0, 2, 0xFF, 0xFE] + props(version)), version)
    }

    @Test func publishEmptyTopic() throws {
        // 3.x: a topic name is at least one character [MQTT-4.7.3-1].
        for version in versions3 {
            expectDecodeError(.topicNameInvalid, packetBytes(0x30, str("")), version)
        }
        // 5.0: only with a topic alias.
        expectDecodeError(.protocolError, packetBytes(0x30, str("") + [0]), .v5)
        expectDecodeError(.protocolError, packetBytes(0x30, str("") + [2, 0x01, 0]), .v5)
        guard case .publish(let p) = try decode(packetBytes(0x30, str("") + [3, 0x23, 0, 4]), .v5)
        else { Issue.record("not PUBLISH"); return }
        #expect(p.topic == "" && p.properties.topicAlias == 4)
    }

    @Test func publishTruncated() {
        expectDecodeError(.malformedPacket, packetBytes(0x30, [0, 5, 0x61]), .v3_1_1)
        expectDecodeError(.malformedPacket, packetBytes(0x30, str("t")), .v5)  // no property length
        expectDecodeError(.malformedPacket, packetBytes(0x30, str("t") + [5, 0x01]), .v5)
    }

    // MARK: PUBACK, PUBREC, PUBREL, PUBCOMP

    @Test(arguments: [0x40, 0x50, 0x62, 0x70] as [UInt8])
    func acknowledgementLengths(firstByte: UInt8) throws {
        for version in versions3 {
            _ = try decode(packetBytes(firstByte, [0, 9]), version)
            expectDecodeError(.malformedPacket, packetBytes(firstByte, [0]), version)
            expectDecodeError(.malformedPacket, packetBytes(firstByte, [0, 9, 0]), version)
            expectDecodeError(.protocolError, packetBytes(firstByte, [0, 0]), version)
        }
        // [MQTT-3.4.2-1] 5.0: length 2 = success without properties; 3 = reason code only.
        let two = try decode(packetBytes(firstByte, [0, 9]), .v5)
        let three = try decode(packetBytes(firstByte, [0, 9, 0x92]), .v5)
        let four = try decode(packetBytes(firstByte, [0, 9, 0x92, 0]), .v5)
        let withReason = try decode(packetBytes(firstByte, [0, 9, 0x10, 4, 0x1F] + str("x")), .v5)
        #expect(two.acknowledgement == PubAckPacket(packetIdentifier: 9))
        #expect(three.acknowledgement == PubAckPacket(packetIdentifier: 9, reasonCode: .packetIdentifierNotFound))
        #expect(four == three)
        var expected = Properties()
        expected.reasonString = "x"
        #expect(
            withReason.acknowledgement
                == PubAckPacket(packetIdentifier: 9, reasonCode: .noMatchingSubscribers, properties: expected)
        )
        expectDecodeError(.malformedPacket, packetBytes(firstByte, [0]), .v5)
        expectDecodeError(.protocolError, packetBytes(firstByte, [0, 0]), .v5)
        expectDecodeError(.malformedPacket, packetBytes(firstByte, [0, 9, 0x92, 5, 0x1F]), .v5)
        expectDecodeError(.malformedPacket, packetBytes(firstByte, [0, 9, 0x92, 0, 0]), .v5)  // trailing
    }

    // MARK: SUBSCRIBE

    @Test(arguments: allVersions)
    func subscribeRules(version: ProtocolVersion) throws {
        let p = props(version)
        // [MQTT-2.2.1-3] non-zero packet identifier.
        expectDecodeError(.protocolError, packetBytes(0x82, [0, 0] + p + str("a") + [0]), version)
        // [MQTT-3.8.3-3] at least one filter.
        expectDecodeError(.protocolError, packetBytes(0x82, [0, 1] + p), version)
        // A filter without its options byte.
        expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1] + p + str("a")), version)
        // QoS 3.
        expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1] + p + str("a") + [3]), version)
        // Invalid filters.
        for filter in ["a/#/b", "a+", "#/", "$share/g", "$share//a", ""] {
            expectDecodeError(
                .topicFilterInvalid,
                packetBytes(0x82, [0, 1] + p + str(filter) + [0]),
                version,
                "\(filter)"
            )
        }
        if version == .v5 {
            // Bits 6–7 reserved [MQTT-3.8.3-5]; retain handling 3 malformed.
            expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1, 0] + str("a") + [0x40]), version)
            expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1, 0] + str("a") + [0x80]), version)
            expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1, 0] + str("a") + [0x30]), version)
            // [MQTT-3.8.3-4] no local on a shared subscription is a protocol error.
            expectDecodeError(.protocolError, packetBytes(0x82, [0, 1, 0] + str("$share/g/a") + [0x04]), version)
            guard case .subscribe(let s) = try decode(packetBytes(0x82, [0, 1, 0] + str("a") + [0x2E]), version)
            else { Issue.record("not SUBSCRIBE"); return }
            #expect(
                s.subscriptions[0].options
                    == SubscriptionOptions(
                        qos: .exactlyOnce,
                        noLocal: true,
                        retainAsPublished: true,
                        retainHandling: .doNotSend
                    )
            )
        } else {
            // [MQTT-3-8.3-4] (3.1.1) upper six bits reserved.
            for bit: UInt8 in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
                expectDecodeError(.malformedPacket, packetBytes(0x82, [0, 1] + str("a") + [bit]), version)
            }
            // No no-local in 3.x, so a shared subscription is fine.
            _ = try decode(packetBytes(0x82, [0, 1] + str("$share/g/a") + [1]), version)
        }
    }

    // MARK: SUBACK

    @Test(arguments: allVersions)
    func subAckRules(version: ProtocolVersion) throws {
        let p = props(version)
        expectDecodeError(.protocolError, packetBytes(0x90, [0, 1] + p), version)  // no codes
        expectDecodeError(.protocolError, packetBytes(0x90, [0, 0] + p + [0]), version)
        if version == .v5 {
            #expect(
                try decode(packetBytes(0x90, [0, 1, 0, 0x97]), version)
                    == .subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.quotaExceeded]))
            )
        } else {
            // [MQTT-3.9.3-2] only 0, 1, 2, 0x80.
            for code: UInt8 in [3, 0x81, 0x87, 0xFF] {
                expectDecodeError(.malformedPacket, packetBytes(0x90, [0, 1, code]), version)
            }
            #expect(
                try decode(packetBytes(0x90, [0, 1, 0x80, 2]), version)
                    == .subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.unspecifiedError, .grantedQoS2]))
            )
        }
    }

    // MARK: UNSUBSCRIBE, UNSUBACK

    @Test(arguments: allVersions)
    func unsubscribeRules(version: ProtocolVersion) throws {
        let p = props(version)
        expectDecodeError(.protocolError, packetBytes(0xA2, [0, 1] + p), version)  // [MQTT-3.10.3-2]
        expectDecodeError(.protocolError, packetBytes(0xA2, [0, 0] + p + str("a")), version)
        expectDecodeError(.topicFilterInvalid, packetBytes(0xA2, [0, 1] + p + str("a/#/b")), version)
        expectDecodeError(.malformedPacket, packetBytes(0xA2, [0, 1] + p + str("a") + [0]), version)  // half a string
    }

    @Test(arguments: allVersions)
    func unsubAckRules(version: ProtocolVersion) throws {
        if version == .v5 {
            expectDecodeError(.protocolError, packetBytes(0xB0, [0, 1, 0]), version)  // no reason codes
            expectDecodeError(.malformedPacket, packetBytes(0xB0, [0, 1]), version)  // no property length
            #expect(
                try decode(packetBytes(0xB0, [0, 1, 0, 0x11, 0]), version)
                    == .unsubAck(UnsubAckPacket(packetIdentifier: 1, reasonCodes: [.noSubscriptionExisted, .success]))
            )
        } else {
            expectDecodeError(.malformedPacket, packetBytes(0xB0, [0, 1, 0]), version)
            expectDecodeError(.malformedPacket, packetBytes(0xB0, [0]), version)
        }
        expectDecodeError(
            .protocolError,
            packetBytes(0xB0, [0, 0] + props(version) + (version == .v5 ? [0] : [])),
            version
        )
    }

    // MARK: PINGREQ, PINGRESP, DISCONNECT, AUTH

    @Test(arguments: allVersions)
    func pingHasNoBody(version: ProtocolVersion) {
        expectDecodeError(.malformedPacket, [0xC0, 1, 0], version)
        expectDecodeError(.malformedPacket, [0xD0, 1, 0], version)
    }

    @Test func disconnect() throws {
        for version in versions3 {
            expectDecodeError(.malformedPacket, [0xE0, 1, 0], version)
        }
        // 5.0: length 0 is normal disconnection; 1 is a reason code alone.
        #expect(try decode([0xE0, 0], .v5) == .disconnect(DisconnectPacket()))
        #expect(try decode([0xE0, 1, 0x8E], .v5) == .disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)))
        #expect(try decode([0xE0, 2, 0x8E, 0], .v5) == .disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)))
        expectDecodeError(.malformedPacket, [0xE0, 2, 0x8E, 1], .v5)
        expectDecodeError(.malformedPacket, [0xE0, 3, 0x8E, 0, 0], .v5)
    }

    @Test func auth() throws {
        #expect(try decode([0xF0, 0], .v5) == .auth(AuthPacket()))
        #expect(try decode([0xF0, 1, 0x18], .v5) == .auth(AuthPacket(reasonCode: .continueAuthentication)))
        let bytes: [UInt8] = [0xF0, 2 + 4 + 4, 0x18, 8, 0x15] + str("ab") + [0x16, 0, 0]
        var expected = Properties()
        expected.authenticationMethod = "ab"
        expected.authenticationData = []
        #expect(try decode(bytes, .v5) == .auth(AuthPacket(reasonCode: .continueAuthentication, properties: expected)))
        expectDecodeError(.malformedPacket, [0xF0, 3, 0x18, 0, 0], .v5)
    }
}

extension Packet {
    var acknowledgement: PubAckPacket? {
        switch self {
        case .pubAck(let a), .pubRec(let a), .pubRel(let a), .pubComp(let a): a
        default: nil
        }
    }
}
