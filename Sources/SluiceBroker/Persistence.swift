import DequeModule
import MQTTCore

// Note on the persisted broker state (record format version 2):
// - What MQTT says a broker keeps across a restart: persistent sessions (subscriptions, messages
//   in flight and queued, QoS 2 packet identifiers awaiting PUBREL) and retained messages.
//   Sessions that end at disconnect (expiry 0) are never written. A will is not kept.
// - A session is one small record plus one record per message it holds, so a save writes what
//   arrived and deletes what left: a backlog of a million messages is never rewritten.
// - Broker time is monotonic and restarts at zero, so deadlines (message expiry, when a session
//   went offline) are stored as wall-clock milliseconds, converted with `wallClockOffset`
//   (wall-clock minus broker time, both in milliseconds) when saving and restoring.
// - Every record starts with a version byte; a record this build cannot read is reported and
//   skipped, never trusted. Version 1 session records (whole sessions) are still read, and
//   rewritten in version 2 by the next save. Layout, big-endian:
//   session  = [1] version, str clientID, [1] protocol level, [4] expiry, [8] offline-since (wall,
//              0 = was connected), [2] last packet id, [8] next seq, [4] n × subscription,
//              [4] n × [2] QoS 2 id, [4] n × ([8] seq, [2] packet id, [1] state)  (in flight, in order),
//              then from session record version 3 on: [1] has username, str username (the ACL
//              checks messages for an offline session as this user). Version 2 records read as
//              anonymous sessions.
//   session message: key = [2] clientID length, clientID, [8] seq; value = [1] version, delivery
//              (messages not in flight are the queue, in seq order)
// - Keys of any legal length (topics and client ids up to 65,535 bytes; LMDB keys end at 511
//   bytes, less the table prefix). A key that fits keeps the layout above, so stores written
//   before load unchanged; a longer one is replaced by its SHA-256 digest, and the record holds
//   the full value (sessions and retained records always do):
//   sessions, retained: key = [1] 0x00, [32] SHA-256 of the client id / topic (a topic or client
//              id never starts with U+0000, [MQTT-1.5.4-2], so it cannot be a plain key);
//   session message: key = [2] 0xFFFF, [32] SHA-256 of the client id, [8] seq (a plain key's
//              length is never 0xFFFF); value = [1] version 3, str clientID, delivery. On load the
//              digest is checked against the client id in the record.
//   retained = [1] version, message; from retained record version 3 on: [1] has publisher, then
//              str client id, [1] has username, str username (for check_retain_source). Versions 1
//              and 2 read as "publisher unknown", which is not checked.
//   delivery = [1] qos, [1] retain, [4] n × [4] subscription id, message
//   message  = str topic, [4] payload length + payload, [1] qos, [1] retain, [4] properties length +
//              MQTT 5 PUBLISH properties, [8] expires-at (wall, 0 = never), str origin ("" = none)
//   str      = [2] length + UTF-8

public enum PersistenceFormat {
    public static let version: UInt8 = 2
    /// Session message records under a digest key: the client id precedes the delivery.
    public static let longKeyMessageVersion: UInt8 = 3
    /// Session records: version 3 adds the username (messages and retained records stay at 2).
    public static let sessionVersion: UInt8 = 3
    /// Retained records: version 3 adds the publisher (client id and username).
    public static let retainedVersion: UInt8 = 3
}

/// A persisted record could not be read.
public struct PersistenceError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The tables broker state is saved in.
public enum PersistenceTable: String, Sendable, CaseIterable {
    case sessions
    case sessionMessages = "session-messages"
    case retained
}

/// One write of a save. A save's writes are applied in order and committed together.
public enum StateWrite: Sendable, Equatable {
    case put(PersistenceTable, key: [UInt8], value: [UInt8])
    case delete(PersistenceTable, key: [UInt8])
    /// Deletes every key of the table that starts with `prefix`.
    case deletePrefix(PersistenceTable, prefix: [UInt8])
}

/// Broker state changed since the last save, as values: taking it is cheap (copy-on-write
/// copies, and per persistent session only the messages that came and went), so the broker's loop
/// never pays for encoding; `encoded(wallClockOffset:)` can run on any thread.
public struct PendingChanges: Sendable {
    enum SessionChange: Sendable {
        /// Saves the session record; `all` replaces every saved message, else `added`/`removed`.
        case save(SessionSnapshot, all: [Delivery]?, added: [Delivery], removed: [UInt64])
        case delete(clientID: String)
    }
    var sessions: [SessionChange] = []
    /// Per topic the retained message to save, or nil to delete its record.
    var retained: [(topic: String, message: Message?)] = []
    /// Acknowledgements to release with `Broker.persisted(token:accepted:now:)` once these changes
    /// have committed.
    public var acknowledgements: [UInt64] = []

