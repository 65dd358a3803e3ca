import MQTTCore

/// Why a client's PUBLISH is not routed.
enum PublishRefusal: Error, Equatable {
    /// Close the connection (with a DISCONNECT carrying this reason for MQTT 5).
    case protocolViolation(ReasonCode, String)
    /// Deeper than `max_topic_levels`: refused with 0x90 where MQTT 5 can say so, else closed.
    case topicTooDeep
}

extension Broker {
    /// The checks of a client's PUBLISH before it is routed: its topic alias (resolved, or recorded in
    /// `client`), the listener's mount point, `max_topic_levels`, retain and QoS limits, and our Receive
    /// Maximum. Returns the topic the message is published on.
    static func publishTopic(
        _ packet: PublishPacket,
        from client: inout ClientConnection,
        settings: BrokerSettings
    ) throws(PublishRefusal) -> String {
        var topic = packet.topic
        if client.version >= .v5, let alias = packet.properties.topicAlias {
            guard alias != 0, alias <= settings.topicAliasMaximum else {
                throw .protocolViolation(.topicAliasInvalid, "topic alias \(alias) out of range")
            }
            if topic.isEmpty {
                guard let known = client.inboundAliases[alias] else {
                    throw .protocolViolation(.protocolError, "unknown topic alias \(alias)")
                }
                topic = known
            } else {
                client.inboundAliases[alias] = topic
            }
        }
        if topic.isEmpty {
            throw .protocolViolation(.topicNameInvalid, "empty topic")
        }
        if let mount = settings.listenerMountPoints[client.listener] { topic = mount + topic }
        if Topic.exceedsLevels(topic, limit: settings.maxTopicLevels) { throw .topicTooDeep }
        if packet.retain && !settings.retainAvailable {
            throw .protocolViolation(.retainNotSupported, "retain not supported")
        }
        if packet.qos.rawValue > settings.maxQoS {
            // As Mosquitto: MQTT 5 gets DISCONNECT 0x9B, 3.x cannot be told and is closed.
            throw .protocolViolation(.qosNotSupported, "QoS \(packet.qos.rawValue) above max_qos")
        }
        if packet.qos != .atMostOnce && client.version >= .v5 {
            // Our Receive Maximum bounds the client's unacknowledged QoS 1/2 publishes [MQTT-3.3.4-9].
            if client.inboundUnacknowledged >= settings.receiveMaximum {
                throw .protocolViolation(.receiveMaximumExceeded, "receive maximum exceeded")
            }
        }
        return topic
    }
}
