import NIOCore
import Testing

@testable import MQTTCore

/// Encode → frame → decode gives the packet back, in every version the packet exists in. Fields a
/// version lacks (properties, reason codes before 5.0) come back empty.
@Suite("Round trips")
struct RoundTripTests {
    func roundTrip(_ packet: Packet, _ version: ProtocolVersion, decodeVersion: ProtocolVersion?? = .none) throws
        -> Packet
    {
        let bytes = encode(packet, version)
        let decoded = try decode(bytes, decodeVersion ?? version)
        // Re-encoding the decoded packet gives the same bytes.
        #expect(encode(decoded, version) == bytes)
        return decoded
    }

    @Test(arguments: allVersions)
    func connect(version: ProtocolVersion) throws {
        let will = Will(
            topic: "devices/42/status",
            payload: payload("offline"),
            qos: .exactlyOnce,
            retain: true,
            properties: allProperties
        )
        let full = ConnectPacket(
            protocolVersion: version,
            clientIdentifier: "client-ü-1",
            cleanStart: false,
            keepAlive: 300,
            username: "user",
            password: [0, 1, 2, 255],
            will: will,
            properties: allProperties
        )
        var expected = full
        if version == .v5 {
            expected.properties = allProperties.filtered(for: .connect)
            expected.will?.properties = allProperties.filtered(for: .will)
        } else {
            expected.properties = .none
            expected.will?.properties = .none
        }
        // CONNECT decodes before any version is known.
        #expect(try roundTrip(.connect(full), version, decodeVersion: .some(nil)) == .connect(expected))
        #expect(try roundTrip(.connect(full), version) == .connect(expected))

        let minimal = ConnectPacket(protocolVersion: version, clientIdentifier: "")
        #expect(try roundTrip(.connect(minimal), version, decodeVersion: .some(nil)) == .connect(minimal))

        for qos in QoS.allCases {
            var withWill = minimal
            withWill.will = Will(topic: "t", payload: ByteBuffer(), qos: qos, retain: false)
            #expect(try roundTrip(.connect(withWill), version) == .connect(withWill))
        }

        // A password without a user name: allowed in 5.0, left out before.
        var passwordOnly = minimal
        passwordOnly.password = [1, 2, 3]
        var expectedPasswordOnly = passwordOnly
        if version < .v5 { expectedPasswordOnly.password = nil }
        #expect(try roundTrip(.connect(passwordOnly), version) == .connect(expectedPasswordOnly))
    }