    public var isEmpty: Bool { sessions.isEmpty && retained.isEmpty }

    /// The writes that bring the store up to date, in order.
    public func encoded(wallClockOffset: Int64) -> [StateWrite] {
        var writes: [StateWrite] = []
        for change in sessions {
            switch change {
            case .delete(let clientID):
                writes.append(.delete(.sessions, key: storeKey(.sessions, clientID)))
                writes.append(.deletePrefix(.sessionMessages, prefix: messageKeyPrefix(clientID)))
            case .save(let session, let all, let added, let removed):
                var buffer = ByteBufferAllocator().buffer(capacity: 128)
                buffer.writeSessionRecord(session, offset: wallClockOffset)
                writes.append(
                    .put(.sessions, key: storeKey(.sessions, session.clientID), value: Array(buffer.readableBytesView))
                )
                let prefix = messageKeyPrefix(session.clientID)
                let digested = prefix.starts(with: longMessageKeyMarker)
                if all != nil { writes.append(.deletePrefix(.sessionMessages, prefix: prefix)) }
                for seq in removed { writes.append(.delete(.sessionMessages, key: prefix + seq.bigEndianBytes)) }
                for delivery in all ?? added {
                    buffer.clear()
                    if digested {
                        // The key holds only a digest: the record names its client.
                        buffer.writeInteger(PersistenceFormat.longKeyMessageVersion)
                        buffer.writeString16(session.clientID)
                    } else {
                        buffer.writeInteger(PersistenceFormat.version)
                    }
                    buffer.writeDelivery(delivery, offset: wallClockOffset)
                    writes.append(
                        .put(
                            .sessionMessages,
                            key: prefix + delivery.seq.bigEndianBytes,
                            value: Array(buffer.readableBytesView)
                        )
                    )
                }
            }
        }
        for (topic, message) in retained {
            guard let message else {
                writes.append(.delete(.retained, key: storeKey(.retained, topic)))
                continue
            }
            var buffer = ByteBufferAllocator().buffer(capacity: 64 + message.payload.readableBytes)
            buffer.writeInteger(PersistenceFormat.retainedVersion)
            buffer.writeMessage(message, offset: wallClockOffset)
            buffer.writePublisher(message.publisher)
            writes.append(.put(.retained, key: storeKey(.retained, topic), value: Array(buffer.readableBytesView)))
        }
        return writes
    }
}

/// A session's own record: everything but its messages, which have records of their own.
struct SessionSnapshot: Sendable {
    var clientID: String
    var username: String?
    var protocolVersion: ProtocolVersion
    var expiryInterval: UInt32
    var disconnectedAt: BrokerTime?
    var lastPacketID: UInt16
    var nextSeq: UInt64
    var subscriptions: SubscriptionMap
    var inboundQoS2: Set<UInt16>
    /// In send order.
    var inflight: [(seq: UInt64, packetID: UInt16, state: Outgoing.State)]

    init(_ session: Session, clientID: String) {
        self.clientID = clientID
        username = session.username
        protocolVersion = session.protocolVersion
        expiryInterval = session.expiryInterval
        disconnectedAt = session.disconnectedAt
        lastPacketID = session.outbound.lastPacketID
        nextSeq = session.outbound.nextSeq
        subscriptions = session.subscriptions
        inboundQoS2 = session.inboundQoS2
        inflight = session.outbound.inflight.map { ($0.delivery.seq, $0.packetID, $0.state) }
    }
}

/// Session message keys start with the client identifier's length and bytes, so one client's
/// messages are one key range, ordered by seq; a client id too long for that starts them with
/// `longMessageKeyMarker` and its digest instead.
func messageKeyPrefix(_ clientID: String) -> [UInt8] {
    let id = Array(clientID.utf8)
    guard 2 + id.count + 8 <= PersistenceTable.sessionMessages.maxKeyLength else {
        return longMessageKeyMarker + sha256(id)
    }
    return UInt16(truncatingIfNeeded: id.count).bigEndianBytes + id
}

/// Starts a session message key whose client id is a digest.
let longMessageKeyMarker: [UInt8] = [0xFF, 0xFF]

