import MQTTCore
import Testing

@testable import SluiceBroker

/// Writes mosquitto.db bytes the way Mosquitto 2.0 does (persist_write_v5.c): big-endian 16/32-bit
/// fields, little-endian 64-bit ones, structs padded.
struct MosquittoFileWriter {
    var bytes: [UInt8] = MosquittoDB.magic + [0, 0, 0, 0]

    init(version: UInt32 = 6) { bytes += be32(version) }

    func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    func be32(_ value: UInt32) -> [UInt8] { (0..<4).reversed().map { UInt8((value >> ($0 * 8)) & 0xFF) } }
    func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8((value >> ($0 * 8)) & 0xFF) } }

    mutating func chunk(_ type: UInt32, _ body: [UInt8]) {
        bytes += be32(type) + be32(UInt32(body.count)) + body
    }

    mutating func config(lastID: UInt64, idSize: UInt8 = 8) {
        chunk(1, le64(lastID) + [1, idSize] + [UInt8](repeating: 0, count: 6))
    }

    mutating func message(
        _ id: UInt64,
        topic: String,
        payload: String,
        qos: UInt8,
        retain: Bool = false,
        source: String = "pub",
        expiry: Int64 = 0,
        properties: [UInt8] = []
    ) {
        let fixed =
            le64(id) + le64(UInt64(bitPattern: expiry)) + be32(UInt32(payload.utf8.count)) + be16(1)
            + be16(UInt16(source.utf8.count)) + be16(0) + be16(UInt16(topic.utf8.count)) + be16(1883)
            + [qos, retain ? 1 : 0]
        chunk(2, fixed + Array(source.utf8) + Array(topic.utf8) + Array(payload.utf8) + properties)
    }

    mutating func client(
        _ id: String,
        interval: UInt32,
        expiryTime: Int64 = 0,
        lastMid: UInt16 = 0,
        username: String = ""
    ) {
        let fixed =
            le64(UInt64(bitPattern: expiryTime)) + be32(interval) + be16(lastMid) + be16(UInt16(id.utf8.count))
            + be16(1883) + be16(UInt16(username.utf8.count)) + [0, 0, 0, 0]
        chunk(6, fixed + Array(id.utf8) + Array(username.utf8))
    }

    mutating func clientMessage(
        _ id: String,
        store: UInt64,
        mid: UInt16,
        qos: UInt8,
        state: UInt8,
        outgoing: Bool = true,
        subscriptionID: UInt8? = nil
    ) {
        let properties: [UInt8] = subscriptionID.map { [2, 0x0B, $0] } ?? []
        chunk(
            3,
            le64(store) + be16(mid) + be16(UInt16(id.utf8.count)) + [qos, state, 0, outgoing ? 1 : 0]
                + Array(id.utf8) + properties
        )
    }

    mutating func retain(_ store: UInt64) { chunk(4, le64(store)) }

    mutating func subscription(_ id: String, _ filter: String, qos: UInt8, options: UInt8 = 0, identifier: UInt32 = 0) {
        chunk(
            5,
            be32(identifier) + be16(UInt16(id.utf8.count)) + be16(UInt16(filter.utf8.count)) + [qos, options, 0, 0]
                + Array(id.utf8) + Array(filter.utf8)
        )
    }

    /// A file like the one Debian's mosquitto writes for the integration test's scenario.
    static func sample() -> [UInt8] {
        var file = MosquittoFileWriter()
        file.config(lastID: 5)
        // User property k=v: block length 7, 0x26, "k", "v".
        file.message(
            1,
            topic: "ret/a",
            payload: "hello",
            qos: 1,
            retain: true,
            properties: [7, 0x26, 0, 1, 0x6B, 0, 1, 0x76]
        )
        file.message(2, topic: "q/1", payload: "m1", qos: 1)
        file.message(3, topic: "q/2", payload: "m2", qos: 1)
        file.message(4, topic: "q/3", payload: "m3", qos: 1)
        file.retain(1)
        file.client("sess1", interval: UInt32.max, lastMid: 7, username: "alice")
        file.clientMessage("sess1", store: 2, mid: 7, qos: 1, state: 3, subscriptionID: 9)  // sent, awaiting PUBACK
        file.clientMessage("sess1", store: 3, mid: 0, qos: 1, state: 11)  // queued
        file.clientMessage("sess1", store: 4, mid: 0, qos: 1, state: 11)
        file.subscription("sess1", "q/#", qos: 1, identifier: 9)
        return file.bytes
    }
}

