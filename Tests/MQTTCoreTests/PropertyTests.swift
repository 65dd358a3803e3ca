import NIOCore
import Testing

@testable import MQTTCore

@Suite("MQTT 5 properties")
struct PropertyTests {
    /// Spec table 2.2.2.2, written out independently of the codec's masks.
    static let table: [PropertyIdentifier: Set<PropertyContext>] = [
        .payloadFormatIndicator: [.publish, .will],
        .messageExpiryInterval: [.publish, .will],
        .contentType: [.publish, .will],
        .responseTopic: [.publish, .will],
        .correlationData: [.publish, .will],
        .subscriptionIdentifier: [.publish, .subscribe],
        .sessionExpiryInterval: [.connect, .connAck, .disconnect],
        .assignedClientIdentifier: [.connAck],
        .serverKeepAlive: [.connAck],
        .authenticationMethod: [.connect, .connAck, .auth],
        .authenticationData: [.connect, .connAck, .auth],
        .requestProblemInformation: [.connect],
        .willDelayInterval: [.will],
        .requestResponseInformation: [.connect],
        .responseInformation: [.connAck],
        .serverReference: [.connAck, .disconnect],
        .reasonString: [.connAck, .pubAck, .subAck, .unsubAck, .disconnect, .auth],
        .receiveMaximum: [.connect, .connAck],
        .topicAliasMaximum: [.connect, .connAck],
        .topicAlias: [.publish],
        .maximumQoS: [.connAck],
        .retainAvailable: [.connAck],
        .userProperty: Set(PropertyContext.allCases),
        .maximumPacketSize: [.connect, .connAck],
        .wildcardSubscriptionAvailable: [.connAck],
        .subscriptionIdentifierAvailable: [.connAck],
        .sharedSubscriptionAvailable: [.connAck],
    ]

    /// One valid encoded value for each property.
    static func value(_ id: PropertyIdentifier) -> [UInt8] {
        switch id {
        case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation, .maximumQoS,
            .retainAvailable, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable,
            .sharedSubscriptionAvailable:
            [1]
        case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize: [0, 0, 1, 0]
        case .contentType, .assignedClientIdentifier, .authenticationMethod, .responseInformation, .serverReference,
            .reasonString, .responseTopic:
            str("x/y")
        case .correlationData, .authenticationData: [0, 2, 0, 1]
        case .subscriptionIdentifier: [0x80, 0x01]
        case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias: [0, 9]
        case .userProperty: str("k") + str("v")
        }
    }

