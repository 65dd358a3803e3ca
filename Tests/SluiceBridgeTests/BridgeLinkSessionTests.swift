import MQTTCore
import Testing

@testable import SluiceBridge

/// BridgeLink on MQTTCore's client session: what the link tolerates from the session's typed errors,
/// and what it refuses.
@Suite("Bridge link session")
struct BridgeLinkSessionTests {
    private func inRules() -> BridgeRules {
        BridgeRules([
            try! TopicRule(
                pattern: "cmd/#",
                direction: .in,
                qos: .atLeastOnce,
                localPrefix: "devices/",
                remotePrefix: "gw1/"
            )
        ])
    }

    @Test func aConnAckBeforeAnyTickClosesInsteadOfGuessingTheTime() {
        var link = BridgeLink<TestInstant>(configuration: config(), random: SeededGenerator(seed: 1))
        _ = link.start()
        _ = link.connected()
        let actions = link.received(.connAck(ConnAckPacket()))
        #expect(actions == [.close(.protocolError("CONNACK before the first tick"))])
        #expect(!link.isConnected)
    }

    @Test func aSubAckWithTheWrongNumberOfCodesIsWarnedAndIgnored() {
        var h = Harness(config(rules: inRules()))
        _ = h.connect()  // SUBSCRIBE id 1, one filter
        let actions = h.link.received(
            .subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .grantedQoS1]))
        )
        #expect(actions.withoutLogs.isEmpty)
        #expect(actions.logs.contains { $0.contains("2 reason codes for 1 filters") })
        #expect(h.link.isConnected)
    }

    @Test func aPubRecOrPubCompFromTheRemoteIsAProtocolError() {
        for packet in [Packet.pubRec(PubAckPacket(packetIdentifier: 1)), .pubComp(PubAckPacket(packetIdentifier: 1))] {
            var h = Harness(config())
            _ = h.connect()
            _ = h.link.fetched([item(1)])
            let actions = h.link.received(packet)
            #expect(actions.contains { if case .close(.protocolError) = $0 { true } else { false } })
            #expect(!h.link.isConnected)
        }
    }

    @Test func aQoS1ResendWhileTheFirstCopyIsKeptLocallyIsAcknowledgedOnce() {
        var h = Harness(config(rules: inRules()))
        _ = h.connect()
        let remote = PublishPacket(
            topic: "gw1/cmd/v",
            payload: .init(string: "1"),
            qos: .atLeastOnce,
            packetIdentifier: 5
        )
        let delivery = LocalDelivery(packetID: 5, connection: 1)
        let local = PublishPacket(topic: "devices/cmd/v", payload: .init(string: "1"), qos: .atLeastOnce)
        #expect(h.link.received(.publish(remote)) == [.publishLocally(local, acknowledge: delivery)])
        var again = remote
        again.dup = true
        #expect(h.link.received(.publish(again)).isEmpty)  // the first copy's PUBACK answers both
        #expect(h.link.publishedLocally(delivery) == [.send(.pubAck(PubAckPacket(packetIdentifier: 5)))])
        #expect(h.link.publishedLocally(delivery).isEmpty)  // owed once
        #expect(h.link.statistics.received == 2)
    }

    @Test func resentIdsAreNotReusedForNewMessagesOnTheSameConnection() {
        // Session present: seq 1 goes again with id 1 (DUP); the notification and fresh messages skip it.
        var h = Harness(config(cleanSession: false, maxInflight: 3))
        _ = h.connect()
        _ = h.link.fetched(items(1...2))
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket(sessionPresent: true)))
        #expect(
            h.link.fetched(items(1...3)) == [
                sent(1, id: 1, dup: true), sent(2, id: 2, dup: true), sent(3, id: 3),
            ]
        )
        #expect(h.link.received(puback(1)) == [.remove(seqs: [1]), .fetch(after: 3, limit: 1)])
        #expect(h.link.fetched([item(4)]) == [sent(4, id: 4)])
        #expect(h.link.inflightCount == 3)
    }
}