/// The key of a session or retained record: the client id or topic itself when it fits, else
/// `[0x00]` + its SHA-256.
func storeKey(_ table: PersistenceTable, _ name: String) -> [UInt8] {
    let bytes = Array(name.utf8)
    return bytes.count <= table.maxKeyLength ? bytes : [0] + sha256(bytes)
}

/// The same digests libcrypto's EVP_sha256 wrote in earlier versions (SHA256.swift says why not libcrypto).
func sha256(_ bytes: [UInt8]) -> [UInt8] { SHA256.digest(bytes) }

extension PersistenceTable {
    /// The longest key the store holds for this table: LMDB's 511 bytes less the store's table
    /// prefix ([1] name length + name), as `Store.maxKeyLength(table:)` computes it.
    public var maxKeyLength: Int { 511 - 1 - rawValue.utf8.count }
}

extension FixedWidthInteger {
    fileprivate var bigEndianBytes: [UInt8] {
        withUnsafeBytes(of: self.bigEndian) { Array($0) }
    }
}

extension Broker {
    /// What changed since the last call, with the acknowledgements that wait for it. Sessions
    /// without an expiry interval are not kept (their records, if any, are deleted).
    public mutating func takeChanges() -> PendingChanges {
        saveJournal.take(from: &sessions, retained: &retained)
    }

    /// `takeChanges()` encoded at once (tests and tools).
    public mutating func takeChanges(wallClockOffset: Int64) -> [StateWrite] {
        takeChanges().encoded(wallClockOffset: wallClockOffset)
    }

    /// Loads saved state at start-up (before any client connects). Sessions come back offline;
    /// their expiry counts from when they went offline, or from now if the broker stopped while
    /// they were connected. Returns a description of each record that could not be read.
    public mutating func restore(
        sessions sessionRecords: [[UInt8]],
        sessionMessages: [(key: [UInt8], value: [UInt8])] = [],
        retained: [[UInt8]],
        wallClockOffset: Int64,
        now: BrokerTime
    ) -> [String] {
        var problems: [String] = []
        for bytes in retained {
            var buffer = ByteBuffer(bytes: bytes)
            do {
                guard let version = buffer.readInteger(as: UInt8.self),
                    (1...PersistenceFormat.retainedVersion).contains(version)
                else {
                    throw PersistenceError(description: "retained record of an unknown version")
                }
                var message = try buffer.readMessage(offset: wallClockOffset)
                if version >= 3 { message.publisher = try buffer.readPublisher() }
                if let expiresAt = message.expiresAt, expiresAt <= now { continue }
                self.retained.restore(message)
            } catch {
                problems.append("\(error)")
            }
        }
        // Messages by client identifier, in seq order (the store returns keys in order).
        var messages: [String: [(seq: UInt64, delivery: Delivery)]] = [:]
        for (key, value) in sessionMessages {
            do {
                var keyBuffer = ByteBuffer(bytes: key)
                var buffer = ByteBuffer(bytes: value)
                let clientID: String
                if key.starts(with: longMessageKeyMarker) {
                    keyBuffer.moveReaderIndex(forwardBy: longMessageKeyMarker.count)
                    let digest = keyBuffer.readBytes(length: 32)
                    guard try buffer.read(UInt8.self) == PersistenceFormat.longKeyMessageVersion else {
                        throw PersistenceError(description: "session message record of an unknown version")
                    }
                    clientID = try buffer.readString16()
                    guard digest == sha256(Array(clientID.utf8)) else {
                        throw PersistenceError(
                            description: "session message record filed under another client's digest"
                        )
                    }
                } else {
                    clientID = try keyBuffer.readString16()
                    guard try buffer.read(UInt8.self) == PersistenceFormat.version else {
                        throw PersistenceError(description: "session message record of an unknown version")
                    }
                }
                let seq = try keyBuffer.read(UInt64.self)
                guard keyBuffer.readableBytes == 0 else {
                    throw PersistenceError(description: "session message key of \(key.count) bytes has trailing bytes")
                }
                var delivery = try buffer.readDelivery(offset: wallClockOffset)
                delivery.seq = seq
                messages[clientID, default: []].append((seq, delivery))
            } catch {
                problems.append("\(error)")
            }
        }
        var migrated: [String] = []
        var trimmed: [String: SubscriptionMap] = [:]
        for bytes in sessionRecords {
            var buffer = ByteBuffer(bytes: bytes)
            do {
                let (clientID, record) =
                    bytes.first == 1
                    ? try buffer.readSessionVersion1(offset: wallClockOffset)
                    : try buffer.readSession(offset: wallClockOffset, messages: messages)
                var session = record
                if bytes.first == 1 { migrated.append(clientID) }
                messages[clientID] = nil
                session.presence = .offline(since: min(session.disconnectedAt ?? now, now))
                // Saved before `max_topic_levels` was lowered (or by a build without it): skipped
                // rather than matched, and dropped from the record by the next save.
                for filter in session.subscriptions.keys
                where SubscriptionTree.exceedsLevels(filter: filter, limit: settings.maxTopicLevels) {
                    session.subscriptions[filter] = nil
                    trimmed[clientID] = session.subscriptions
                    problems.append(
                        "session \(clientID): subscription of \(filter.utf8.count) bytes deeper than"
                            + " \(settings.maxTopicLevels) levels skipped"
                    )
                }
                for (filter, subscription) in session.subscriptions {
                    self.subscriptions.insert(filter: filter, clientID: clientID, subscription: subscription)
                }
                self.sessions[clientID] = session
                timers.setExpiry(clientID, at: session.expiresAt())
                saveJournal.noteOnDisk(clientID)
            } catch {
                problems.append("\(error)")
            }
        }
        _ = self.sessions.takeChanged()  // what was just loaded is already on disk
        _ = self.retained.takeChanges()
        for clientID in migrated { self.sessions.noteRewrite(clientID) }
        for (clientID, subscriptions) in trimmed { self.sessions[clientID]?.subscriptions = subscriptions }
        for clientID in messages.keys {
            // Messages whose session record is gone: deleted by the next save.
            problems.append("\(messages[clientID]!.count) saved message(s) for \(clientID) without a session")
            saveJournal.noteOnDisk(clientID)
            self.sessions.noteRewrite(clientID)
        }
        return problems
    }
}

