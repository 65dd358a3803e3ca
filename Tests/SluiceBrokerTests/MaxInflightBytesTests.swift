import MQTTCore
import Testing

@testable import SluiceBroker

// `max_inflight_bytes` reaching the window: one more QoS 1/2 message goes in flight while the payload
// bytes in flight are below the bound; the rest waits in the client's queue, whose own bounds
// (max_queued_messages/bytes) still apply. The rule itself (a larger message still goes, alone; the count
// window still applies) is tested on `OutboundWindow` alone (OutboundWindowTests).

@Suite struct MaxInflightBytesTests {
    static let sixty = String(repeating: "x", count: 60)

    func subscribed(_ configure: @escaping (inout BrokerSettings) -> Void) -> Harness {
        let h = Harness {
            $0.maxInflightBytes = 100; configure(&$0)
        }
        h.connect(1, "sub")
        h.subscribe(1, "t/#", qos: .atLeastOnce)
        h.connect(2, "pub")
        return h
    }

    @Test func messagesBeyondTheBoundWaitForAnAcknowledgement() throws {
        let h = subscribed { _ in }
        var sent: [PublishPacket] = []
        for i in 1...3 {
            sent += h.publish(2, "t/\(i)", Self.sixty, qos: .atLeastOnce, packetID: UInt16(i)).publishes(to: 1)
        }
        // 0 < 100: the first goes; 60 < 100: the second; 120: the third waits.
        #expect(sent.map(\.topic) == ["t/1", "t/2"])
        #expect(h.broker.inflightMessageCount(clientID: "sub") == 2)
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 1)
        let next = h.receive(.pubAck(PubAckPacket(packetIdentifier: try #require(sent[0].packetIdentifier))), from: 1)
        #expect(next.publishes(to: 1).map(\.topic) == ["t/3"])
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 0)
    }

    @Test func qos0IsNotHeldAndTheQueueBoundStillDrops() {
        let h = subscribed { $0.maxQueuedMessages = 1 }
        for i in 1...2 { h.publish(2, "t/\(i)", Self.sixty, qos: .atLeastOnce, packetID: UInt16(i)) }
        // In flight: 120 bytes. QoS 0 is sent at once, as without the option.
        #expect(h.publish(2, "t/zero", "z", qos: .atMostOnce).publishes(to: 1).map(\.topic) == ["t/zero"])
        h.publish(2, "t/3", Self.sixty, qos: .atLeastOnce, packetID: 3)  // queued (1 of 1)
        h.publish(2, "t/4", Self.sixty, qos: .atLeastOnce, packetID: 4)  // over max_queued_messages: dropped
        #expect(h.broker.queuedMessageCount(clientID: "sub") == 1)
        #expect(h.broker.stats.dropped[.queueFull] == 1)
    }
}
