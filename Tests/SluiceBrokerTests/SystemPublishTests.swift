import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

@Suite struct SystemPublishTests {
    func message(_ topic: String) -> Message {
        Message(topic: topic, payload: ByteBuffer(string: "5"), qos: .atMostOnce, retain: true)
    }

    @Test func aSysMessageMatchingAnOutRuleIsQueuedForTheBridgeAndStillReachesSubscribers() {
        let h = Harness(durable: ["$SYS/broker/sluice/bridges/#"])
        h.connect(1, "watcher")
        h.subscribe(1, "$SYS/#")
        let seen = h.broker.publishSystem(message("$SYS/broker/sluice/bridges/central/queue/depth"), now: h.now).map(
            Seen.init
        )
        #expect(
            seen.contains {
                if case .persist(_, "$SYS/broker/sluice/bridges/central/queue/depth") = $0 { true } else { false }
            }
        )
        #expect(seen.publishes(to: 1).map(\.topic) == ["$SYS/broker/sluice/bridges/central/queue/depth"])
    }

    @Test func aSysMessageNoRuleMatchesStaysLocal() {
        let h = Harness(durable: ["sensors/#"])
        let seen = h.broker.publishSystem(message("$SYS/broker/uptime"), now: h.now).map(Seen.init)
        #expect(!seen.contains { if case .persist = $0 { true } else { false } })
    }

    @Test func otherInternalMessagesNeverGoBackOut() {
        // A bridge's `in` message published locally matches the `out` rule of a `both` topic: it must not loop.
        let h = Harness(durable: ["cmd/#"])
        let seen = h.broker.publish(message("cmd/valve"), now: h.now).map(Seen.init)
        #expect(!seen.contains { if case .persist = $0 { true } else { false } })
    }
}
