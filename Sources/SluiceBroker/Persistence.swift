import DequeModule
import MQTTCore

// Note on the persisted broker state (record format version 1):
// - What MQTT says a broker keeps across a restart: persistent sessions (subscriptions, messages
//   in flight and queued, QoS 2 packet identifiers awaiting PUBREL) and retained messages.
//   Sessions that end at disconnect (expiry 0) are never written. A will is not kept.
// - Broker time is monotonic and restarts at zero, so deadlines (message expiry, when a session
//   went offline) are stored as wall-clock milliseconds, converted with `wallClockOffset`
//   (wall-clock minus broker time, both in milliseconds) when saving and restoring.
// - Every record starts with a version byte; a record this build cannot read is reported and
//   skipped, never trusted. Layout, big-endian:
//   session  = [1] version, str clientID, [1] protocol level, [4] expiry, [8] offline-since (wall,
//              0 = was connected), [2] last packet id, [4] n × subscription, [4] n × [2] QoS 2 id,
//              [4] n × ([2] packet id, [1] state, delivery), [4] n × delivery
//   retained = [1] version, message
//   delivery = [1] qos, [1] retain, [4] n × [4] subscription id, message
//   message  = str topic, [4] payload length + payload, [1] qos, [1] retain, [4] properties length +
//              MQTT 5 PUBLISH properties, [8] expires-at (wall, 0 = never), str origin ("" = none)
//   str      = [2] length + UTF-8

public enum PersistenceFormat {
    public static let version: UInt8 = 1
}

