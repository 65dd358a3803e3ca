import MQTTCore
import Testing

@testable import SluiceBroker

private let persistent: Properties = {
    var properties = Properties()
    properties.sessionExpiryInterval = 3600
    return properties
}()

extension [(key: [UInt8], value: [UInt8])] {
    fileprivate var longestKey: Int { map(\.key.count).max() ?? 0 }
}

/// Issue 13, case 3: topics and client ids of any legal length are saved under keys the store can hold.
@Suite struct LongKeyTests {
    @Test func shortKeysKeepTheirLayout() {
        #expect(storeKey(.retained, "a/b") == Array("a/b".utf8))
        let fits = String(repeating: "r", count: PersistenceTable.retained.maxKeyLength)
        #expect(storeKey(.retained, fits) == Array(fits.utf8))
        #expect(messageKeyPrefix("abc") == [0, 3] + Array("abc".utf8))
        let longestPlainID = String(repeating: "c", count: PersistenceTable.sessionMessages.maxKeyLength - 10)
        #expect(messageKeyPrefix(longestPlainID).count + 8 == PersistenceTable.sessionMessages.maxKeyLength)
    }

    @Test func longKeysBecomeDigests() {
        let topic = String(repeating: "t", count: PersistenceTable.retained.maxKeyLength + 1)
        let key = storeKey(.retained, topic)
        #expect(key.count == 33 && key.first == 0)
        #expect(key == storeKey(.retained, topic))
        #expect(key != storeKey(.retained, topic + "x"))
        let id = String(repeating: "c", count: PersistenceTable.sessionMessages.maxKeyLength - 9)
        #expect(messageKeyPrefix(id).count == 34 && messageKeyPrefix(id).starts(with: [0xFF, 0xFF]))
    }

    @Test func sha256MatchesTheStandardVector() {
        let hex = sha256(Array("abc".utf8)).map {
            String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16)
        }
        #expect(hex.joined() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// 600-byte and 65,535-byte retained topics, a 600-byte client id with 50 queued messages: all
    /// saved under keys within the store's limit, all back after a restart.
    @Test func longTopicsAndClientIDsSurviveARestart() {
        let h = Harness()
        h.broker.tracksChanges = true
        let clientID = String(repeating: "c", count: 600)
        let longTopic = "long/" + String(repeating: "x", count: 595)
        let longestTopic = "r/" + String(repeating: "y", count: 65_533)
        h.connect(1, clientID, properties: persistent)
        h.subscribe(1, "q/#")
        h.closed(1)
        h.connect(2, "pub")
        var saved = SavedTables()
        h.publish(2, longTopic, "600", qos: .atLeastOnce, packetID: 1, retain: true)
        h.publish(2, longestTopic, "65535", qos: .atLeastOnce, packetID: 2, retain: true)
        h.save(into: &saved)
        for n in 1...50 {
            // Saved as it goes: each PUBACK waits for its save (and Receive Maximum bounds the wait).
            let acks =
                h.publish(2, "q/\(n)", "m\(n)", qos: .atLeastOnce, packetID: UInt16(2 + n)) + h.save(into: &saved)
            #expect(acks.packets(to: 2) == [.pubAck(PubAckPacket(packetIdentifier: UInt16(2 + n)))])
        }
        for table in PersistenceTable.allCases {
            #expect(saved.entries(table).longestKey <= table.maxKeyLength)
        }
        #expect(saved.count(.sessionMessages) == 50)

        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        #expect(restarted.broker.retainedCount == 2)
        #expect(restarted.broker.queuedMessageCount(clientID: clientID) == 50)
        restarted.connect(3, "reader")
        let retained = restarted.subscribe(3, "#").publishes(to: 3)
        #expect(Set(retained.map(\.topic)) == [longTopic, longestTopic])
        let resumed = restarted.connect(4, clientID, clean: false, properties: persistent)
        // The in-flight window (20) first; the rest follow as acknowledgements come.
        #expect(resumed.publishes(to: 4).map(\.text) == (1...20).map { "m\($0)" })

        // Acknowledged and cleared: the digest keys are deleted like plain ones.
        for publish in resumed.publishes(to: 4) {
            restarted.receive(.pubAck(PubAckPacket(packetIdentifier: publish.packetIdentifier!)), from: 4)
        }
        restarted.publish(3, longTopic, "", retain: true)
        restarted.save(into: &saved)
        #expect(saved.count(.sessionMessages) == 30)
        #expect(saved.count(.retained) == 1)
        restarted.closed(4)
        restarted.connect(5, clientID, clean: true)
        restarted.closed(5)
        restarted.save(into: &saved)
        #expect(saved.count(.sessions) == 0 && saved.count(.sessionMessages) == 0)
    }

    /// A record filed under a digest that is not its client id's (damage, or a colliding write) is
    /// reported, never handed to the wrong session.
    @Test func aMessageUnderAnotherClientsDigestIsReported() throws {
        let h = Harness()
        h.broker.tracksChanges = true
        let clientID = String(repeating: "a", count: 600)
        h.offlinePersistentSubscriber("t")
        h.connect(3, clientID, properties: persistent)
        h.subscribe(3, "t")
        h.closed(3)
        h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 1)
        var saved = SavedTables()
        h.save(into: &saved)
        let (key, value) = try #require(saved.entries(.sessionMessages).first { $0.key.starts(with: [0xFF, 0xFF]) })
        var moved = key
        moved[2] ^= 1
        saved.tables[.sessionMessages]![key] = nil
        saved.tables[.sessionMessages]![moved] = value
        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems == ["session message record filed under another client's digest"])
        #expect(restarted.broker.queuedMessageCount(clientID: clientID) == 0)
        #expect(restarted.broker.queuedMessageCount(clientID: "keeper") == 1)
    }
}
