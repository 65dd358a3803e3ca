import MQTTCore
import Testing

@testable import SluiceBridge

/// `start_type lazy|once` with Mosquitto's meanings (issue 16).
@Suite struct BridgeStartTypeTests {
    func lazy(threshold: Int = 3, idle: Duration = .seconds(60)) -> BridgeLinkConfiguration {
        var c = config()
        c.startType = .lazy(threshold: threshold, idleTimeout: idle)
        return c
    }

    @Test func aLazyLinkConnectsAtItsThreshold() {
        var h = Harness(lazy(threshold: 3))
        #expect(h.link.awaitsThreshold)
        #expect(h.link.queued(count: 2).isEmpty)
        #expect(h.link.queued(count: 3).withoutLogs == [.connect(addressIndex: 0)])
        #expect(!h.link.awaitsThreshold)
        #expect(h.link.queued(count: 50).isEmpty)  // already connecting
    }

    @Test func anAutomaticLinkNeverWaitsForAThreshold() {
        var h = Harness(config())
        #expect(!h.link.awaitsThreshold)
        #expect(h.link.queued(count: 1000).isEmpty)
    }

    @Test func aLazyLinkDisconnectsWhenIdleAndStartsAgainAtTheThreshold() {
        var h = Harness(lazy(threshold: 2, idle: .seconds(60)))
        _ = h.link.queued(count: 2)
        _ = h.link.connected()
        #expect(
            h.link.received(.connAck(ConnAckPacket())).withoutLogs == [
                .stateChanged(connected: true), .fetch(after: nil, limit: 3),
            ]
        )
        #expect(h.link.fetched(items(1...2)).withoutLogs == [sent(1, id: 1), sent(2, id: 2)])  // short: drained
        _ = h.link.received(puback(1))
        _ = h.advance(.seconds(30))
        #expect(h.advance(.seconds(40)).withoutLogs.isEmpty, "a message still in flight keeps the link up")
        _ = h.link.received(puback(2))
        #expect(
            h.advance(.seconds(1)).withoutLogs == [
                .send(.disconnect(DisconnectPacket())), .stateChanged(connected: false), .close(.idle),
            ]
        )
        #expect(h.link.awaitsThreshold)
        #expect(h.link.connectionClosed().isEmpty)  // the close it asked for: no reconnect
        #expect(h.link.queued(count: 1).isEmpty)
        #expect(h.link.queued(count: 2).withoutLogs == [.connect(addressIndex: 0)])
    }

    @Test func theIdleDisconnectIsCleanAndSaysZero() {
        var c = lazy(threshold: 1, idle: .seconds(5))
        c.notificationTopic = "$SYS/n"
        var h = Harness(c)
        _ = h.link.queued(count: 1)
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        _ = h.link.received(puback(1))  // the notification "1"
        _ = h.link.fetched([])
        #expect(h.advance(.seconds(4)).withoutLogs.isEmpty)
        let actions = h.advance(.seconds(2)).withoutLogs
        #expect(actions.contains(.send(.disconnect(DisconnectPacket()))))
        #expect(actions.contains(.stateChanged(connected: false)))
        #expect(actions.last == .close(.idle))
        #expect(
            actions.contains { if case .send(.publish(let p)) = $0 { String(buffer: p.payload) == "0" } else { false } }
        )
    }

    @Test func aLostLazyConnectionWithMessagesIsRetried() {
        var h = Harness(lazy(threshold: 1))
        _ = h.link.queued(count: 1)
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        #expect(h.link.connectionClosed().scheduledDelay != nil)
    }

    @Test func aOnceLinkIsNotRestartedAfterALossOrAFailedAttempt() {
        var c = config()
        c.startType = .once
        var h = Harness(c)
        _ = h.connect()
        let lost = h.link.connectionClosed()
        #expect(lost.scheduledDelay == nil)
        #expect(lost.logs.contains { $0.contains("start_type once") })
        #expect(h.link.start().withoutLogs.isEmpty)

        var failing = Harness(c)
        _ = failing.link.start()
        #expect(failing.link.connectionClosed().scheduledDelay == nil)
        #expect(failing.link.reconnectTimerFired().isEmpty)
    }
}
