import NIOCore

// PUBLISH (spec 3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (spec 3.4–3.7).
// The payload stays a slice of the received buffer: no copy on the hot path.

extension PublishPacket {
    static func decode(from body: inout ByteBuffer, flags: UInt8, version: ProtocolVersion) throws(MQTTError)
        -> PublishPacket
    {
        // [MQTT-3.3.1-4] QoS 3 is malformed.
        guard let qos = QoS(rawValue: (flags >> 1) & 0x03) else { throw .malformed("PUBLISH QoS 3 [MQTT-3.3.1-4]") }
        let dup = flags & 0b1000 != 0
        // [MQTT-3.3.1-2] DUP is 0 for QoS 0.
        guard !(dup && qos == .atMostOnce) else { throw .malformed("PUBLISH DUP set with QoS 0 [MQTT-3.3.1-2]") }
        let topic = try body.readMQTTString("PUBLISH topic name")
        var packetIdentifier: UInt16?
        if qos != .atMostOnce {
            let identifier = try body.readMQTTUInt16("PUBLISH packet identifier")
            // [MQTT-2.2.1-3] a QoS 1/2 PUBLISH has a non-zero packet identifier.
            guard identifier != 0 else { throw .protocolError("PUBLISH packet identifier 0 [MQTT-2.2.1-3]") }
            packetIdentifier = identifier
        }
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .publish) : .none
        if topic.isEmpty {
            // [MQTT-3.3.2-1] 3.x needs a topic; 5.0 allows an empty one only with a Topic Alias (3.3.2.3.4).
            guard version == .v5 else { throw .topicNameInvalid("PUBLISH topic name is empty [MQTT-4.7.3-1]") }
            guard properties.topicAlias != nil else {
                throw .protocolError("PUBLISH topic name is empty and there is no topic alias [MQTT-3.3.2-1]")
            }
        } else {
            try Topic.validateName(topic)
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

    /// A QoS 1/2 packet needs a packet identifier; a missing one is written as 0, which peers reject.
    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeMQTTString(topic)
        if qos != .atMostOnce { buffer.writeInteger(packetIdentifier ?? 0) }
        if version == .v5 { properties.encode(into: &buffer, context: .publish) }
        var payload = self.payload
        buffer.writeBuffer(&payload)
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