/// A persisted record could not be read.
public struct PersistenceError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Broker state changed since the last save, as values: taking it is cheap (copy-on-write
/// copies), so the broker's loop never pays for encoding; `encoded(wallClockOffset:)` can run on
/// any thread.
public struct PendingChanges: Sendable {
    /// Per client identifier the session to save, or nil to delete its record.
    fileprivate var sessions: [(clientID: String, session: Session?)] = []
    /// Per topic the retained message to save, or nil to delete its record.
    fileprivate var retained: [(topic: String, message: Message?)] = []

    public var isEmpty: Bool { sessions.isEmpty && retained.isEmpty }
    /// Client identifiers whose record is saved (true) or deleted (false).
    public var sessionKeys: [(clientID: String, save: Bool)] { sessions.map { ($0.clientID, $0.session != nil) } }
    /// Retained topics whose record is saved (true) or deleted (false).
    public var retainedKeys: [(topic: String, save: Bool)] { retained.map { ($0.topic, $0.message != nil) } }

    /// The store records: per key the bytes to put, or nil to delete.
    public func encoded(
        wallClockOffset: Int64
    ) -> (sessions: [(clientID: String, record: [UInt8]?)], retained: [(topic: String, record: [UInt8]?)]) {
        let sessionRecords = sessions.map { clientID, session in
            (clientID, session.map { session -> [UInt8] in
                var buffer = ByteBufferAllocator().buffer(capacity: 256)
                buffer.writeSession(session, offset: wallClockOffset)
                return Array(buffer.readableBytesView)
            })
        }
        let retainedRecords = retained.map { topic, message in
            (topic, message.map { message -> [UInt8] in
                var buffer = ByteBufferAllocator().buffer(capacity: 64 + message.payload.readableBytes)
                buffer.writeInteger(PersistenceFormat.version)
                buffer.writeMessage(message, offset: wallClockOffset)
                return Array(buffer.readableBytesView)
            })
        }
        return (sessionRecords, retainedRecords)
    }
}

extension Broker {
    /// What changed since the last call. Sessions without an expiry interval are not kept
    /// (their record, if any, is deleted).
    public mutating func takeChanges() -> PendingChanges {
        var changes = PendingChanges()
        for clientID in sessions.takeChanged() {
            let session = sessions.all[clientID]
            changes.sessions.append((clientID, session.flatMap { $0.expiryInterval > 0 ? $0 : nil }))
        }
        for topic in dirtyRetained { changes.retained.append((topic, retained[topic])) }
        dirtyRetained.removeAll(keepingCapacity: true)
        return changes
    }

    /// `takeChanges()` encoded at once (tests and tools).
    public mutating func takeChanges(
        wallClockOffset: Int64
    ) -> (sessions: [(clientID: String, record: [UInt8]?)], retained: [(topic: String, record: [UInt8]?)]) {
        takeChanges().encoded(wallClockOffset: wallClockOffset)
    }

    /// Loads saved state at start-up (before any client connects). Sessions come back offline;
    /// their expiry counts from when they went offline, or from now if the broker stopped while
    /// they were connected. Returns a description of each record that could not be read.
    public mutating func restore(
        sessions: [[UInt8]],
        retained: [[UInt8]],
        wallClockOffset: Int64,
        now: BrokerTime
    ) -> [String] {
        var problems: [String] = []
        for bytes in retained {
            var buffer = ByteBuffer(bytes: bytes)
            do {
                guard buffer.readInteger(as: UInt8.self) == PersistenceFormat.version else {
                    throw PersistenceError(description: "retained record of an unknown version")
                }
                let message = try buffer.readMessage(offset: wallClockOffset)
                if let expiresAt = message.expiresAt, expiresAt <= now { continue }
                self.retained[message.topic] = message
            } catch {
                problems.append("\(error)")
            }
        }
        for bytes in sessions {
            var buffer = ByteBuffer(bytes: bytes)
            do {
                var session = try buffer.readSession(offset: wallClockOffset)
                session.disconnectedAt = min(session.disconnectedAt ?? now, now)
                for (filter, subscription) in session.subscriptions {
                    self.subscriptions.insert(filter: filter, clientID: session.clientID, subscription: subscription)
                }
                self.sessions[session.clientID] = session
            } catch {
                problems.append("\(error)")
            }
        }
        _ = self.sessions.takeChanged()  // what was just loaded is already on disk
        dirtyRetained.removeAll()
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
        guard count <= readableBytes else { throw PersistenceError(description: "element count \(count) exceeds the record") }
        return count
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
        guard let payload = readSlice(length: payloadLength) else { throw PersistenceError(description: "truncated payload") }
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
        return Delivery(message: try readMessage(offset: offset), qos: qos, retain: retain, subscriptionIdentifiers: identifiers)
    }

    fileprivate mutating func writeSession(_ session: Session, offset: Int64) {
        writeInteger(PersistenceFormat.version)
        writeString16(session.clientID)
        writeInteger(session.protocolVersion.rawValue)
        writeInteger(session.expiryInterval)
        writeInteger(session.disconnectedAt.map { UInt64(max(1, Int64($0) + offset)) } ?? 0)
        writeInteger(session.lastPacketID)
        writeInteger(UInt32(session.subscriptions.count))
        for (filter, subscription) in session.subscriptions.sorted(by: { $0.key < $1.key }) {
            let options = subscription.options
            writeString16(filter)
            writeInteger(
                options.qos.rawValue | (options.noLocal ? 0x04 : 0) | (options.retainAsPublished ? 0x08 : 0)
                    | options.retainHandling.rawValue << 4
            )
            writeInteger(subscription.identifier ?? 0)
        }
        writeInteger(UInt32(session.inboundQoS2.count))
        for packetID in session.inboundQoS2.sorted() { writeInteger(packetID) }
        writeInteger(UInt32(session.inflight.count))
        for outgoing in session.inflight {
            writeInteger(outgoing.packetID)
            let state: UInt8 =
                switch outgoing.state {
                case .awaitingPubAck: 1
                case .awaitingPubRec: 2
                case .awaitingPubComp: 3
                }
            writeInteger(state)
            writeDelivery(outgoing.delivery, offset: offset)
        }
        writeInteger(UInt32(session.queue.count))
        for delivery in session.queue { writeDelivery(delivery, offset: offset) }
    }

    fileprivate mutating func readSession(offset: Int64) throws -> Session {
        guard try read(UInt8.self) == PersistenceFormat.version else {
            throw PersistenceError(description: "session record of an unknown version")
        }
        let clientID = try readString16()
        guard let version = ProtocolVersion(rawValue: try read(UInt8.self)) else {
            throw PersistenceError(description: "session \(clientID): bad protocol level")
        }
        var session = Session(clientID: clientID, protocolVersion: version, expiryInterval: try read(UInt32.self))
        let offlineSince = try read(UInt64.self)
        session.disconnectedAt = offlineSince == 0 ? nil : BrokerTime(max(0, Int64(offlineSince) - offset))
        session.lastPacketID = try read(UInt16.self)
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
            session.subscriptions[filter] = Subscription(options: options, identifier: identifier == 0 ? nil : identifier)
        }
        for _ in 0..<(try readCount()) { session.inboundQoS2.insert(try read(UInt16.self)) }
        for _ in 0..<(try readCount()) {
            let packetID = try read(UInt16.self)
            let state: Outgoing.State
            switch try read(UInt8.self) {
            case 1: state = .awaitingPubAck
            case 2: state = .awaitingPubRec
            case 3: state = .awaitingPubComp
            default: throw PersistenceError(description: "session \(clientID): bad in-flight state")
            }
            session.inflight.append(Outgoing(packetID: packetID, delivery: try readDelivery(offset: offset), state: state))
        }
        for _ in 0..<(try readCount()) {
            let delivery = try readDelivery(offset: offset)
            session.queue.append(delivery)
            session.queuedBytes += delivery.message.payload.readableBytes
        }
        guard readableBytes == 0 else { throw PersistenceError(description: "session \(clientID): trailing bytes") }
        return session
    }
}