@Suite struct MosquittoDBDecoderTests {
    @Test func decodesEveryChunkOfAFormat6File() throws {
        let db = try MosquittoDB.decode(MosquittoFileWriter.sample())
        #expect(db.version == 6)
        #expect(db.lastStoreID == 5)
        #expect(db.messages.map(\.topic) == ["ret/a", "q/1", "q/2", "q/3"])
        #expect(db.messages[0].payload == Array("hello".utf8))
        #expect(db.messages[0].retain && db.messages[0].qos == 1 && db.messages[0].sourceID == "pub")
        #expect(db.messages[0].properties == [7, 0x26, 0, 1, 0x6B, 0, 1, 0x76])
        #expect(db.retained == [1])
        #expect(
            db.clients == [
                .init(
                    clientID: "sess1",
                    username: "alice",
                    sessionExpiryTime: 0,
                    sessionExpiryInterval: .max,
                    lastMid: 7
                )
            ]
        )
        #expect(db.clientMessages.map(\.state) == [.waitForPubAck, .queued, .queued])
        #expect(db.clientMessages[0].subscriptionIdentifier == 9)
        #expect(db.clientMessages.allSatisfy { $0.outgoing && $0.clientID == "sess1" })
        #expect(db.subscriptions == [.init(clientID: "sess1", filter: "q/#", qos: 1, options: 0, identifier: 9)])
    }

    @Test func readsFormat5ClientsWithoutUsername() throws {
        var file = MosquittoFileWriter(version: 5)
        file.config(lastID: 0)
        // Format 5 CLIENT: expiry time, interval, last mid, id length, id (16 bytes fixed).
        file.chunk(6, file.le64(0) + file.be32(60) + file.be16(3) + file.be16(2) + Array("c1".utf8))
        let db = try MosquittoDB.decode(file.bytes)
        #expect(
            db.clients == [
                .init(clientID: "c1", username: nil, sessionExpiryTime: 0, sessionExpiryInterval: 60, lastMid: 3)
            ]
        )
    }

    @Test func skipsChunksOfUnknownTypeAsMosquittoDoes() throws {
        var file = MosquittoFileWriter()
        file.config(lastID: 0)
        file.chunk(99, [1, 2, 3])
        file.retain(4)
        let db = try MosquittoDB.decode(file.bytes)
        #expect(db.unknownChunks.map(\.type) == [99])
        #expect(db.retained == [4])
    }

    @Test func everyTruncationFailsWithOffsetAndChunkOrIsAShorterFile() {
        let bytes = MosquittoFileWriter.sample()
        var failures = 0
        for length in 0..<bytes.count {
            do {
                let db = try MosquittoDB.decode(Array(bytes.prefix(length)))
                // A cut on a chunk boundary after CFG is a shorter, complete file.
                #expect(db.messages.count + db.clientMessages.count + db.subscriptions.count < 10)
            } catch {
                failures += 1
                #expect(error.offset <= length)
                #expect(!error.chunk.isEmpty && !error.reason.isEmpty)
            }
        }
        #expect(failures > bytes.count - 12)
        // A cut inside the first message names it.
        #expect(
            throws: MosquittoDBError(
                offset: 47,
                chunk: "MSG_STORE chunk",
                reason: "chunk of 53 bytes runs past the end of the file (20 left)"
            )
        ) {
            try MosquittoDB.decode(Array(bytes.prefix(75)))
        }
    }

    @Test func garbledBytesNeverTrap() {
        let bytes = MosquittoFileWriter.sample()
        for index in bytes.indices {
            for value: UInt8 in [0x00, 0x7F, 0xFF] {
                var garbled = bytes
                garbled[index] = value
                _ = try? MosquittoDB.decode(garbled)
            }
        }
    }

    @Test func refusesWhatIsNotAMosquittoDB() {
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(Array("listener 1883\n".utf8)) }
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode([]) }
        let version4 = MosquittoFileWriter(version: 4)
        #expect(
            throws: MosquittoDBError(
                offset: 19,
                chunk: "header",
                reason: "format version 4 is not supported (5 and 6: Mosquitto 1.6 and 2.0)"
            )
        ) {
            try MosquittoDB.decode(version4.bytes)
        }
        // Header only: Mosquitto writes CFG first, so its absence means the file was cut.
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(MosquittoFileWriter().bytes) }
    }

    @Test func refusesBadFields() {
        var idSize = MosquittoFileWriter()
        idSize.config(lastID: 0, idSize: 4)
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(idSize.bytes) }

        var state = MosquittoFileWriter()
        state.config(lastID: 0)
        state.clientMessage("c", store: 1, mid: 1, qos: 1, state: 12)
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(state.bytes) }

        var utf8 = MosquittoFileWriter()
        utf8.config(lastID: 0)
        utf8.chunk(5, utf8.be32(0) + utf8.be16(1) + utf8.be16(1) + [1, 0, 0, 0] + [0x63, 0xFF])
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(utf8.bytes) }

        var properties = MosquittoFileWriter()
        properties.config(lastID: 0)
        properties.chunk(
            3,
            properties.le64(1) + properties.be16(1) + properties.be16(1) + [1, 11, 0, 1] + [0x63, 5, 0x0B]
        )
        #expect(throws: MosquittoDBError.self) { try MosquittoDB.decode(properties.bytes) }
    }
}