    func list(_ bytes: [UInt8]) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeMQTTVariableByteInteger(bytes.count)
        out.writeBytes(bytes)
        return out
    }

    func decodeList(_ bytes: [UInt8], _ context: PropertyContext) throws(MQTTError) -> Properties {
        var input = list(bytes)
        let properties = try Properties.decode(from: &input, context: context)
        guard input.readableBytes == 0 else { throw MQTTError(.unspecifiedError, "test: leftover") }
        return properties
    }

    @Test func allowancesFollowTable2222() throws {
        for id in PropertyIdentifier.allCases {
            let allowedIn = try #require(Self.table[id])
            for context in PropertyContext.allCases {
                #expect(context.allows(id) == allowedIn.contains(context), "\(id) in \(context)")
                let bytes = [id.rawValue] + Self.value(id)
                if allowedIn.contains(context) {
                    // Authentication data needs a method beside it.
                    let method: [UInt8] = id == .authenticationData ? [0x15] + str("m") : []
                    _ = try decodeList(method + bytes, context)
                } else {
                    // A property the packet may not carry: malformed (0x81).
                    expectError(.malformedPacket, "\(id) in \(context)") { () throws(MQTTError) in
                        _ = try decodeList(bytes, context)
                    }
                }
            }
        }
    }

    @Test(arguments: [0x00, 0x04, 0x05, 0x0A, 0x10, 0x14, 0x1B, 0x1D, 0x20, 0x2B, 0x7F, 0x80, 0xFF] as [UInt8])
    func unknownIdentifierIsMalformed(id: UInt8) {
        for context in PropertyContext.allCases {
            expectError(.malformedPacket, "0x\(String(id, radix: 16)) in \(context)") { () throws(MQTTError) in
                _ = try decodeList([id, 0, 0, 0, 0], context)
            }
        }
    }

    @Test func duplicatesAreProtocolErrors() throws {
        for id in PropertyIdentifier.allCases {
            for context in try #require(Self.table[id]) {
                let once = [id.rawValue] + Self.value(id)
                if id == .userProperty || (id == .subscriptionIdentifier && context == .publish) {
                    _ = try decodeList(once + once, context)
                } else {
                    expectError(.protocolError, "\(id) twice in \(context)") { () throws(MQTTError) in
                        _ = try decodeList(once + once, context)
                    }
                }
            }
        }
    }

    @Test(arguments: [PropertyContext.connect, .connAck, .auth])
    func authenticationDataNeedsAMethod(context: PropertyContext) throws {
        // [MQTT-3.1.2.11.10]
        expectError(.protocolError) { () throws(MQTTError) in _ = try decodeList([0x16, 0, 1, 7], context) }
        let both = try decodeList([0x16, 0, 1, 7, 0x15] + str("m"), context)
        #expect(both.authenticationData == [7] && both.authenticationMethod == "m")
    }

    @Test func repeatedPropertiesKeepOrder() throws {
        let bytes = [0x26] + str("a") + str("1") + [0x26] + str("b") + str("2") + [0x26] + str("a") + str("3")
        #expect(
            try decodeList(bytes, .publish).userProperties == [
                UserProperty("a", "1"), UserProperty("b", "2"), UserProperty("a", "3"),
            ]
        )
        #expect(try decodeList([0x0B, 5, 0x0B, 0x80, 0x01], .publish).subscriptionIdentifiers == [5, 128])
    }

    @Test func zeroValuesThatAreProtocolErrors() throws {
        for context in [PropertyContext.publish, .subscribe] {
            expectError(.protocolError, "subscription identifier 0") { () throws(MQTTError) in
                _ = try decodeList([0x0B, 0], context)
            }
        }
        for context in [PropertyContext.connect, .connAck] {
            expectError(.protocolError, "receive maximum 0") { () throws(MQTTError) in
                _ = try decodeList([0x21, 0, 0], context)
            }
            expectError(.protocolError, "maximum packet size 0") { () throws(MQTTError) in
                _ = try decodeList([0x27, 0, 0, 0, 0], context)
            }
        }
        // Topic alias 0 is decoded; the broker reports it as 0x94.
        #expect(try decodeList([0x23, 0, 0], .publish).topicAlias == 0)
    }

    @Test func subscriptionIdentifierLimits() throws {
        #expect(try decodeList([0x0B, 0xFF, 0xFF, 0xFF, 0x7F], .subscribe).subscriptionIdentifiers == [268_435_455])
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try decodeList([0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], .subscribe)
        }
        expectError(.malformedPacket) { () throws(MQTTError) in _ = try decodeList([0x0B, 0x80, 0x00], .subscribe) }
    }

    @Test func byteFlagsAreZeroOrOne() {
        let flags: [(PropertyIdentifier, PropertyContext)] = [
            (.payloadFormatIndicator, .publish), (.requestProblemInformation, .connect),
            (.requestResponseInformation, .connect), (.maximumQoS, .connAck), (.retainAvailable, .connAck),
            (.wildcardSubscriptionAvailable, .connAck), (.subscriptionIdentifierAvailable, .connAck),
            (.sharedSubscriptionAvailable, .connAck),
        ]
        for (id, context) in flags {
            expectError(.protocolError, "\(id) = 2") { () throws(MQTTError) in
                _ = try decodeList([id.rawValue, 2], context)
            }
        }
    }

    @Test func responseTopicMustNotHaveWildcards() {
        // [MQTT-3.3.2-14]
        expectError(.protocolError) { () throws(MQTTError) in _ = try decodeList([0x08] + str("reply/#"), .publish) }
        expectError(.protocolError) { () throws(MQTTError) in _ = try decodeList([0x08] + str("a/+/b"), .will) }
    }

    @Test func truncatedAndOverlongLists() {
        // Property length beyond the packet.
        var tooLong = buffer([10, 0x23, 0, 1])
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try Properties.decode(from: &tooLong, context: .publish)
        }
        // A value cut short inside the list.
        for id in PropertyIdentifier.allCases {
            let bytes = [id.rawValue] + Self.value(id)
            for cut in 1..<bytes.count {
                let context = Self.table[id]!.first!
                expectError(.malformedPacket, "\(id) cut at \(cut)") { () throws(MQTTError) in
                    _ = try decodeList(Array(bytes[..<cut]), context)
                }
            }
        }
        // A missing property length.
        var empty = ByteBuffer()
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try Properties.decode(from: &empty, context: .publish)
        }
        // Strings inside properties are validated.
        expectError(.malformedPacket) { () throws(MQTTError) in _ = try decodeList([0x1F, 0, 1, 0], .pubAck) }
        expectError(.malformedPacket) { () throws(MQTTError) in
            _ = try decodeList([0x26, 0, 1, 0x41, 0, 1, 0xFF], .pubAck)
        }
    }

    @Test func propertiesInPackets() throws {
        // A property not allowed in that packet, inside a whole packet.
        expectDecodeError(
            .malformedPacket,
            packetBytes(0x30, str("t") + [2, 0x1F] + [0]),
            .v5,
            "reason string in PUBLISH"
        )
        expectDecodeError(.malformedPacket, packetBytes(0x40, [0, 1, 0, 3, 0x23, 0, 1]), .v5, "topic alias in PUBACK")
        expectDecodeError(
            .malformedPacket,
            packetBytes(0x82, [0, 1, 2, 0x1F, 0] + str("a") + [0]),
            .v5,
            "reason string in SUBSCRIBE"
        )
        expectDecodeError(
            .malformedPacket,
            packetBytes(0xA2, [0, 1, 2, 0x0B, 1] + str("a")),
            .v5,
            "subscription id in UNSUBSCRIBE"
        )
        expectDecodeError(
            .protocolError,
            packetBytes(0x82, [0, 1, 4, 0x0B, 1, 0x0B, 2] + str("a") + [0]),
            .v5,
            "two subscription ids in SUBSCRIBE"
        )
        expectDecodeError(
            .malformedPacket,
            packetBytes(0xE0, [0, 2, 0x11, 0]),
            .v5,
            "truncated property in DISCONNECT"
        )
        expectDecodeError(.malformedPacket, packetBytes(0xF0, [0x18, 2, 0x01, 1]), .v5, "payload format in AUTH")
    }

    @Test func encoderWritesOnlyAllowedProperties() throws {
        // allProperties carries everything; each packet gets only its own.
        let publish = PublishPacket(topic: "t", payload: ByteBuffer(), properties: allProperties)
        guard case .publish(let decoded) = try decode(encode(.publish(publish), .v5), .v5) else {
            Issue.record("not PUBLISH"); return
        }
        #expect(decoded.properties.reasonString == nil)
        #expect(decoded.properties.topicAlias == 5)
        #expect(decoded.properties.subscriptionIdentifiers == [7, 268_435_455])
        #expect(Properties.none.isEmpty && !allProperties.isEmpty)
    }
}