// MARK: Encoding

extension ByteBuffer {
    fileprivate mutating func writeString16(_ string: String) {
        let bytes = string.utf8
        writeInteger(UInt16(truncatingIfNeeded: bytes.count))
        writeBytes(bytes.prefix(Int(UInt16.max)))
    }

    fileprivate mutating func readString16() throws -> String {
        guard let length = readInteger(as: UInt16.self), let string = readString(length: Int(length)) else {
            throw PersistenceError(description: "truncated string")
        }
        return string
    }

    fileprivate mutating func read<T: FixedWidthInteger>(_ type: T.Type = T.self) throws -> T {
        guard let value = readInteger(as: T.self) else { throw PersistenceError(description: "truncated record") }
        return value
    }

    fileprivate mutating func readCount() throws -> Int {
        let count = Int(try read(UInt32.self))
        // Each element takes at least one byte: a larger count is damage, not a reason to allocate.
        guard count <= readableBytes else {
            throw PersistenceError(description: "element count \(count) exceeds the record")
        }
        return count
    }

    mutating func writePublisher(_ publisher: Publisher?) {
        guard let publisher else {
            writeInteger(UInt8(0))
            return
        }
        writeInteger(UInt8(1))
        writeString16(publisher.clientID)
        writeInteger(UInt8(publisher.username == nil ? 0 : 1))
        writeString16(publisher.username ?? "")
    }

    mutating func readPublisher() throws -> Publisher? {
        guard try read(UInt8.self) == 1 else { return nil }
        let clientID = try readString16()
        let hasUsername = try read(UInt8.self) == 1
        let username = try readString16()
        return Publisher(clientID: clientID, username: hasUsername ? username : nil)
    }

    mutating func writeMessage(_ message: Message, offset: Int64) {
        writeString16(message.topic)
        writeInteger(UInt32(message.payload.readableBytes))
        writeImmutableBuffer(message.payload)
        writeInteger(message.qos.rawValue)
        writeInteger(UInt8(message.retain ? 1 : 0))
        let properties = message.properties.storageBytes()
        writeInteger(UInt32(properties.count))
        writeBytes(properties)
        writeInteger(message.expiresAt.map { UInt64(max(1, Int64($0) + offset)) } ?? 0)
        writeString16(message.origin ?? "")
    }

