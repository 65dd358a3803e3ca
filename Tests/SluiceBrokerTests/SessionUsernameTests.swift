import MQTTCore
import Testing

@testable import SluiceBroker

/// An ACL in miniature: `reader` may read `t/one`; anonymous clients may read nothing.
private struct ReaderOnlyPolicy: AccessPolicy {
    func mayPublish(clientID: String, username: String?, topic: String) -> Bool { true }
    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool { username == "reader" }
    func mayReceive(clientID: String, username: String?, topic: String) -> Bool {
        username == "reader" && topic == "t/one"
    }
}

private let persistent: Properties = {
    var properties = Properties()
    properties.sessionExpiryInterval = 3600
    return properties
}()

extension Harness {
    @discardableResult
    fileprivate func connect(_ id: UInt64, _ clientID: String, username: String?, clean: Bool) -> [Seen] {
        let packet = ConnectPacket(
            protocolVersion: .v5,
            clientIdentifier: clientID,
            cleanStart: clean,
            keepAlive: 60,
            username: username,
            properties: persistent
        )
        return broker.connect(ConnectionID(id), packet, now: now).map(Seen.init)
    }
}

@Suite struct SessionUsernameTests {
    /// Issue 16 bug 1: the read check for an offline session used to run as anonymous.
    @Test func anOfflineSessionIsCheckedAsItsUser() {
        let h = Harness()
        h.broker.accessPolicy = ReaderOnlyPolicy()
        h.connect(1, "keeper", username: "reader", clean: true)
        h.subscribe(1, "t/one")
        h.closed(1)
        h.connect(2, "pub", username: nil, clean: true)
        h.publish(2, "t/one", "while-away", qos: .atLeastOnce, packetID: 1)
        #expect(h.broker.queuedMessageCount(clientID: "keeper") == 1)
        #expect(h.broker.stats.dropped[.notAuthorized] == nil)
        let resumed = h.connect(3, "keeper", username: "reader", clean: false)
        #expect(resumed.publishes(to: 3).map(\.text) == ["while-away"])
    }

    /// The session takes the username of its latest connection: reconnecting as another user
    /// (or anonymously) is judged as that user from then on.
    @Test func theLatestAuthenticationDecides() {
        let h = Harness()
        h.broker.accessPolicy = ReaderOnlyPolicy()
        h.connect(1, "keeper", username: "reader", clean: true)
        h.subscribe(1, "t/one")
        h.closed(1)
        h.connect(2, "keeper", username: nil, clean: false)
        h.closed(2)
        h.connect(3, "pub", username: nil, clean: true)
        h.publish(3, "t/one", "denied", qos: .atLeastOnce, packetID: 1)
        #expect(h.broker.queuedMessageCount(clientID: "keeper") == 0)
        #expect(h.broker.stats.dropped[.notAuthorized] == 1)
    }

    /// The username is saved with the session (record version 3), so the rule holds after a restart.
    @Test func theUsernameSurvivesARestart() throws {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", username: "reader", clean: true)
        h.subscribe(1, "t/one")
        h.closed(1)
        var saved = SavedTables()
        h.save(into: &saved)
        let record = try #require(saved.entries(.sessions).first?.value)
        #expect(record.first == PersistenceFormat.sessionVersion)

        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        restarted.broker.accessPolicy = ReaderOnlyPolicy()
        restarted.connect(2, "pub", username: nil, clean: true)
        restarted.publish(2, "t/one", "after-restart", qos: .atLeastOnce, packetID: 1)
        let resumed = restarted.connect(3, "keeper", username: "reader", clean: false)
        #expect(resumed.publishes(to: 3).map(\.text) == ["after-restart"])
    }

    /// A version 2 session record (written before usernames were kept) still loads, as anonymous.
    @Test func aVersion2SessionRecordStillLoads() throws {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", username: "reader", clean: true)
        h.subscribe(1, "t/one")
        h.closed(1)
        var saved = SavedTables()
        h.save(into: &saved)
        let (key, record) = try #require(saved.entries(.sessions).first)
        // Version 2 = version 3 without the trailing [1] flag + [2] length + "reader".
        var version2 = Array(record.dropLast(1 + 2 + "reader".utf8.count))
        version2[0] = 2
        saved.tables[.sessions] = [key: version2]

        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        #expect(restarted.broker.sessionCount == 1)
        #expect(restarted.broker.subscriptionCount == 1)
        restarted.broker.accessPolicy = ReaderOnlyPolicy()
        restarted.connect(2, "pub", username: nil, clean: true)
        restarted.publish(2, "t/one", "anonymous now", qos: .atLeastOnce, packetID: 1)
        #expect(restarted.broker.queuedMessageCount(clientID: "keeper") == 0)
    }

    @Test func aBadUsernameFlagIsReportedNotTrusted() throws {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", username: "reader", clean: true)
        h.closed(1)
        var saved = SavedTables()
        h.save(into: &saved)
        let (key, record) = try #require(saved.entries(.sessions).first)
        var damaged = record
        damaged[record.count - 1 - 2 - "reader".utf8.count] = 7
        saved.tables[.sessions] = [key: damaged]
        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems == ["session keeper: bad username flag"])
        #expect(restarted.broker.sessionCount == 0)
    }
}