@Suite struct MosquittoImportTests {
    private let wallClock: UInt64 = 1_800_000_000_000

    @Test func importedSessionAndRetainedSurviveASaveAndAreDelivered() throws {
        let db = try MosquittoDB.decode(MosquittoFileWriter.sample())
        let h = Harness()
        h.broker.tracksChanges = true
        let report = h.broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: h.now)
        #expect(report.retained == 1 && report.sessions == 1 && report.subscriptions == 1)
        #expect(report.inflightMessages == 1 && report.queuedMessages == 2 && report.skipped.isEmpty)

        var saved = SavedTables()
        saved.apply(h.broker.takeChanges(wallClockOffset: Int64(wallClock) - Int64(h.now)))
        let (restarted, problems) = saved.restored(wallClockOffset: Int64(wallClock) + 5_000)
        #expect(problems.isEmpty)
        #expect(restarted.broker.retainedCount == 1)
        #expect(restarted.broker.sessionCount == 1)

        let resumed = restarted.connect(1, "sess1", version: .v3_1_1, clean: false)
        guard case .connAck(let ack)? = resumed.packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.sessionPresent)
        let delivered = resumed.publishes(to: 1)
        #expect(delivered.map(\.topic) == ["q/1", "q/2", "q/3"])
        #expect(delivered.first?.dup == true && delivered.first?.packetIdentifier == 7)
        // A message published now reaches the imported subscription.
        restarted.connect(2, "pub")
        #expect(
            restarted.publish(2, "q/new", "x", qos: .atLeastOnce, packetID: 1).publishes(to: 1).map(\.topic) == [
                "q/new"
            ]
        )
        // The retained message keeps its properties.
        restarted.connect(3, "reader")
        let retained = restarted.subscribe(3, "ret/#").publishes(to: 3)
        #expect(retained.map(\.topic) == ["ret/a"])
        #expect(retained.first?.retain == true)
        #expect(retained.first?.properties.userProperties.map(\.name) == ["k"])
    }

    @Test func listsWhatItCannotImport() throws {
        var file = MosquittoFileWriter()
        file.config(lastID: 9)
        file.message(1, topic: "gone", payload: "x", qos: 1, expiry: 1_000)  // expired long ago
        file.message(2, topic: "t", payload: "y", qos: 2)
        file.retain(1)
        file.retain(7)  // no such message
        file.client("ends", interval: 0)
        file.client("old", interval: 60, expiryTime: 1_000)
        file.client("keeper", interval: 3600, expiryTime: Int64(wallClock / 1000) + 1800)
        file.clientMessage("keeper", store: 2, mid: 4, qos: 2, state: 7, outgoing: false)
        file.subscription("stranger", "a/b", qos: 1)
        let db = try MosquittoDB.decode(file.bytes)
        let h = Harness()
        h.now = 10_000_000  // broker time enough after its start to hold "offline since 1800 s ago"
        h.broker.tracksChanges = true
        let report = h.broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: h.now)
        #expect(report.sessions == 1 && report.retained == 0)
        #expect(report.skipped.count == 6)
        #expect(report.skipped.contains { $0.contains("gone: it expired") })
        #expect(report.skipped.contains { $0.contains("store id 7") })
        #expect(report.skipped.contains { $0.hasPrefix("session ends:") })
        #expect(report.skipped.contains { $0 == "session old: it expired" })
        #expect(report.skipped.contains { $0.contains("PUBREL") })
        #expect(report.skipped.contains { $0.contains("stranger") })
        // Offline for half its interval: it expires 1800 s from now, not 3600.
        let session = try #require(h.broker.sessions["keeper"])
        #expect(session.expiresAt() == h.now + 1_800_000)
    }

    @Test func garbledFilesThatStillDecodeImportWithoutTrapping() {
        let bytes = MosquittoFileWriter.sample()
        var decoded = 0
        for index in bytes.indices {
            for value: UInt8 in [0x00, 0x80, 0xFF] {
                var garbled = bytes
                garbled[index] = value
                guard let db = try? MosquittoDB.decode(garbled) else { continue }
                decoded += 1
                let h = Harness()
                h.broker.tracksChanges = true
                _ = h.broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: h.now)
                var saved = SavedTables()
                saved.apply(h.broker.takeChanges(wallClockOffset: Int64(wallClock) - Int64(h.now)))
            }
        }
        #expect(decoded > 0)
    }

    @Test func keepsWhatTheBrokerAlreadyHas() throws {
        let db = try MosquittoDB.decode(MosquittoFileWriter.sample())
        let h = Harness()
        h.broker.tracksChanges = true
        _ = h.broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: h.now)
        _ = h.broker.takeChanges()
        let again = h.broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: h.now)
        #expect(again.sessions == 0 && again.retained == 0 && again.skipped.count == 2)
        #expect(h.broker.takeChanges().isEmpty)
    }
}