    mutating func readMessage(offset: Int64) throws -> Message {
        let topic = try readString16()
        let payloadLength = Int(try read(UInt32.self))
        guard let payload = readSlice(length: payloadLength) else {
            throw PersistenceError(description: "truncated payload")
        }
        guard let qos = QoS(rawValue: try read(UInt8.self)) else { throw PersistenceError(description: "bad QoS") }
        let retain = try read(UInt8.self) == 1
        let propertiesLength = Int(try read(UInt32.self))
        guard let propertyBytes = readBytes(length: propertiesLength) else {
            throw PersistenceError(description: "truncated properties")
        }
        let properties = try Properties(storageBytes: propertyBytes)
        let expiresAtWall = try read(UInt64.self)
        let origin = try readString16()
        return Message(
            topic: topic,
            payload: payload,
            qos: qos,
            retain: retain,
            properties: properties,
            expiresAt: expiresAtWall == 0 ? nil : BrokerTime(max(1, Int64(expiresAtWall) - offset)),
            origin: origin.isEmpty ? nil : origin
        )
    }

    fileprivate mutating func writeDelivery(_ delivery: Delivery, offset: Int64) {
        writeInteger(delivery.qos.rawValue)
        writeInteger(UInt8(delivery.retain ? 1 : 0))
        writeInteger(UInt32(delivery.subscriptionIdentifiers.count))
        for identifier in delivery.subscriptionIdentifiers { writeInteger(identifier) }
        writeMessage(delivery.message, offset: offset)
    }

    fileprivate mutating func readDelivery(offset: Int64) throws -> Delivery {
        guard let qos = QoS(rawValue: try read(UInt8.self)) else { throw PersistenceError(description: "bad QoS") }
        let retain = try read(UInt8.self) == 1
        var identifiers: [UInt32] = []
        for _ in 0..<(try readCount()) { identifiers.append(try read(UInt32.self)) }
        return Delivery(
            message: try readMessage(offset: offset),
            qos: qos,
            retain: retain,
            subscriptionIdentifiers: identifiers
        )
    }

    fileprivate mutating func writeSubscriptions(_ subscriptions: SubscriptionMap) {
        writeInteger(UInt32(subscriptions.count))
        for (filter, subscription) in subscriptions.sorted(by: { $0.key < $1.key }) {
            let options = subscription.options
            writeString16(filter)
            writeInteger(
                options.qos.rawValue | (options.noLocal ? 0x04 : 0) | (options.retainAsPublished ? 0x08 : 0)
                    | options.retainHandling.rawValue << 4
            )
            writeInteger(subscription.identifier ?? 0)
        }
    }

    fileprivate mutating func readSubscriptions(of clientID: String) throws -> SubscriptionMap {
        var subscriptions: SubscriptionMap = [:]
        for _ in 0..<(try readCount()) {
            let filter = try readString16()
            let bits = try read(UInt8.self)
            let identifier = try read(UInt32.self)
            guard let qos = QoS(rawValue: bits & 0x03), let handling = RetainHandling(rawValue: bits >> 4) else {
                throw PersistenceError(description: "session \(clientID): bad subscription options")
            }
            let options = SubscriptionOptions(
                qos: qos,
                noLocal: bits & 0x04 != 0,
                retainAsPublished: bits & 0x08 != 0,
                retainHandling: handling
            )
            subscriptions[filter] = Subscription(options: options, identifier: identifier == 0 ? nil : identifier)
        }
        return subscriptions
    }

    fileprivate mutating func writeState(_ state: Outgoing.State) {
        let byte: UInt8 =
            switch state {
            case .awaitingPubAck: 1
            case .awaitingPubRec: 2
            case .awaitingPubComp: 3
            }
        writeInteger(byte)
    }

    fileprivate mutating func readState(of clientID: String) throws -> Outgoing.State {
        switch try read(UInt8.self) {
        case 1: return .awaitingPubAck
        case 2: return .awaitingPubRec
        case 3: return .awaitingPubComp
        default: throw PersistenceError(description: "session \(clientID): bad in-flight state")
        }
    }

    fileprivate mutating func writeSessionRecord(_ session: SessionSnapshot, offset: Int64) {
        writeInteger(PersistenceFormat.sessionVersion)
        writeString16(session.clientID)
        writeInteger(session.protocolVersion.rawValue)
        writeInteger(session.expiryInterval)
        writeInteger(session.disconnectedAt.map { UInt64(max(1, Int64($0) + offset)) } ?? 0)
        writeInteger(session.lastPacketID)
        writeInteger(session.nextSeq)
        writeSubscriptions(session.subscriptions)
        writeInteger(UInt32(session.inboundQoS2.count))
        for packetID in session.inboundQoS2.sorted() { writeInteger(packetID) }
        writeInteger(UInt32(session.inflight.count))
        for outgoing in session.inflight {
            writeInteger(outgoing.seq)
            writeInteger(outgoing.packetID)
            writeState(outgoing.state)
        }
        writeInteger(UInt8(session.username == nil ? 0 : 1))
        writeString16(session.username ?? "")
    }

