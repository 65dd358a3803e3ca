import MQTTCore
import Testing

@testable import SluiceBridge

private let notification = "$SYS/broker/connection/gw-1/state"

/// `bridge_outgoing_retain` and `bridge_attempt_unsubscribe`, as protocol traces (Mosquitto 2.0's meanings).
@Suite struct BridgeKeyTests {
    private func retained(_ seq: UInt64) -> QueuedItem {
        var queued = item(seq)
        queued.message.retain = true
        return queued
    }

    @Test func retainFlagIsKeptByDefault() {
        var h = Harness(config(maxInflight: 1))
        _ = h.connect()
        guard case .send(.publish(let publish)) = h.link.fetched([retained(1)]).first else {
            Issue.record("no PUBLISH")
            return
        }
        #expect(publish.retain)
    }

    @Test func outgoingRetainFalseClearsTheFlagOnQueuedMessagesAndTheNotification() {
        var configuration = config(notificationTopic: notification, maxInflight: 2)
        configuration.outgoingRetain = false
        var h = Harness(configuration)
        _ = h.link.start()
        // The will "0" stays retained, as Mosquitto sets it (will__set(..., retain true)).
        guard case .sendConnect(let connect) = h.link.connected().first else {
            Issue.record("no CONNECT")
            return
        }
        #expect(connect.will?.retain == true)
        let online = h.link.received(.connAck(ConnAckPacket())).withoutLogs
        #expect(
            online == [
                .stateChanged(connected: true),
                .send(
                    .publish(
                        PublishPacket(
                            topic: notification,
                            payload: .init(string: "1"),
                            qos: .atLeastOnce,
                            packetIdentifier: 1
                        )
                    )
                ),
                .fetch(after: nil, limit: 1),
            ]
        )
        var expected = message(1)
        expected.packetIdentifier = 2
        #expect(h.link.fetched([retained(1)]) == [.send(.publish(expected))])
    }

    @Test func notificationIsNotRetainedWhenTheRemoteHasNoRetain() {
        var h = Harness(config(version: .v5, notificationTopic: notification, maxInflight: 2))
        var connAck = ConnAckPacket()
        connAck.properties.retainAvailable = 0
        let sends = h.connect(connAck).compactMap { action -> PublishPacket? in
            if case .send(.publish(let publish)) = action { publish } else { nil }
        }
        // [MQTT-3.2.2-14]: no retained PUBLISH to a server without Retain Available.
        #expect(sends.map(\.retain) == [false])
    }

    private func rules(_ lines: [(String, BridgeDirection, String)]) -> BridgeRules {
        BridgeRules(
            lines.map { pattern, direction, remote in
                try! TopicRule(
                    pattern: pattern,
                    direction: direction,
                    qos: .atLeastOnce,
                    localPrefix: "",
                    remotePrefix: remote
                )
            }
        )
    }

    @Test func attemptUnsubscribeSendsOneUnsubscribeForOutOnlyRemoteTopicsAtEachConnect() {
        let mixed = rules([
            ("sensors/#", .out, "gw1/"), ("cmd/#", .in, "gw1/"), ("alarms/#", .out, "gw1/"),
            ("sensors/#", .out, "gw1/"),  // the same remote filter twice: unsubscribed once
            ("sync/#", .both, "gw1/"), ("sync/#", .out, "gw1/"),  // subscribed by the both rule: left alone
        ])
        var h = Harness(config(rules: mixed, attemptUnsubscribe: true))
        let subscribe = SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [
                TopicSubscription(filter: "gw1/cmd/#", options: SubscriptionOptions(qos: .atLeastOnce)),
                TopicSubscription(filter: "gw1/sync/#", options: SubscriptionOptions(qos: .atLeastOnce)),
            ]
        )
        let unsubscribe = UnsubscribePacket(packetIdentifier: 2, filters: ["gw1/sensors/#", "gw1/alarms/#"])
        #expect(
            h.connect().withoutLogs == [
                .stateChanged(connected: true), .send(.subscribe(subscribe)), .send(.unsubscribe(unsubscribe)),
                .fetch(after: nil, limit: 3),
            ]
        )
        #expect(h.link.received(.unsubAck(UnsubAckPacket(packetIdentifier: 2))) == [])
        // Again on the next connection, as Mosquitto's bridge__on_connect does.
        _ = h.link.connectionClosed(error: nil)
        _ = h.advance(.seconds(60))
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        let again = h.link.received(.connAck(ConnAckPacket()))
        #expect(
            again.contains {
                if case .send(.unsubscribe(let u)) = $0 { u.filters == unsubscribe.filters } else { false }
            }
        )
    }

    @Test func withoutAttemptUnsubscribeOrOutRulesNoUnsubscribeIsSent() {
        var h = Harness(config(attemptUnsubscribe: false))
        #expect(h.connect().withoutLogs == [.stateChanged(connected: true), .fetch(after: nil, limit: 3)])
        var inOnly = Harness(config(rules: rules([("cmd/#", .in, "gw1/")]), attemptUnsubscribe: true))
        #expect(!inOnly.connect().contains { if case .send(.unsubscribe) = $0 { true } else { false } })
    }

    @Test func outboundOnlyFiltersKeepOrderAndSkipSubscribedOnes() {
        let set = rules([
            ("a/#", .out, "r/"), ("b/#", .both, "r/"), ("b/#", .out, "r/"), ("a/#", .out, "r/"), ("c", .out, ""),
        ])
        #expect(set.remoteOutboundOnlyFilters == ["r/a/#", "c"])
    }
}
