import MQTTCore
import Testing

@testable import SluiceBroker

/// The broker's tables as the store keeps them: keys in byte order per table. Applies a save's
/// writes the way `Store.apply` does, so restore can be tested without LMDB (the integration
/// tests kill the real binary).
struct SavedTables {
    var tables: [PersistenceTable: [[UInt8]: [UInt8]]] = [:]

    mutating func apply(_ writes: [StateWrite]) {
        for write in writes {
            switch write {
            case .put(let table, let key, let value): tables[table, default: [:]][key] = value
            case .delete(let table, let key): tables[table]?[key] = nil
            case .deletePrefix(let table, let prefix):
                tables[table] = tables[table]?.filter { !$0.key.starts(with: prefix) }
            }
        }
    }

    func entries(_ table: PersistenceTable) -> [(key: [UInt8], value: [UInt8])] {
        (tables[table] ?? [:]).sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) }
    }

    func count(_ table: PersistenceTable) -> Int { tables[table]?.count ?? 0 }

    /// A broker restarted on these tables, its clock at zero, `offset` ms of wall-clock later.
    func restored(wallClockOffset offset: Int64) -> (Harness, [String]) {
        let restarted = Harness()
        restarted.now = 0
        restarted.broker.tracksChanges = true
        let problems = restarted.broker.restore(
            sessions: entries(.sessions).map(\.value),
            sessionMessages: entries(.sessionMessages),
            retained: entries(.retained).map(\.value),
            wallClockOffset: offset,
            now: 0
        )
        return (restarted, problems)
    }
}

extension [StateWrite] {
    func count(_ table: PersistenceTable, puts: Bool) -> Int {
        count {
            switch $0 {
            case .put(let t, _, _): puts && t == table
            case .delete(let t, _), .deletePrefix(let t, _): !puts && t == table
            }
        }
    }
}

private let persistentSession: Properties = {
    var properties = Properties()
    properties.sessionExpiryInterval = 3600
    return properties
}()

extension Harness {
    /// Takes the pending save as committed: its writes, and what the held replies released.
    @discardableResult
    func save(into saved: inout SavedTables) -> [Seen] {
        let changes = broker.takeChanges()
        saved.apply(changes.encoded(wallClockOffset: 0))
        return changes.acknowledgements.flatMap { broker.persisted(token: $0, accepted: true, now: now).map(Seen.init) }
    }

    @discardableResult
    func save() -> [Seen] {
        var discarded = SavedTables()
        return save(into: &discarded)
    }

    /// "keeper" (connection 1) subscribes to `filter` in a persistent session and goes away;
    /// "pub" (connection 2) connects.
    func offlinePersistentSubscriber(_ filter: String) {
        connect(1, "keeper", properties: persistentSession)
        subscribe(1, filter)
        save()
        closed(1)
        connect(2, "pub")
    }
}

@Suite struct PersistenceTests {
    @Test func sessionsAndRetainedSurviveARestart() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", properties: persistentSession)
        h.subscribe(1, "t/#", identifier: 5)
        let inflight = h.publish(1, "t/a", "in-flight", qos: .atLeastOnce, packetID: 1).publishes(to: 1)
        h.closed(1)
        h.connect(2, "pub")
        h.publish(2, "t/b", "queued", qos: .exactlyOnce, packetID: 9)  // PUBREL not yet received
        h.publish(2, "r", "kept", retain: true)
        h.closed(2)  // "pub" had a clean session: it must not be saved

        var saved = SavedTables()
        let writes = h.broker.takeChanges(wallClockOffset: 1_000_000)
        saved.apply(writes)
        #expect(saved.count(.sessions) == 1)
        #expect(saved.count(.sessionMessages) == 2)
        #expect(saved.count(.retained) == 1)
        #expect(!writes.contains(.delete(.sessions, key: Array("pub".utf8))))  // never saved: no delete
        // Nothing changed since: nothing to write.
        #expect(h.broker.takeChanges(wallClockOffset: 1_000_000).isEmpty)

        let (restarted, problems) = saved.restored(wallClockOffset: 1_000_000 + Int64(h.now) + 10_000)
        #expect(problems.isEmpty)
        #expect(restarted.broker.retainedCount == 1)
        let resumed = restarted.connect(3, "keeper", clean: false, properties: persistentSession)
        guard case .connAck(let ack)? = resumed.packets(to: 3).first else { return #expect(Bool(false)) }
        #expect(ack.sessionPresent)
        let delivered = resumed.publishes(to: 3)
        #expect(delivered.map(\.text) == ["in-flight", "queued"])
        #expect(delivered.first?.dup == true)
        #expect(delivered.first?.packetIdentifier == inflight.first?.packetIdentifier)
        #expect(delivered.first?.properties.subscriptionIdentifiers == [5])
    }

