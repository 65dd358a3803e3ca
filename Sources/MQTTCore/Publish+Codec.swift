import NIOCore

// PUBLISH (spec 3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (spec 3.4–3.7).
// The payload stays a slice of the received buffer: no copy on the hot path.

extension PublishPacket {
    /// `lastTopic`: the topic of the connection's previous PUBLISH, returned again (not made anew) when this
    /// one has the same; replaced when it has another.
    static func decode(
        from body: inout ByteBuffer,
        flags: UInt8,
        version: ProtocolVersion,
        lastTopic: inout String
    ) throws(MQTTError) -> PublishPacket {
        // [MQTT-3.3.1-4] QoS 3 is malformed.
        guard let qos = QoS(rawValue: (flags >> 1) & 0x03) else { throw .malformed("PUBLISH QoS 3 [MQTT-3.3.1-4]") }
        let dup = flags & 0b1000 != 0
        // [MQTT-3.3.1-2] DUP is 0 for QoS 0.
        guard !(dup && qos == .atMostOnce) else { throw .malformed("PUBLISH DUP set with QoS 0 [MQTT-3.3.1-2]") }
        let topic = try body.readMQTTTopicName("PUBLISH topic name", reusing: &lastTopic)
        var packetIdentifier: UInt16?
        if qos != .atMostOnce {
            let identifier = try body.readMQTTUInt16("PUBLISH packet identifier")
            // [MQTT-2.2.1-3] a QoS 1/2 PUBLISH has a non-zero packet identifier.
            guard identifier != 0 else { throw .protocolError("PUBLISH packet identifier 0 [MQTT-2.2.1-3]") }
            packetIdentifier = identifier
        }
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .publish) : .none
        // A non-empty topic is a valid name now: its length fits, it has no U+0000 and no wildcard.
        if topic.isEmpty {
            // [MQTT-3.3.2-1] 3.x needs a topic; 5.0 allows an empty one only with a Topic Alias (3.3.2.3.4).
            guard version == .v5 else { throw .topicNameInvalid("PUBLISH topic name is empty [MQTT-4.7.3-1]") }
            guard properties.topicAlias != nil else {
                throw .protocolError("PUBLISH topic name is empty and there is no topic alias [MQTT-3.3.2-1]")
            }
        }
        let payload = body.readSlice(length: body.readableBytes) ?? ByteBuffer()
        return PublishPacket(
            topic: topic,
            payload: payload,
            qos: qos,
            retain: flags & 0x01 != 0,
            dup: dup,
            packetIdentifier: packetIdentifier,
            properties: properties
        )
    }

    func bodySize(version: ProtocolVersion) -> Int {
        var size = 2 + topic.utf8.count
        if qos != .atMostOnce { size += 2 }
        if version == .v5 { size += properties.encodedSize(context: .publish) }
        return size + payload.readableBytes
    }

    /// The fixed header's first byte: type, DUP, QoS and RETAIN.
    var firstByte: UInt8 {
        // DUP is meaningless and forbidden at QoS 0 [MQTT-3.3.1-2].
        let dup: UInt8 = self.dup && qos != .atMostOnce ? 0b1000 : 0
        return PacketType.publish.rawValue << 4 | dup | qos.rawValue << 1 | (retain ? 1 : 0)
    }

    /// The whole packet, its fixed header included, in one pass over reserved bytes unless it carries
    /// MQTT 5 properties (which go between the packet identifier and the payload): every message
    /// delivered is encoded here, and a `ByteBuffer` write per field, each checking capacity and
    /// uniqueness, cost twice as much. A QoS 1/2 packet needs a packet identifier; a missing one is
    /// written as 0, which peers reject.
    func encode(version: ProtocolVersion, into buffer: inout ByteBuffer) {
        let remainingLength = bodySize(version: version)
        let packetSize = 1 + VariableByteInteger.size(remainingLength) + remainingLength
        let topicCount = topic.utf8.count
        precondition(topicCount <= 0xFFFF, "MQTT string longer than 65535 bytes")
        let propertiesFollow = version == .v5 && !properties.isEmpty
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: packetSize) { bytes in
            var packet = RawBytesWriter(bytes)
            packet.write(firstByte)
            packet.writeVariableByteInteger(remainingLength)
            packet.write(UInt16(truncatingIfNeeded: topicCount))
            packet.write(topic)
            if qos != .atMostOnce { packet.write(packetIdentifier ?? 0) }
            if propertiesFollow { return packet.count }
            if version == .v5 { packet.write(UInt8(0)) }  // no properties
            packet.write(payload)
            return packet.count
        }
        guard propertiesFollow else { return }
        properties.encode(into: &buffer, context: .publish)
        buffer.writeImmutableBuffer(payload)
    }
}

extension PubAckPacket {
    static func decode(from body: inout ByteBuffer, type: PacketType, version: ProtocolVersion) throws(MQTTError)
        -> PubAckPacket
    {
        let identifier = try body.readMQTTUInt16("packet identifier")
        // [MQTT-2.2.1-3] acknowledgements carry the (non-zero) identifier of what they acknowledge.
        guard identifier != 0 else { throw .protocolError("\(type) packet identifier 0 [MQTT-2.2.1-3]") }
        guard version == .v5 else { return PubAckPacket(packetIdentifier: identifier) }
        // [MQTT-3.4.2-1] remaining length 2: success and no properties; 3: reason code only.
        if body.readableBytes == 0 { return PubAckPacket(packetIdentifier: identifier) }
        let reasonCode = ReasonCode(rawValue: try body.readMQTTUInt8("reason code"))
        if body.readableBytes == 0 { return PubAckPacket(packetIdentifier: identifier, reasonCode: reasonCode) }
        let properties = try Properties.decode(from: &body, context: .pubAck)
        return PubAckPacket(packetIdentifier: identifier, reasonCode: reasonCode, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        guard version == .v5 else { return 2 }
        let properties = self.properties.encodedListSize(context: .pubAck)
        if properties == 0 { return reasonCode == .success ? 2 : 3 }
        return 3 + VariableByteInteger.size(properties) + properties
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        guard version == .v5 else { return }
        let hasProperties = properties.encodedListSize(context: .pubAck) > 0
        if !hasProperties && reasonCode == .success { return }
        buffer.writeInteger(reasonCode.rawValue)
        if hasProperties { properties.encode(into: &buffer, context: .pubAck) }
    }
}
