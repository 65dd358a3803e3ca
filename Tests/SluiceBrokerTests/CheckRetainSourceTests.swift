import MQTTCore
import Testing

@testable import SluiceBroker

// `check_retain_source true`: a retained message is sent to a new subscriber
// only while its publisher may still write to its topic under the ACL in force now.

/// Everyone may read and subscribe; only `writers` may publish (nil username = anonymous).
private struct WritersPolicy: AccessPolicy {
    var writers: Set<String?>
    func mayPublish(clientID: String, username: String?, topic: String) -> Bool { writers.contains(username) }
    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool { true }
    func mayReceive(clientID: String, username: String?, topic: String) -> Bool { true }
}

@Suite struct CheckRetainSourceTests {
    func connect(_ h: Harness, _ id: UInt64, _ clientID: String, username: String?) {
        let packet = ConnectPacket(protocolVersion: .v5, clientIdentifier: clientID, username: username)
        _ = h.completingTakeover(h.broker.connect(ConnectionID(id), packet, now: h.now).map(Seen.init))
    }

    /// alice publishes a retained message; the policy is then replaced by `reloaded` (an ACL reload).
    func retainedByAlice(check: Bool = true, reloaded: Set<String?>) -> Harness {
        let h = Harness { $0.checkRetainSource = check }
        h.broker.accessPolicy = WritersPolicy(writers: ["alice"])
        connect(h, 1, "alice-dev", username: "alice")
        h.publish(1, "r/t", "kept", qos: .atLeastOnce, packetID: 1, retain: true)
        h.broker.accessPolicy = WritersPolicy(writers: reloaded)
        return h
    }

    @Test func deliveredWhileThePublisherMayStillWrite() {
        let h = retainedByAlice(reloaded: ["alice"])
        connect(h, 2, "reader", username: "bob")
        #expect(h.subscribe(2, "r/#").publishes(to: 2).map(\.text) == ["kept"])
    }

    @Test func heldBackOnceThePublishersWriteAccessIsGone() {
        let h = retainedByAlice(reloaded: ["bob"])
        connect(h, 2, "reader", username: "bob")
        #expect(h.subscribe(2, "r/#").publishes(to: 2).isEmpty)
        // Kept, not deleted: it comes back if the right does.
        #expect(h.broker.retainedCount == 1)
        h.broker.accessPolicy = WritersPolicy(writers: ["alice"])
        connect(h, 3, "later", username: "bob")
        #expect(h.subscribe(3, "r/#").publishes(to: 3).map(\.text) == ["kept"])
    }

    @Test func checkRetainSourceFalseDeliversAnyway() {
        #expect(!BrokerSettings().checkRetainSource, "off by default, as Mosquitto 2.0.11 behaves")
        let h = retainedByAlice(check: false, reloaded: ["bob"])
        connect(h, 2, "reader", username: "bob")
        #expect(h.subscribe(2, "r/#").publishes(to: 2).map(\.text) == ["kept"])
    }

    @Test func anAnonymousPublisherIsCheckedAsAnonymous() {
        let h = Harness { $0.checkRetainSource = true }
        h.broker.accessPolicy = WritersPolicy(writers: [nil])
        connect(h, 1, "anon", username: nil)
        h.publish(1, "r/a", "anon", qos: .atLeastOnce, packetID: 1, retain: true)
        h.broker.accessPolicy = WritersPolicy(writers: ["alice"])
        connect(h, 2, "reader", username: "alice")
        #expect(h.subscribe(2, "r/#").publishes(to: 2).isEmpty)
    }

    @Test func aRetainedWillRemembersItsClient() {
        let h = Harness { $0.checkRetainSource = true }
        h.broker.accessPolicy = WritersPolicy(writers: ["alice"])
        let will = Will(topic: "w/alice", payload: ByteBuffer(string: "gone"), qos: .atLeastOnce, retain: true)
        let packet = ConnectPacket(protocolVersion: .v5, clientIdentifier: "alice-dev", username: "alice", will: will)
        _ = h.broker.connect(ConnectionID(1), packet, now: h.now)
        h.closed(1)
        h.broker.accessPolicy = WritersPolicy(writers: [])
        connect(h, 2, "reader", username: "bob")
        #expect(h.subscribe(2, "w/#").publishes(to: 2).isEmpty)
    }

    @Test func thePublisherIsSavedAndRestored() throws {
        let h = retainedByAlice(reloaded: ["alice"])
        h.broker.tracksChanges = true
        // A second retained message after tracking starts, so the save holds it.
        h.publish(1, "r/u", "also", qos: .atLeastOnce, packetID: 2, retain: true)
        var saved = SavedTables()
        saved.apply(h.broker.takeChanges(wallClockOffset: 0))
        let record = try #require(saved.entries(.retained).first?.value)
        #expect(record.first == PersistenceFormat.retainedVersion)
        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        restarted.broker.settings.checkRetainSource = true
        restarted.broker.accessPolicy = WritersPolicy(writers: ["bob"])
        connect(restarted, 2, "reader", username: "bob")
        #expect(
            restarted.subscribe(2, "r/#").publishes(to: 2).isEmpty,
            "alice's right is gone: held back after a restart too"
        )
    }

    /// A retained record written before the publisher was kept (version 2): it loads, and with no
    /// publisher known it is not checked, so an upgrade hides nothing.
    @Test func aVersion2RecordStillLoadsAndIsNotChecked() {
        let record: [UInt8] =
            [0x02]  // version 2
            + [0x00, 0x05] + Array("old/t".utf8)  // topic
            + [0x00, 0x00, 0x00, 0x01, 0x76]  // payload "v"
            + [0x01, 0x01]  // QoS 1, retain
            + [0x00, 0x00, 0x00, 0x00]  // no properties
            + [0, 0, 0, 0, 0, 0, 0, 0]  // never expires
            + [0x00, 0x03] + Array("dev".utf8)  // origin
        let h = Harness { $0.checkRetainSource = true }
        let problems = h.broker.restore(sessions: [], retained: [record], wallClockOffset: 0, now: h.now)
        #expect(problems.isEmpty)
        h.broker.accessPolicy = WritersPolicy(writers: [])
        connect(h, 2, "reader", username: "bob")
        let got = h.subscribe(2, "old/#").publishes(to: 2)
        #expect(got.map(\.text) == ["v"])
        #expect(got.map(\.retain) == [true])
        // An unknown future version is reported and skipped, never trusted.
        #expect(
            Harness().broker.restore(sessions: [], retained: [[0x09] + record.dropFirst()], wallClockOffset: 0, now: 0)
                .count == 1
        )
    }
}