    @Test func aSaveWritesOnlyTheMessagesThatCameAndWent() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.offlinePersistentSubscriber("t")
        var saved = SavedTables()
        var acknowledged = 0
        for batch in 0..<25 {
            // 20 at a time: our Receive Maximum bounds a publisher's unacknowledged messages.
            for n in 1...20 { h.publish(2, "t", "m\(batch * 20 + n)", qos: .atLeastOnce, packetID: UInt16(n)) }
            let changes = h.broker.takeChanges()
            saved.apply(changes.encoded(wallClockOffset: 0))
            for token in changes.acknowledgements {
                acknowledged += h.broker.persisted(token: token, accepted: true, now: h.now).count
            }
        }
        #expect(saved.count(.sessionMessages) == 500)
        #expect(acknowledged == 500)

        // One more message: one record written (plus the session's own), none rewritten.
        h.publish(2, "t", "m501", qos: .atLeastOnce, packetID: 501)
        let next = h.broker.takeChanges(wallClockOffset: 0)
        #expect(next.count(.sessionMessages, puts: true) == 1)
        #expect(next.count(.sessions, puts: true) == 1)
        #expect(next.count(.sessionMessages, puts: false) == 0)
        saved.apply(next)

        // The subscriber comes back and acknowledges the first one: its record is deleted.
        let resumed = h.connect(3, "keeper", clean: false, properties: persistentSession).publishes(to: 3)
        h.receive(.pubAck(PubAckPacket(packetIdentifier: resumed[0].packetIdentifier!)), from: 3)
        let afterAck = h.broker.takeChanges(wallClockOffset: 0)
        #expect(afterAck.count(.sessionMessages, puts: false) == 1)
        #expect(afterAck.count(.sessionMessages, puts: true) == 0)
        saved.apply(afterAck)
        #expect(saved.count(.sessionMessages) == 500)

