import MQTTCore
import Testing

@testable import SluiceBroker

// `upgrade_outgoing_qos` (Mosquitto's non-standard option): delivered QoS = subscription QoS.

@Suite struct UpgradeOutgoingQoSTests {
    @Test(arguments: [false, true])
    func liveMessagesAreDeliveredAtTheSubscriptionsQoS(upgrade: Bool) {
        let h = Harness { $0.upgradeOutgoingQoS = upgrade }
        h.connect(1, "sub")
        h.subscribe(1, "t/#", qos: .exactlyOnce)
        h.connect(2, "pub")
        let zero = h.publish(2, "t/a", "zero", qos: .atMostOnce)
        let one = h.publish(2, "t/b", "one", qos: .atLeastOnce, packetID: 1)
        #expect(zero.publishes(to: 1).map(\.qos) == [upgrade ? .exactlyOnce : .atMostOnce])
        #expect(one.publishes(to: 1).map(\.qos) == [upgrade ? .exactlyOnce : .atLeastOnce])
        // Never above the subscription: a QoS 1 subscriber gets a QoS 2 message at 1 either way.
        h.connect(3, "sub1")
        h.subscribe(3, "u/#", qos: .atLeastOnce)
        let two = h.publish(2, "u/c", "two", qos: .exactlyOnce, packetID: 2)
        #expect(two.publishes(to: 3).map(\.qos) == [.atLeastOnce])
    }

    @Test(arguments: [false, true])
    func retainedMessagesToo(upgrade: Bool) {
        let h = Harness { $0.upgradeOutgoingQoS = upgrade }
        h.connect(2, "pub")
        h.publish(2, "r/x", "kept", qos: .atMostOnce, retain: true)
        h.connect(1, "sub")
        let seen = h.subscribe(1, "r/#", qos: .atLeastOnce)
        #expect(seen.publishes(to: 1).map(\.qos) == [upgrade ? .atLeastOnce : .atMostOnce])
        #expect(seen.publishes(to: 1).map(\.text) == ["kept"])
    }

    @Test func theHighestMatchingSubscriptionWins() {
        let h = Harness { $0.upgradeOutgoingQoS = true }
        h.connect(1, "sub")
        h.subscribe(1, "m/#", qos: .atMostOnce)
        h.subscribe(1, "m/+", qos: .atLeastOnce)
        h.connect(2, "pub")
        #expect(h.publish(2, "m/x", "x", qos: .atMostOnce).publishes(to: 1).map(\.qos) == [.atLeastOnce])
    }
}
