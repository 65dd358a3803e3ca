import MQTTCore
import Testing

@testable import SluiceBroker

@Suite struct PersistenceTests {
    @Test func sessionsAndRetainedSurviveARestart() {
        let h = Harness()
        h.broker.tracksChanges = true
        var properties = Properties()
        properties.sessionExpiryInterval = 3600
        h.connect(1, "keeper", properties: properties)
        h.subscribe(1, "t/#", identifier: 5)
        let inflight = h.publish(1, "t/a", "in-flight", qos: .atLeastOnce, packetID: 1).publishes(to: 1)
        h.closed(1)
        h.connect(2, "pub")
        h.publish(2, "t/b", "queued", qos: .exactlyOnce, packetID: 9)  // PUBREL not yet received
        h.publish(2, "r", "kept", retain: true)
        h.closed(2)  // "pub" had a clean session: it must not be saved

        let changes = h.broker.takeChanges(wallClockOffset: 1_000_000)
        let sessionRecords = changes.sessions.compactMap(\.record)
        #expect(sessionRecords.count == 1)
        #expect(changes.sessions.contains { $0.clientID == "pub" && $0.record == nil })
        #expect(changes.retained.count == 1)
        // Nothing changed since: nothing to write.
        #expect(h.broker.takeChanges(wallClockOffset: 1_000_000).sessions.isEmpty)

        // A new broker whose clock restarted at zero, 10 s of wall-clock time later.
        let restarted = Harness()
        restarted.now = 0
        let problems = restarted.broker.restore(
            sessions: sessionRecords,
            retained: changes.retained.compactMap(\.record),
            wallClockOffset: 1_000_000 + Int64(h.now) + 10_000,
            now: 0
        )
        #expect(problems.isEmpty)
        #expect(restarted.broker.retainedCount == 1)
        let resumed = restarted.connect(3, "keeper", clean: false, properties: properties)
        guard case .connAck(let ack)? = resumed.packets(to: 3).first else { return #expect(Bool(false)) }
        #expect(ack.sessionPresent)
        let delivered = resumed.publishes(to: 3)
        #expect(delivered.map(\.text) == ["in-flight", "queued"])
        #expect(delivered.first?.dup == true)
        #expect(delivered.first?.packetIdentifier == inflight.first?.packetIdentifier)
        #expect(delivered.first?.properties.subscriptionIdentifiers == [5])
    }

    @Test func damagedRecordsAreReportedNotTrusted() {
        let h = Harness()
        let problems = h.broker.restore(sessions: [[1, 0, 3]], retained: [[9], []], wallClockOffset: 0, now: 0)
        #expect(problems.count == 3)
        #expect(h.broker.sessionCount == 0 && h.broker.retainedCount == 0)
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
        h.connect(100, "tracked")
        #expect(!h.broker.takeChanges().isEmpty)
    }
}