    /// The fields both session record versions start with.
    fileprivate mutating func readSessionHeader(
        versions: ClosedRange<UInt8>,
        offset: Int64
    ) throws -> (clientID: String, session: Session) {
        guard versions.contains(try read(UInt8.self)) else {
            throw PersistenceError(description: "session record of an unknown version")
        }
        let clientID = try readString16()
        guard let protocolVersion = ProtocolVersion(rawValue: try read(UInt8.self)) else {
            throw PersistenceError(description: "session \(clientID): bad protocol level")
        }
        var session = Session(
            protocolVersion: protocolVersion,
            expiryInterval: try read(UInt32.self)
        )
        let offlineSince = try read(UInt64.self)
        if offlineSince != 0 { session.presence = .offline(since: BrokerTime(max(0, Int64(offlineSince) - offset))) }
        session.outbound.lastPacketID = try read(UInt16.self)
        return (clientID, session)
    }

    /// A version 2 session record, with its messages from `messages` (by seq, in order): those
    /// the record lists as in flight, the rest queued.
    fileprivate mutating func readSession(
        offset: Int64,
        messages: [String: [(seq: UInt64, delivery: Delivery)]]
    ) throws -> (clientID: String, session: Session) {
        let version = getInteger(at: readerIndex, as: UInt8.self)
        let (clientID, header) = try readSessionHeader(versions: 2...PersistenceFormat.sessionVersion, offset: offset)
        var session = header
        session.outbound.nextSeq = try read(UInt64.self)
        session.subscriptions = try readSubscriptions(of: clientID)
        for _ in 0..<(try readCount()) { session.inboundQoS2.insert(try read(UInt16.self)) }
        var held = Dictionary(messages[clientID] ?? [], uniquingKeysWith: { first, _ in first })
        for _ in 0..<(try readCount()) {
            let seq = try read(UInt64.self)
            let packetID = try read(UInt16.self)
            let state = try readState(of: clientID)
            // A message saved as in flight but whose record is missing was never acknowledged as kept.
            guard let delivery = held.removeValue(forKey: seq) else { continue }
            session.outbound.restoreInflight(Outgoing(packetID: packetID, delivery: delivery, state: state))
        }
        if version ?? 0 >= 3 {
            let hasUsername = try read(UInt8.self)
            let username = try readString16()
            guard hasUsername <= 1 else {
                throw PersistenceError(description: "session \(clientID): bad username flag")
            }
            session.username = hasUsername == 1 ? username : nil
        }
        guard readableBytes == 0 else { throw PersistenceError(description: "session \(clientID): trailing bytes") }
        for (seq, delivery) in messages[clientID] ?? [] where held[seq] != nil {
            session.outbound.restoreQueued(delivery)
            session.outbound.nextSeq = max(session.outbound.nextSeq, seq + 1)
        }
        for outgoing in session.outbound.inflight {
            session.outbound.nextSeq = max(session.outbound.nextSeq, outgoing.delivery.seq + 1)
        }
        return (clientID, session)
    }

    /// A version 1 record: the whole session, messages included. Its messages are numbered here.
    fileprivate mutating func readSessionVersion1(offset: Int64) throws -> (clientID: String, session: Session) {
        let (clientID, header) = try readSessionHeader(versions: 1...1, offset: offset)
        var session = header
        session.subscriptions = try readSubscriptions(of: clientID)
        for _ in 0..<(try readCount()) { session.inboundQoS2.insert(try read(UInt16.self)) }
        for _ in 0..<(try readCount()) {
            let packetID = try read(UInt16.self)
            let state = try readState(of: clientID)
            let delivery = session.outbound.numbered(try readDelivery(offset: offset))
            session.outbound.restoreInflight(Outgoing(packetID: packetID, delivery: delivery, state: state))
        }
        for _ in 0..<(try readCount()) {
            let delivery = session.outbound.numbered(try readDelivery(offset: offset))
            session.outbound.restoreQueued(delivery)
        }
        guard readableBytes == 0 else { throw PersistenceError(description: "session \(clientID): trailing bytes") }
        return (clientID, session)
    }
}
