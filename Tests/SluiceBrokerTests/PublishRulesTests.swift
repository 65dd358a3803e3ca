import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The checks of a client's PUBLISH alone: every refusal, alias resolution and the mount point.

@Suite struct PublishRulesTests {
    func client(_ version: ProtocolVersion = .v5, listener: Int = 0) -> ClientConnection {
        ClientConnection(
            clientID: "c",
            username: nil,
            version: version,
            listener: listener,
            keepAlive: 0,
            lastActivity: 0,
            receiveMaximum: 65535,
            maximumPacketSize: 268_435_460,
            topicAliasMaximum: 0
        )
    }

    func publish(
        _ topic: String,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        alias: UInt16? = nil
    ) -> PublishPacket {
        var properties = Properties()
        properties.topicAlias = alias
        return PublishPacket(
            topic: topic,
            payload: ByteBuffer(string: "x"),
            qos: qos,
            retain: retain,
            packetIdentifier: qos == .atMostOnce ? nil : 1,
            properties: properties
        )
    }

    func topic(
        _ packet: PublishPacket,
        _ client: inout ClientConnection,
        _ configure: (inout BrokerSettings) -> Void = { _ in }
    ) -> Result<String, PublishRefusal> {
        var settings = BrokerSettings()
        configure(&settings)
        return Result { () throws(PublishRefusal) in try Broker.publishTopic(packet, from: &client, settings: settings)
        }
    }

    @Test func anAliasIsRecordedThenResolved() {
        var c = client()
        #expect(topic(publish("a/b", alias: 3), &c) == .success("a/b"))
        #expect(topic(publish("", alias: 3), &c) == .success("a/b"))
        #expect(
            topic(publish("", alias: 4), &c) == .failure(.protocolViolation(.protocolError, "unknown topic alias 4"))
        )
        #expect(
            topic(publish("a", alias: 0), &c)
                == .failure(.protocolViolation(.topicAliasInvalid, "topic alias 0 out of range"))
        )
        #expect(
            topic(publish("a", alias: 11), &c)
                == .failure(.protocolViolation(.topicAliasInvalid, "topic alias 11 out of range"))
        )
    }

    @Test func eachLimitRefusesWithItsReason() {
        var c = client()
        #expect(topic(publish(""), &c) == .failure(.protocolViolation(.topicNameInvalid, "empty topic")))
        #expect(topic(publish("a/b/c"), &c) { $0.maxTopicLevels = 2 } == .failure(.topicTooDeep))
        #expect(
            topic(publish("a", retain: true), &c) { $0.retainAvailable = false }
                == .failure(.protocolViolation(.retainNotSupported, "retain not supported"))
        )
        #expect(
            topic(publish("a", qos: .exactlyOnce), &c) { $0.maxQoS = 1 }
                == .failure(.protocolViolation(.qosNotSupported, "QoS 2 above max_qos"))
        )
        c.inboundUnacknowledged = 5
        #expect(
            topic(publish("a", qos: .atLeastOnce), &c) { $0.maxInflightMessages = 5 }
                == .failure(.protocolViolation(.receiveMaximumExceeded, "receive maximum exceeded"))
        )
        var old = client(.v3_1_1)
        old.inboundUnacknowledged = 5
        #expect(topic(publish("a", qos: .atLeastOnce), &old) { $0.maxInflightMessages = 5 } == .success("a"))
    }

    @Test func theMountPointPrefixesTheTopicAndCountsInItsLevels() {
        var c = client(listener: 2)
        let mounted: (inout BrokerSettings) -> Void = { $0.listenerMountPoints = [2: "site/"] }
        #expect(topic(publish("a/b"), &c, mounted) == .success("site/a/b"))
        #expect(
            topic(publish("a/b"), &c) {
                mounted(&$0); $0.maxTopicLevels = 2
            } == .failure(.topicTooDeep)
        )
    }
}