    @Test func connectWireBytes() throws {
        // Spec 3.1.2.10 example shape: MQTT level 4, clean session, keep alive 10, client id "a".
        let connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "a", cleanStart: true, keepAlive: 10)
        let expected: [UInt8] = [0x10, 13, 0, 4, 0x4D, 0x51, 0x54, 0x54, 4, 0x02, 0, 10, 0, 1, 0x61]
        #expect(Array(encode(.connect(connect), .v3_1_1).readableBytesView) == expected)
        let v31 = ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "a", cleanStart: true, keepAlive: 10)
        let expected31: [UInt8] = [0x10, 15, 0, 6] + Array("MQIsdp".utf8) + [3, 0x02, 0, 10, 0, 1, 0x61]
        #expect(Array(encode(.connect(v31), .v3_1).readableBytesView) == expected31)
    }

    @Test(arguments: allVersions)
    func connAck(version: ProtocolVersion) throws {
        let packet = ConnAckPacket(sessionPresent: true, reasonCode: .success, properties: allProperties)
        let decoded = try roundTrip(.connAck(packet), version)
        let expected = ConnAckPacket(
            sessionPresent: version >= .v3_1_1,  // 3.1 has no session present flag
            reasonCode: .success,
            properties: version == .v5 ? allProperties.filtered(for: .connAck) : .none
        )
        #expect(decoded == .connAck(expected))

        let refused = ConnAckPacket(sessionPresent: true, reasonCode: .notAuthorized)
        // Session present is cleared with a failure code [MQTT-3.2.2-6].
        #expect(try roundTrip(.connAck(refused), version) == .connAck(ConnAckPacket(reasonCode: .notAuthorized)))
    }

    @Test(arguments: versions3)
    func connAckReturnCodesMapInOnePlace(version: ProtocolVersion) throws {
        let table: [(ReasonCode, UInt8, ReasonCode)] = [
            (.success, 0, .success),
            (.unsupportedProtocolVersion, 1, .unsupportedProtocolVersion),
            (.clientIdentifierNotValid, 2, .clientIdentifierNotValid),
            (.serverUnavailable, 3, .serverUnavailable),
            (.serverBusy, 3, .serverUnavailable),
            (.banned, 3, .serverUnavailable),
            (.unspecifiedError, 3, .serverUnavailable),
            (.badUserNameOrPassword, 4, .badUserNameOrPassword),
            (.notAuthorized, 5, .notAuthorized),
        ]
        for (code, wire, back) in table {
            let bytes = encode(.connAck(ConnAckPacket(reasonCode: code)), version)
            #expect(Array(bytes.readableBytesView) == [0x20, 2, 0, wire], "\(code)")
            #expect(try decode(bytes, version) == .connAck(ConnAckPacket(reasonCode: back)))
        }
    }

    @Test(arguments: allVersions)
    func publish(version: ProtocolVersion) throws {
        for qos in QoS.allCases {
            for retain in [false, true] {
                let packet = PublishPacket(
                    topic: "sensors/temp/ü",
                    payload: payload("{\"t\": 21.5}"),
                    qos: qos,
                    retain: retain,
                    dup: qos != .atMostOnce,
                    packetIdentifier: qos == .atMostOnce ? nil : 0xBEEF,
                    properties: allProperties
                )
                var expected = packet
                expected.properties = version == .v5 ? allProperties.filtered(for: .publish) : .none
                #expect(try roundTrip(.publish(packet), version) == .publish(expected))
            }
        }
        // Empty payload, and a large one (multi-byte remaining length).
        let empty = PublishPacket(topic: "a", payload: ByteBuffer())
        #expect(try roundTrip(.publish(empty), version) == .publish(empty))
        let big = PublishPacket(
            topic: "a/b",
            payload: ByteBuffer(repeating: 0xAB, count: 3_000_000),
            qos: .atLeastOnce,
            packetIdentifier: 1
        )
        #expect(try roundTrip(.publish(big), version) == .publish(big))
    }

    @Test func publishWithTopicAliasAndEmptyTopicV5() throws {
        var properties = Properties()
        properties.topicAlias = 3
        let packet = PublishPacket(topic: "", payload: payload("x"), properties: properties)
        #expect(try roundTrip(.publish(packet), .v5) == .publish(packet))
        // Topic alias 0 is decoded as-is: the broker reports it (0x94).
        properties.topicAlias = 0
        let zero = PublishPacket(topic: "t", payload: payload("x"), properties: properties)
        #expect(try roundTrip(.publish(zero), .v5) == .publish(zero))
    }

    @Test func publishDupIsNotWrittenAtQoS0() throws {
        let packet = PublishPacket(topic: "t", payload: ByteBuffer(), qos: .atMostOnce, dup: true)
        let bytes = encode(.publish(packet), .v3_1_1)
        #expect(bytes.getInteger(at: 0, as: UInt8.self) == 0x30)
    }

    @Test func publishPayloadIsASliceNotACopy() throws {
        let bytes = encode(.publish(PublishPacket(topic: "t", payload: payload("hello"))), .v3_1_1)
        guard case .publish(let publish) = try decode(bytes, .v3_1_1) else { Issue.record("not a publish"); return }
        let sameStorage = bytes.withUnsafeReadableBytes { whole in
            publish.payload.withUnsafeReadableBytes { part in
                part.baseAddress! >= whole.baseAddress! && part.baseAddress! < whole.baseAddress! + whole.count
            }
        }
        #expect(sameStorage)
    }

    @Test(arguments: allVersions)
    func publishAcknowledgements(version: ProtocolVersion) throws {
        let makers: [(PubAckPacket) -> Packet] = [Packet.pubAck, Packet.pubRec, Packet.pubRel, Packet.pubComp]
        for make in makers {
            let plain = PubAckPacket(packetIdentifier: 77)
            #expect(try roundTrip(make(plain), version) == make(plain))
            #expect(encode(make(plain), version).readableBytes == 4)  // remaining length 2

            let reasonOnly = PubAckPacket(packetIdentifier: 77, reasonCode: .noMatchingSubscribers)
            let withProperties = PubAckPacket(
                packetIdentifier: 65535,
                reasonCode: .quotaExceeded,
                properties: allProperties
            )
            if version == .v5 {
                #expect(encode(make(reasonOnly), version).readableBytes == 5)  // remaining length 3
                #expect(try roundTrip(make(reasonOnly), version) == make(reasonOnly))
                var expected = withProperties
                expected.properties = allProperties.filtered(for: .pubAck)
                #expect(try roundTrip(make(withProperties), version) == make(expected))
                // Success with properties still writes the reason code.
                let successWithReason = PubAckPacket(packetIdentifier: 1, properties: expected.properties)
                #expect(try roundTrip(make(successWithReason), version) == make(successWithReason))
            } else {
                #expect(try roundTrip(make(withProperties), version) == make(PubAckPacket(packetIdentifier: 65535)))
            }
        }
        #expect(
            Array(encode(.pubRel(PubAckPacket(packetIdentifier: 1)), version).readableBytesView) == [0x62, 2, 0, 1]
        )
    }

    @Test(arguments: allVersions)
    func subscribe(version: ProtocolVersion) throws {
        let subscriptions = [
            TopicSubscription(filter: "a/+/c", options: SubscriptionOptions(qos: .atMostOnce)),
            TopicSubscription(
                filter: "sensors/#",
                options: SubscriptionOptions(
                    qos: .exactlyOnce,
                    noLocal: true,
                    retainAsPublished: true,
                    retainHandling: .doNotSend
                )
            ),
            TopicSubscription(
                filter: "$share/group/x/y",
                options: SubscriptionOptions(qos: .atLeastOnce, retainHandling: .sendOnSubscribeIfNew)
            ),
        ]
        let packet = SubscribePacket(packetIdentifier: 10, subscriptions: subscriptions, properties: allProperties)
        var expected = packet
        if version == .v5 {
            expected.properties = allProperties.filtered(for: .subscribe)
            #expect(expected.properties.subscriptionIdentifiers == [7])  // once only in SUBSCRIBE
        } else {
            expected.properties = .none
            expected.subscriptions = subscriptions.map {
                TopicSubscription(filter: $0.filter, options: SubscriptionOptions(qos: $0.options.qos))
            }
        }
        #expect(try roundTrip(.subscribe(packet), version) == .subscribe(expected))
    }

    @Test(arguments: allVersions)
    func subAck(version: ProtocolVersion) throws {
        let codes: [ReasonCode] = [
            .grantedQoS0, .grantedQoS1, .grantedQoS2, .unspecifiedError, .notAuthorized, .topicFilterInvalid,
        ]
        let packet = SubAckPacket(packetIdentifier: 10, reasonCodes: codes, properties: allProperties)
        let expected =
            version == .v5
            ? SubAckPacket(packetIdentifier: 10, reasonCodes: codes, properties: allProperties.filtered(for: .subAck))
            // 3.x: every failure is 0x80.
            : SubAckPacket(
                packetIdentifier: 10,
                reasonCodes: [
                    .grantedQoS0, .grantedQoS1, .grantedQoS2, .unspecifiedError, .unspecifiedError, .unspecifiedError,
                ]
            )
        #expect(try roundTrip(.subAck(packet), version) == .subAck(expected))
    }

    @Test(arguments: allVersions)
    func unsubscribe(version: ProtocolVersion) throws {
        let packet = UnsubscribePacket(
            packetIdentifier: 3,
            filters: ["a/b", "#", "$share/g/+"],
            properties: allProperties
        )
        var expected = packet
        expected.properties = version == .v5 ? allProperties.filtered(for: .unsubscribe) : .none
        #expect(try roundTrip(.unsubscribe(packet), version) == .unsubscribe(expected))
    }

    @Test(arguments: allVersions)
    func unsubAck(version: ProtocolVersion) throws {
        let packet = UnsubAckPacket(
            packetIdentifier: 3,
            reasonCodes: [.success, .noSubscriptionExisted, .notAuthorized],
            properties: allProperties
        )
        let expected =
            version == .v5
            ? UnsubAckPacket(
                packetIdentifier: 3,
                reasonCodes: packet.reasonCodes,
                properties: allProperties.filtered(for: .unsubAck)
            )
            : UnsubAckPacket(packetIdentifier: 3)
        #expect(try roundTrip(.unsubAck(packet), version) == .unsubAck(expected))
    }

    @Test(arguments: allVersions)
    func ping(version: ProtocolVersion) throws {
        #expect(try roundTrip(.pingReq, version) == .pingReq)
        #expect(try roundTrip(.pingResp, version) == .pingResp)
        #expect(Array(encode(.pingReq, version).readableBytesView) == [0xC0, 0])
        #expect(Array(encode(.pingResp, version).readableBytesView) == [0xD0, 0])
    }

    @Test(arguments: allVersions)
    func disconnect(version: ProtocolVersion) throws {
        #expect(try roundTrip(.disconnect(DisconnectPacket()), version) == .disconnect(DisconnectPacket()))
        #expect(Array(encode(.disconnect(DisconnectPacket()), version).readableBytesView) == [0xE0, 0])
        let full = DisconnectPacket(reasonCode: .disconnectWithWillMessage, properties: allProperties)
        let reasonOnly = DisconnectPacket(reasonCode: .serverShuttingDown)
        if version == .v5 {
            #expect(
                try roundTrip(.disconnect(full), version)
                    == .disconnect(
                        DisconnectPacket(
                            reasonCode: .disconnectWithWillMessage,
                            properties: allProperties.filtered(for: .disconnect)
                        )
                    )
            )
            #expect(Array(encode(.disconnect(reasonOnly), version).readableBytesView) == [0xE0, 1, 0x8B])
            #expect(try roundTrip(.disconnect(reasonOnly), version) == .disconnect(reasonOnly))
        } else {
            #expect(try roundTrip(.disconnect(full), version) == .disconnect(DisconnectPacket()))
        }
    }

    @Test func auth() throws {
        #expect(try roundTrip(.auth(AuthPacket()), .v5) == .auth(AuthPacket()))
        #expect(Array(encode(.auth(AuthPacket()), .v5).readableBytesView) == [0xF0, 0])
        let full = AuthPacket(reasonCode: .continueAuthentication, properties: allProperties)
        #expect(
            try roundTrip(.auth(full), .v5)
                == .auth(
                    AuthPacket(reasonCode: .continueAuthentication, properties: allProperties.filtered(for: .auth))
                )
        )
        let reasonOnly = AuthPacket(reasonCode: .reAuthenticate)
        #expect(try roundTrip(.auth(reasonOnly), .v5) == .auth(reasonOnly))
        // AUTH does not exist before 5.0: nothing is written.
        for version in versions3 {
            #expect(encode(.auth(full), version).readableBytes == 0)
        }
    }

    @Test func everyPropertySurvivesSomewhere() throws {
        // Each property id is allowed in at least one context, and round trips there.
        for id in PropertyIdentifier.allCases {
            let contexts = PropertyContext.allCases.filter { $0.allows(id) }
            #expect(!contexts.isEmpty, "\(id)")
        }
        var union = Properties()
        for context in PropertyContext.allCases {
            var list = ByteBuffer()
            let filtered = allProperties.filtered(for: context)
            filtered.encode(into: &list, context: context)
            #expect(list.readableBytes == allProperties.encodedSize(context: context))
            let decoded = try Properties.decode(from: &list, context: context)
            #expect(decoded == filtered, "\(context)")
            #expect(list.readableBytes == 0)
            union = union.merging(decoded)
        }
        #expect(union == allProperties)
    }
}