        // After a restart the 500 not yet acknowledged come back in order.
        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        #expect(
            restarted.broker.inflightMessageCount(clientID: "keeper")
                + restarted.broker.queuedMessageCount(clientID: "keeper") == 500
        )
        let again = restarted.connect(4, "keeper", clean: false, properties: persistentSession).publishes(to: 4)
        #expect(again.first?.text == "m2")
        #expect(again.map(\.text) == (2...(1 + again.count)).map { "m\($0)" })
    }

    @Test func acknowledgementsWaitForTheSaveOfWhatTheyChanged() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.offlinePersistentSubscriber("kept/#")
        // Queued for a persistent session: the PUBACK waits for the save.
        #expect(h.publish(2, "kept/a", "x", qos: .atLeastOnce, packetID: 1).packets(to: 2).isEmpty)
        // A retained message: the same, for QoS 2's PUBREC.
        #expect(h.publish(2, "other", "r", qos: .exactlyOnce, packetID: 2, retain: true).packets(to: 2).isEmpty)
        // Changes nothing that is saved, but acknowledgements go in the order the PUBLISHes came
        // [MQTT-4.6.0-2]: it waits behind the two.
        #expect(h.publish(2, "other", "y", qos: .atLeastOnce, packetID: 3).packets(to: 2).isEmpty)
        #expect(h.broker.hasAcknowledgementsAwaitingSave)

        let changes = h.broker.takeChanges()
        #expect(changes.acknowledgements.count == 2)
        #expect(!h.broker.hasAcknowledgementsAwaitingSave)
        let acks = changes.acknowledgements.flatMap {
            h.broker.persisted(token: $0, accepted: true, now: h.now).map(Seen.init)
        }
        #expect(
            acks == [
                .send(ConnectionID(2), .pubAck(PubAckPacket(packetIdentifier: 1))),
                .send(ConnectionID(2), .pubRec(PubAckPacket(packetIdentifier: 2))),
                .send(ConnectionID(2), .pubAck(PubAckPacket(packetIdentifier: 3))),
            ]
        )
        #expect(h.publish(2, "other", "z", qos: .atLeastOnce, packetID: 4).acknowledged(to: 2) == [4])
    }

    @Test func aPersistentSessionsSubAckWaitsForTheSave() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", properties: persistentSession)
        h.connect(2, "passing")
        #expect(h.subscribe(1, "t").packets(to: 1).isEmpty)
        #expect(h.subscribe(2, "t").packets(to: 2).count == 1)  // a session that ends at disconnect: at once
        var saved = SavedTables()
        let released = h.save(into: &saved)
        #expect(saved.count(.sessions) == 1)
        #expect(released.count == 1)
        guard case .send(ConnectionID(1), .subAck(let ack))? = released.first else { return #expect(Bool(false)) }
        #expect(ack.reasonCodes == [.grantedQoS1])
        let unsubscribe = UnsubscribePacket(packetIdentifier: 7, filters: ["t"])
        #expect(h.receive(.unsubscribe(unsubscribe), from: 1).isEmpty)
        #expect(h.save().count == 1)
    }

    @Test func withoutPersistenceAcknowledgementsDoNotWait() {
        let h = Harness()
        h.offlinePersistentSubscriber("t")
        #expect(
            h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 1).packets(to: 2) == [
                .pubAck(PubAckPacket(packetIdentifier: 1))
            ]
        )
        #expect(!h.broker.hasAcknowledgementsAwaitingSave)
    }

    @Test func aDurableAndSavedMessageWaitsForBothCommits() {
        let h = Harness(durable: ["t"])
        h.broker.tracksChanges = true
        h.offlinePersistentSubscriber("t")  // its SUBACK took token 1
        #expect(h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 1) == [.persist(2, "t")])
        let tokens = h.broker.takeChanges().acknowledgements
        #expect(tokens == [2])
        #expect(h.broker.persisted(token: 2, accepted: true, now: h.now).isEmpty)  // the bridge queue's commit
        #expect(
            h.broker.persisted(token: 2, accepted: true, now: h.now).map(Seen.init) == [
                .send(ConnectionID(2), .pubAck(PubAckPacket(packetIdentifier: 1)))
            ]
        )
    }

    @Test func aReplacedOrEndedSessionLeavesNoRecords() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.offlinePersistentSubscriber("t")
        h.publish(2, "t", "old", qos: .atLeastOnce, packetID: 1)
        var saved = SavedTables()
        saved.apply(h.broker.takeChanges(wallClockOffset: 0))
        #expect(saved.count(.sessionMessages) == 1)

        // Clean start: a new persistent session under the same identifier; the old messages go.
        h.connect(3, "keeper", clean: true, properties: persistentSession)
        h.closed(3)
        saved.apply(h.broker.takeChanges(wallClockOffset: 0))
        #expect(saved.count(.sessions) == 1 && saved.count(.sessionMessages) == 0)

        // Reconnecting with expiry 0 ends the session when it disconnects: everything goes.
        h.connect(4, "keeper", clean: false)
        h.closed(4)
        saved.apply(h.broker.takeChanges(wallClockOffset: 0))
        #expect(saved.count(.sessions) == 0 && saved.count(.sessionMessages) == 0)
    }

    @Test func damagedRecordsAreReportedNotTrusted() {
        let h = Harness()
        h.broker.tracksChanges = true
        let problems = h.broker.restore(
            sessions: [[1, 0, 3], [2, 0]],
            sessionMessages: [(key: [0, 1, 0x41, 0, 0, 0, 0, 0, 0, 0, 1], value: [9])],
            retained: [[9], []],
            wallClockOffset: 0,
            now: 0
        )
        #expect(problems.count == 5)
        #expect(h.broker.sessionCount == 0 && h.broker.retainedCount == 0)
    }

    @Test func messagesWithoutASessionAreDeletedByTheNextSave() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.offlinePersistentSubscriber("t")
        h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 1)
        var saved = SavedTables()
        saved.apply(h.broker.takeChanges(wallClockOffset: 0))
        saved.tables[.sessions] = [:]  // as if damaged

        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems == ["1 saved message(s) for keeper without a session"])
        saved.apply(restarted.broker.takeChanges(wallClockOffset: 0))
        #expect(saved.count(.sessionMessages) == 0)
    }

    @Test func withoutPersistenceNothingAccumulates() {
        let h = Harness()
        for n in 1...50 {
            h.connect(UInt64(n), "churn-\(n)")
            h.publish(UInt64(n), "r/\(n)", "v", retain: true)
            h.closed(UInt64(n))
        }
        #expect(h.broker.takeChanges().isEmpty)
        h.broker.tracksChanges = true
        h.connect(100, "tracked", properties: persistentSession)
        #expect(!h.broker.takeChanges().isEmpty)
    }
}
