import MQTTCore
import Testing

@testable import SluiceBroker

/// `mount_point`: listener 1's clients live under "site7/" (issue 16 item 4).
@Suite struct MountPointTests {
    func harness() -> Harness {
        let h = Harness { $0.listenerMountPoints[1] = "site7/" }
        h.connect(1, "plain")  // listener 0: no mount point
        let packet = ConnectPacket(
            protocolVersion: .v5,
            clientIdentifier: "mounted",
            will: Will(topic: "status", payload: ByteBuffer(string: "gone"), qos: .atMostOnce, retain: false)
        )
        _ = h.broker.connect(ConnectionID(2), packet, listener: 1, now: h.now)
        return h
    }

    @Test func publishesAreMountedAndDeliveriesUnmounted() {
        let h = harness()
        h.subscribe(1, "#", qos: .atMostOnce)
        h.subscribe(2, "a/#", qos: .atMostOnce)
        // From the mounted client: the plain one sees the prefix, the mounted one does not.
        let seen = h.publish(2, "a/b", "x")
        #expect(seen.publishes(to: 1).map(\.topic) == ["site7/a/b"])
        #expect(seen.publishes(to: 2).map(\.topic) == ["a/b"])
        // From the plain client: only topics under the mount point reach the mounted client.
        #expect(h.publish(1, "site7/a/c", "y").publishes(to: 2).map(\.topic) == ["a/c"])
        #expect(h.publish(1, "a/b", "z").publishes(to: 2).isEmpty)
    }

    @Test func unsubscribeUsesTheMountedFilter() {
        let h = harness()
        h.subscribe(2, "a/#", qos: .atMostOnce)
        let unsubscribed = h.receive(.unsubscribe(UnsubscribePacket(packetIdentifier: 2, filters: ["a/#"])), from: 2)
        #expect(
            unsubscribed.packets(to: 2) == [.unsubAck(UnsubAckPacket(packetIdentifier: 2, reasonCodes: [.success]))]
        )
        #expect(h.publish(1, "site7/a/b", "x").publishes(to: 2).isEmpty)
    }

    @Test func theWillIsPublishedUnderTheMountPoint() {
        let h = harness()
        h.subscribe(1, "#", qos: .atMostOnce)
        #expect(h.closed(2).publishes(to: 1).map(\.topic) == ["site7/status"])
    }

    @Test func sharedSubscriptionsKeepTheirGroupInFront() {
        #expect(Broker.mounted("$share/g/a/#", at: "site7/") == "$share/g/site7/a/#")
        #expect(Broker.mounted("a/#", at: "site7/") == "site7/a/#")
    }

    @Test func theACLSeesMountedTopics() {
        struct OnlySite7: AccessPolicy {
            func mayPublish(clientID: String, username: String?, topic: String) -> Bool { topic.hasPrefix("site7/") }
            func maySubscribe(clientID: String, username: String?, filter: String) -> Bool {
                filter.hasPrefix("site7/")
            }
            func mayReceive(clientID: String, username: String?, topic: String) -> Bool { true }
        }
        let h = harness()
        h.broker.accessPolicy = OnlySite7()
        let granted = h.subscribe(2, "a/#", qos: .atMostOnce).packets(to: 2)
        #expect(granted == [.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS0]))])
        let refused = h.subscribe(1, "a/#", qos: .atMostOnce).packets(to: 1)
        #expect(refused == [.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.notAuthorized]))])
    }
}