extension Properties {
    /// Fields set in `other` override; for tests that rebuild a full set from per-context pieces.
    fileprivate func merging(_ other: Properties) -> Properties {
        var p = self
        p.payloadFormatIndicator = other.payloadFormatIndicator ?? p.payloadFormatIndicator
        p.messageExpiryInterval = other.messageExpiryInterval ?? p.messageExpiryInterval
        p.contentType = other.contentType ?? p.contentType
        p.responseTopic = other.responseTopic ?? p.responseTopic
        p.correlationData = other.correlationData ?? p.correlationData
        if other.subscriptionIdentifiers.count > p.subscriptionIdentifiers.count {
            p.subscriptionIdentifiers = other.subscriptionIdentifiers
        }
        p.sessionExpiryInterval = other.sessionExpiryInterval ?? p.sessionExpiryInterval
        p.assignedClientIdentifier = other.assignedClientIdentifier ?? p.assignedClientIdentifier
        p.serverKeepAlive = other.serverKeepAlive ?? p.serverKeepAlive
        p.authenticationMethod = other.authenticationMethod ?? p.authenticationMethod
        p.authenticationData = other.authenticationData ?? p.authenticationData
        p.requestProblemInformation = other.requestProblemInformation ?? p.requestProblemInformation
        p.willDelayInterval = other.willDelayInterval ?? p.willDelayInterval
        p.requestResponseInformation = other.requestResponseInformation ?? p.requestResponseInformation
        p.responseInformation = other.responseInformation ?? p.responseInformation
        p.serverReference = other.serverReference ?? p.serverReference
        p.reasonString = other.reasonString ?? p.reasonString
        p.receiveMaximum = other.receiveMaximum ?? p.receiveMaximum
        p.topicAliasMaximum = other.topicAliasMaximum ?? p.topicAliasMaximum
        p.topicAlias = other.topicAlias ?? p.topicAlias
        p.maximumQoS = other.maximumQoS ?? p.maximumQoS
        p.retainAvailable = other.retainAvailable ?? p.retainAvailable
        if !other.userProperties.isEmpty { p.userProperties = other.userProperties }
        p.maximumPacketSize = other.maximumPacketSize ?? p.maximumPacketSize
        p.wildcardSubscriptionAvailable = other.wildcardSubscriptionAvailable ?? p.wildcardSubscriptionAvailable
        p.subscriptionIdentifierAvailable = other.subscriptionIdentifierAvailable ?? p.subscriptionIdentifierAvailable
        p.sharedSubscriptionAvailable = other.sharedSubscriptionAvailable ?? p.sharedSubscriptionAvailable
        return p
    }
}
