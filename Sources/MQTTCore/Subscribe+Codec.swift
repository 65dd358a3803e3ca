import NIOCore

// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (spec 3.8–3.11).

extension SubscriptionOptions {
    /// Reads the subscription options byte (spec 3.8.3.1). 3.x: only the QoS bits, the upper six bits
    /// are reserved [MQTT-3-8.3-4 (3.1.1)]. 5.0: QoS, no local, retain as published, retain handling,
    /// bits 6–7 reserved [MQTT-3.8.3-5].
    static func decode(_ byte: UInt8, version: ProtocolVersion) throws(MQTTError) -> SubscriptionOptions {
        guard let qos = QoS(rawValue: byte & 0x03) else { throw .malformed("SUBSCRIBE QoS 3 [MQTT-3.8.3-2]") }
        guard version == .v5 else {
            guard byte & 0xFC == 0 else { throw .malformed("SUBSCRIBE reserved option bits are set [MQTT-3-8.3-4]") }
            return SubscriptionOptions(qos: qos)
        }
        guard byte & 0xC0 == 0 else { throw .malformed("SUBSCRIBE reserved option bits are set [MQTT-3.8.3-5]") }
        guard let retainHandling = RetainHandling(rawValue: (byte >> 4) & 0x03) else {
            throw .malformed("SUBSCRIBE retain handling 3 [MQTT-3.8.3-5]")
        }
        return SubscriptionOptions(
            qos: qos,
            noLocal: byte & 0x04 != 0,
            retainAsPublished: byte & 0x08 != 0,
            retainHandling: retainHandling
        )
    }

    func encoded(version: ProtocolVersion) -> UInt8 {
        guard version == .v5 else { return qos.rawValue }
        var byte = qos.rawValue | retainHandling.rawValue << 4
        if noLocal { byte |= 0x04 }
        if retainAsPublished { byte |= 0x08 }
        return byte
    }
}

extension SubscribePacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> SubscribePacket {
        let identifier = try readNonZeroIdentifier(from: &body, "SUBSCRIBE")
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .subscribe) : .none
        var subscriptions: [TopicSubscription] = []
        while body.readableBytes > 0 {
            let filter = try body.readMQTTString("SUBSCRIBE topic filter")
            let options = try SubscriptionOptions.decode(try body.readMQTTUInt8("SUBSCRIBE options"), version: version)
            try Topic.validateFilter(filter)
            // [MQTT-3.8.3-4] no local on a shared subscription is a protocol error.
            if options.noLocal && Topic.isShared(filter) {
                throw .protocolError("SUBSCRIBE no local on a shared subscription [MQTT-3.8.3-4]")
            }
            subscriptions.append(TopicSubscription(filter: filter, options: options))
        }
        // [MQTT-3.8.3-3] at least one topic filter.
        guard !subscriptions.isEmpty else { throw .protocolError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]") }
        return SubscribePacket(packetIdentifier: identifier, subscriptions: subscriptions, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        var size = 2
        if version == .v5 { size += properties.encodedSize(context: .subscribe) }
        for subscription in subscriptions { size += 3 + subscription.filter.utf8.count }
        return size
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.encode(into: &buffer, context: .subscribe) }
        for subscription in subscriptions {
            buffer.writeMQTTString(subscription.filter)
            buffer.writeInteger(subscription.options.encoded(version: version))
        }
    }
}

extension SubAckPacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> SubAckPacket {
        let identifier = try readNonZeroIdentifier(from: &body, "SUBACK")
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .subAck) : .none
        var codes: [ReasonCode] = []
        codes.reserveCapacity(body.readableBytes)
        while let byte = body.readInteger(as: UInt8.self) {
            // [MQTT-3.9.3-2] (3.1.1) only 0x00, 0x01, 0x02 and 0x80.
            if version < .v5 && byte > 2 && byte != 0x80 {
                throw .malformed("SUBACK return code 0x\(String(byte, radix: 16)) is reserved [MQTT-3.9.3-2]")
            }
            codes.append(ReasonCode(rawValue: byte))
        }
        guard !codes.isEmpty else { throw .protocolError("SUBACK without reason codes") }
        return SubAckPacket(packetIdentifier: identifier, reasonCodes: codes, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        var size = 2 + reasonCodes.count
        if version == .v5 { size += properties.encodedSize(context: .subAck) }
        return size
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 {
            properties.encode(into: &buffer, context: .subAck)
            for code in reasonCodes { buffer.writeInteger(code.rawValue) }
        } else {
            // 3.x knows granted QoS 0–2 and 0x80 Failure only: every failure is written as 0x80.
            for code in reasonCodes { buffer.writeInteger(code.rawValue <= 2 ? code.rawValue : 0x80) }
        }
    }
}

extension UnsubscribePacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> UnsubscribePacket {
        let identifier = try readNonZeroIdentifier(from: &body, "UNSUBSCRIBE")
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .unsubscribe) : .none
        var filters: [String] = []
        while body.readableBytes > 0 {
            let filter = try body.readMQTTString("UNSUBSCRIBE topic filter")
            try Topic.validateFilter(filter)
            filters.append(filter)
        }
        // [MQTT-3.10.3-2] at least one topic filter.
        guard !filters.isEmpty else { throw .protocolError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]") }
        return UnsubscribePacket(packetIdentifier: identifier, filters: filters, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        var size = 2
        if version == .v5 { size += properties.encodedSize(context: .unsubscribe) }
        for filter in filters { size += 2 + filter.utf8.count }
        return size
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.encode(into: &buffer, context: .unsubscribe) }
        for filter in filters { buffer.writeMQTTString(filter) }
    }
}

extension UnsubAckPacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> UnsubAckPacket {
        let identifier = try readNonZeroIdentifier(from: &body, "UNSUBACK")
        // 3.x UNSUBACK is the packet identifier only (remaining length 2); trailing bytes are malformed.
        guard version == .v5 else { return UnsubAckPacket(packetIdentifier: identifier) }
        let properties = try Properties.decode(from: &body, context: .unsubAck)
        var codes: [ReasonCode] = []
        codes.reserveCapacity(body.readableBytes)
        while let byte = body.readInteger(as: UInt8.self) { codes.append(ReasonCode(rawValue: byte)) }
        guard !codes.isEmpty else { throw .protocolError("UNSUBACK without reason codes") }
        return UnsubAckPacket(packetIdentifier: identifier, reasonCodes: codes, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        guard version == .v5 else { return 2 }
        return 2 + properties.encodedSize(context: .unsubAck) + reasonCodes.count
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        guard version == .v5 else { return }
        properties.encode(into: &buffer, context: .unsubAck)
        for code in reasonCodes { buffer.writeInteger(code.rawValue) }
    }
}

/// A packet identifier that must not be zero [MQTT-2.2.1-3].
@inline(__always)
func readNonZeroIdentifier(from body: inout ByteBuffer, _ packet: StaticString) throws(MQTTError) -> UInt16 {
    let identifier = try body.readMQTTUInt16("packet identifier")
    guard identifier != 0 else { throw .protocolError("\(packet) packet identifier 0 [MQTT-2.2.1-3]") }
    return identifier
}
