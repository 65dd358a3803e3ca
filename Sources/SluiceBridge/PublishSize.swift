import MQTTCore

// Note on sizes: the remote's Maximum Packet Size (CONNACK, MQTT 5) and Mosquitto's
// `bridge_max_packet_size` bound the whole packet, fixed header included. A message too large to
// send is discarded and treated as if it had been sent [MQTT-3.1.2-25]; for the queue that means
// removed and counted as rejected, never retried (it would block the FIFO forever).

extension Properties {
    /// Only the properties a client may put in a PUBLISH [MQTT-3.3.2.3]: no topic alias (the link
    /// never uses one) and no subscription identifiers [MQTT-3.3.4-6].
    var forOutgoingPublish: Properties {
        guard !isEmpty else { return self }
        var p = Properties()
        p.payloadFormatIndicator = self.payloadFormatIndicator
        p.messageExpiryInterval = self.messageExpiryInterval
        p.contentType = self.contentType
        p.responseTopic = self.responseTopic
        p.correlationData = self.correlationData
        p.userProperties = self.userProperties
        return p
    }
}

enum PublishSize {
    static func variableByteIntegerSize(_ value: Int) -> Int {
        switch value {
        case ..<128: 1
        case ..<16_384: 2
        case ..<2_097_152: 3
        default: 4
        }
    }

    /// Bytes of the properties a PUBLISH carries after `forOutgoingPublish` (MQTT 5 section 2.2.2.2).
    static func propertiesSize(_ p: Properties) -> Int {
        var size = 0
        if p.payloadFormatIndicator != nil { size += 1 + 1 }
        if p.messageExpiryInterval != nil { size += 1 + 4 }
        if let s = p.contentType { size += 1 + 2 + s.utf8.count }
        if let s = p.responseTopic { size += 1 + 2 + s.utf8.count }
        if let b = p.correlationData { size += 1 + 2 + b.count }
        if p.topicAlias != nil { size += 1 + 2 }
        for id in p.subscriptionIdentifiers { size += 1 + variableByteIntegerSize(Int(id)) }
        for u in p.userProperties { size += 1 + 2 + u.name.utf8.count + 2 + u.value.utf8.count }
        return size
    }

    /// The encoded size of `publish` for `version`, fixed header included.
    static func encodedSize(_ publish: PublishPacket, version: ProtocolVersion) -> Int {
        var remaining = 2 + publish.topic.utf8.count + publish.payload.readableBytes
        if publish.qos != .atMostOnce { remaining += 2 }
        if version == .v5 {
            let properties = propertiesSize(publish.properties)
            remaining += variableByteIntegerSize(properties) + properties
        }
        return 1 + variableByteIntegerSize(remaining) + remaining
    }
}
