import NIOCore
import Testing

@testable import MQTTCore

@Suite("CONNECT and CONNACK")
struct ConnectTests {
    /// A CONNECT built by hand: name, level, flags, keep alive 60, (5.0: empty properties), then `payload`.
    func connect(name: String = "MQTT", level: UInt8 = 4, flags: UInt8 = 0x02, payload: [UInt8] = str("c")) -> [UInt8] {
        packetBytes(0x10, str(name) + [level, flags, 0, 60] + (level == 5 ? [0] : []) + payload)
    }

    @Test func protocolNamesAndLevels() throws {
        #expect(
            try decode(connect(name: "MQIsdp", level: 3), nil)
                == .connect(ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "c"))
        )
        #expect(
            try decode(connect(level: 4), nil)
                == .connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c"))
        )
        #expect(
            try decode(connect(level: 5), nil) == .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c"))
        )
    }

    /// Mosquitto's bridges (`try_private`) set the level's top bit: 0x84 for 3.1.1, 0x83 for 3.1.
    @Test func bridgeProtocolLevels() throws {
        var bridge311 = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c")
        bridge311.isBridge = true
        #expect(try decode(connect(level: 0x84), nil) == .connect(bridge311))
        var bridge31 = ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "c")
        bridge31.isBridge = true
        #expect(try decode(connect(name: "MQIsdp", level: 0x83), nil) == .connect(bridge31))
        // Encoding sets the bit back, so the bridge client can say what it is.
        var buffer = ByteBuffer()
        MQTTCodec.encode(.connect(bridge311), version: .v3_1_1, into: &buffer)
        #expect(Array(buffer.readableBytesView) == connect(level: 0x84))
        var buffer31 = ByteBuffer()
        MQTTCodec.encode(.connect(bridge31), version: .v3_1, into: &buffer31)
        #expect(Array(buffer31.readableBytesView) == connect(name: "MQIsdp", level: 0x83))
    }

    /// MQTT 5 has no-local and retain-as-published itself: the bit is never written there (0x85 is refused).
    @Test func bridgeFlagIsNotWrittenInMQTT5() throws {
        var bridge5 = ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")
        bridge5.isBridge = true
        var buffer = ByteBuffer()
        MQTTCodec.encode(.connect(bridge5), version: .v5, into: &buffer)
        #expect(Array(buffer.readableBytesView) == connect(level: 5))
        #expect(
            try decode(connect(level: 5), nil) == .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c"))
        )
    }

    @Test(arguments: ["MQTX", "mqtt", "", "MQIsdpX", "MQ"])
    func otherProtocolNameIsAProtocolError(name: String) {
        expectDecodeError(.protocolError, connect(name: name, level: 4), nil)
    }

    @Test(
        arguments: [
            ("MQTT", 3), ("MQTT", 6), ("MQTT", 0), ("MQTT", 0x83), ("MQTT", 0x85), ("MQIsdp", 4), ("MQIsdp", 5),
            ("MQIsdp", 0x84),
        ] as [(String, UInt8)]
    )
    func unknownLevelIsUnsupportedProtocolVersion(name: String, level: UInt8) {
        // [MQTT-3.1.2-2]: the server answers CONNACK 0x01 / 0x84.
        expectDecodeError(.unsupportedProtocolVersion, connect(name: name, level: level), nil)
    }

    @Test(arguments: [3, 4, 5] as [UInt8])
    func reservedConnectFlagIsMalformed(level: UInt8) {
        // [MQTT-3.1.2-3]
        expectDecodeError(
            .malformedPacket,
            connect(name: level == 3 ? "MQIsdp" : "MQTT", level: level, flags: 0x03),
            nil
        )
    }

    @Test(arguments: [3, 4, 5] as [UInt8])
    func willFlagRules(level: UInt8) throws {
        let name = level == 3 ? "MQIsdp" : "MQTT"
        // Will QoS or retain without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13].
        expectDecodeError(
            .malformedPacket,
            connect(name: name, level: level, flags: 0x02 | 0x08),
            nil,
            "will QoS 1 without will"
        )
        expectDecodeError(
            .malformedPacket,
            connect(name: name, level: level, flags: 0x02 | 0x10),
            nil,
            "will QoS 2 without will"
        )
        expectDecodeError(
            .malformedPacket,
            connect(name: name, level: level, flags: 0x02 | 0x20),
            nil,
            "will retain without will"
        )
        // Will QoS 3 [MQTT-3.1.2-12].
        let willPayload = str("c") + (level == 5 ? [0] : []) + str("will/topic") + [0, 2, 0x68, 0x69]
        expectDecodeError(
            .malformedPacket,
            connect(name: name, level: level, flags: 0x02 | 0x04 | 0x18, payload: willPayload),
            nil
        )
        // A valid will.
        guard
            case .connect(let packet) = try decode(
                connect(name: name, level: level, flags: 0x02 | 0x04 | 0x10 | 0x20, payload: willPayload),
                nil
            )
        else { Issue.record("not CONNECT"); return }
        #expect(packet.will == Will(topic: "will/topic", payload: payload("hi"), qos: .exactlyOnce, retain: true))
        // A will topic is a topic name: no wildcards.
        let badTopic = str("c") + (level == 5 ? [0] : []) + str("will/#") + [0, 0]
        expectDecodeError(
            .topicNameInvalid,
            connect(name: name, level: level, flags: 0x02 | 0x04, payload: badTopic),
            nil
        )
        // The will flag promises a will: a payload without it is truncated.
        expectDecodeError(.malformedPacket, connect(name: name, level: level, flags: 0x02 | 0x04), nil)
    }

    @Test func passwordWithoutUserName() throws {
        let withPassword = str("c") + [0, 2, 1, 2]
        // [MQTT-3.1.2-22] malformed in 3.1.1 (and 3.1)...
        expectDecodeError(.malformedPacket, connect(level: 4, flags: 0x02 | 0x40, payload: withPassword), nil)
        expectDecodeError(
            .malformedPacket,
            connect(name: "MQIsdp", level: 3, flags: 0x02 | 0x40, payload: withPassword),
            nil
        )
        // ...allowed in 5.0.
        guard case .connect(let packet) = try decode(connect(level: 5, flags: 0x02 | 0x40, payload: withPassword), nil)
        else { Issue.record("not CONNECT"); return }
        #expect(packet.password == [1, 2] && packet.username == nil)
    }

    @Test func userNameAndPassword() throws {
        let body = str("c") + str("alice") + [0, 3, 0, 0, 0]
        guard case .connect(let packet) = try decode(connect(level: 4, flags: 0xC2, payload: body), nil)
        else { Issue.record("not CONNECT"); return }
        #expect(packet.username == "alice" && packet.password == [0, 0, 0])
        // Flags promise a user name that is not there.
        expectDecodeError(.malformedPacket, connect(level: 4, flags: 0x82), nil)
    }

    @Test(arguments: [3, 4, 5] as [UInt8])
    func emptyClientIdentifierIsAllowed(level: UInt8) throws {
        guard
            case .connect(let packet) = try decode(
                connect(name: level == 3 ? "MQIsdp" : "MQTT", level: level, payload: str("")),
                nil
            )
        else { Issue.record("not CONNECT"); return }
        #expect(packet.clientIdentifier == "")
    }

    @Test func clientIdentifierMustBeValidUTF8() {
        expectDecodeError(.malformedPacket, connect(payload: [0, 2, 0xC0, 0x80]), nil)
        expectDecodeError(.malformedPacket, connect(payload: [0, 1, 0x00]), nil)
    }

    @Test func truncatedConnectIsMalformed() {
        let whole = connect(level: 5, flags: 0xC2, payload: str("c") + str("u") + str("p"))
        let body = Array(whole[2...])
        for cut in 0..<body.count {
            expectDecodeError(.malformedPacket, packetBytes(0x10, Array(body[..<cut])), nil, "cut at \(cut)")
        }
    }

    @Test func connectDecodesWithAVersionKnownToo() throws {
        // A second CONNECT is the broker's protocol error to report [MQTT-3.1.0-2]; the codec decodes it.
        #expect(
            try decode(connect(level: 5), .v5) == .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c"))
        )
    }

    @Test func connectProperties() throws {
        // Topic alias (0x23) is not a CONNECT property: malformed.
        let withAlias = packetBytes(0x10, str("MQTT") + [5, 0x02, 0, 60] + [3, 0x23, 0, 1] + str("c"))
        expectDecodeError(.malformedPacket, withAlias, nil)
        // Will properties are checked against their own table: will delay is fine, session expiry is not.
        let willDelay = str("c") + [5, 0x18, 0, 0, 0, 9] + str("t") + [0, 0]
        _ = try decode(packetBytes(0x10, str("MQTT") + [5, 0x06, 0, 60, 0] + willDelay), nil)
        let willSession = str("c") + [5, 0x11, 0, 0, 0, 9] + str("t") + [0, 0]
        expectDecodeError(.malformedPacket, packetBytes(0x10, str("MQTT") + [5, 0x06, 0, 60, 0] + willSession), nil)
    }

    // MARK: CONNACK

    @Test func connAckReservedFlagsAreMalformed() throws {
        // [MQTT-3.2.2-1]
        expectDecodeError(.malformedPacket, [0x20, 2, 0x02, 0], .v3_1_1)
        expectDecodeError(.malformedPacket, [0x20, 3, 0x80, 0, 0], .v5)
        // 3.1 has no session present flag: the byte is ignored.
        #expect(try decode([0x20, 2, 0x01, 0], .v3_1) == .connAck(ConnAckPacket()))
    }

    @Test(arguments: versions3)
    func connAckReservedReturnCodeIsMalformed(version: ProtocolVersion) {
        expectDecodeError(.malformedPacket, [0x20, 2, 0, 6], version)
        expectDecodeError(.malformedPacket, [0x20, 2, 0, 0x80], version)
    }

    @Test func connAckLength() {
        expectDecodeError(.malformedPacket, [0x20, 1, 0], .v3_1_1)
        expectDecodeError(.malformedPacket, [0x20, 2, 0, 0], .v5)  // properties length missing
        expectDecodeError(.malformedPacket, [0x20, 3, 0, 0, 0], .v3_1_1)  // trailing byte
    }

    @Test func connAckV5KeepsTheReasonCode() throws {
        #expect(
            try decode([0x20, 3, 0, 0x8C, 0], .v5) == .connAck(ConnAckPacket(reasonCode: .badAuthenticationMethod))
        )
        #expect(try decode([0x20, 3, 1, 0x00, 0], .v5) == .connAck(ConnAckPacket(sessionPresent: true)))
    }

    /// CONNACK properties come in Mosquitto 2.0's order (issue 16): captured from Debian's mosquitto with
    /// `max_keepalive 30`, `max_packet_size 1000`, `max_inflight_messages 10` and an empty client id.
    @Test func connAckPropertiesInMosquittosOrder() throws {
        var properties = Properties()
        properties.receiveMaximum = 10
        properties.maximumPacketSize = 1000
        properties.topicAliasMaximum = 10
        properties.assignedClientIdentifier = "a"
        properties.serverKeepAlive = 30
        properties.reasonString = "r"
        let packet = Packet.connAck(ConnAckPacket(properties: properties))
        let bytes = Array(encode(packet, .v5).readableBytesView)
        #expect(
            bytes == [0x20, 25, 0, 0, 22]
                + [0x22, 0, 10, 0x13, 0, 30, 0x12, 0, 1, 0x61, 0x27, 0, 0, 0x03, 0xE8, 0x21, 0, 10, 0x1F, 0, 1, 0x72]
        )
        #expect(try decode(bytes, .v5) == packet)
    }
}
