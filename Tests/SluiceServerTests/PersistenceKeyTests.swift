import Foundation
import MQTTCore
import SluiceBroker
import SluiceStore
import Testing

/// Broker persistence keys against the real LMDB store: the limit the broker plans with is the
/// store's, and long topics and client ids round-trip (issue 13, case 3).
@Suite struct PersistenceKeyTests {
    @Test func theBrokersKeyLimitIsTheStores() {
        for table in PersistenceTable.allCases {
            #expect(table.maxKeyLength == Store.maxKeyLength(table: table.rawValue))
        }
    }

    @Test func longKeysRoundTripThroughLMDB() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "sluice-keys-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("sluice.db").path)
        defer { store.close() }

        var broker = Broker()
        broker.tracksChanges = true
        var persistent = Properties()
        persistent.sessionExpiryInterval = 3600
        let clientID = String(repeating: "c", count: 600)
        let topics = ["long/" + String(repeating: "x", count: 595), "r/" + String(repeating: "y", count: 65_533)]
        _ = broker.connect(
            ConnectionID(1),
            ConnectPacket(
                protocolVersion: .v5,
                clientIdentifier: clientID,
                cleanStart: true,
                keepAlive: 0,
                properties: persistent
            ),
            now: 1
        )
        let subscribe = SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [TopicSubscription(filter: "q/#", options: SubscriptionOptions(qos: .atLeastOnce))]
        )
        _ = broker.receive(.subscribe(subscribe), from: ConnectionID(1), now: 1)
        _ = broker.closed(ConnectionID(1), now: 1)
        for topic in topics {
            _ = broker.publish(
                Message(topic: topic, payload: ByteBuffer(string: "kept"), qos: .atLeastOnce, retain: true),
                now: 2
            )
        }
        for n in 1...50 {
            _ = broker.publish(
                Message(topic: "q/\(n)", payload: ByteBuffer(string: "m\(n)"), qos: .atLeastOnce),
                now: 2
            )
        }

        let writes = broker.takeChanges(wallClockOffset: 0).map { write -> TableWrite in
            switch write {
            case .put(let table, let key, let value): .put(table: table.rawValue, key: key, value: value)
            case .delete(let table, let key): .delete(table: table.rawValue, key: key)
            case .deletePrefix(let table, let prefix): .deletePrefix(table: table.rawValue, prefix: prefix)
            }
        }
        try await store.apply(writes)

        var restored = Broker()
        let problems = restored.restore(
            sessions: try store.scan(table: PersistenceTable.sessions.rawValue).map(\.value),
            sessionMessages: try store.scan(table: PersistenceTable.sessionMessages.rawValue),
            retained: try store.scan(table: PersistenceTable.retained.rawValue).map(\.value),
            wallClockOffset: 0,
            now: 0
        )
        #expect(problems.isEmpty)
        #expect(restored.retainedCount == 2)
        #expect(restored.sessionCount == 1)
        #expect(restored.queuedMessageCount(clientID: clientID) == 50)
    }
}
