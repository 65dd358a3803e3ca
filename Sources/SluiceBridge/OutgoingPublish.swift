import MQTTCore

// Note on sizes: the remote's Maximum Packet Size (CONNACK, MQTT 5) and Mosquitto's
// `bridge_max_packet_size` bound the whole packet, fixed header included, as `MQTTCodec.encodedSize`
// computes it (the codec that writes the packet, so the two cannot disagree). A message too large to
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
