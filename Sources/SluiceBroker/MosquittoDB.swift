// Note on Mosquitto's persistence file (mosquitto.db), as Mosquitto 1.6 (format 5) and 2.0
// (format 6) write it (src/persist.h, persist_write_v5.c, persist_read_v5.c):
// - Header: 15 magic bytes `00 B5 00 "mosquitto db"`, [4] CRC (always 0), [4] format version,
//   big-endian. Then chunks to the end of the file: [4] type, [4] length (big-endian), body.
// - Bodies start with a C struct written as is: its 16- and 32-bit fields are big-endian, but its
//   64-bit fields (store ids, expiry times) are in the writer's byte order, little-endian on the
//   machines Debian ships Mosquitto for; structs are padded to a multiple of their alignment.
//   CFG (1)        [8] last store id, [1] shutdown, [1] id size (8), 6 padding
//   MSG_STORE (2)  [8] store id, [8] expiry time (wall seconds, 0 = never), [4] payload length,
//                  [2] source mid, [2] source id length, [2] source username length, [2] topic
//                  length, [2] source port, [1] qos, [1] retain; then source id, source username,
//                  topic, payload, and in the rest of the chunk the MQTT 5 property block
//   CLIENT_MSG (3) [8] store id, [2] mid, [2] client id length, [1] qos, [1] state, [1] retain << 4
//                  | dup, [1] direction (0 in, 1 out); client id; property block (subscription id)
//   RETAIN (4)     [8] store id
//   SUB (5)        [4] subscription id, [2] client id length, [2] filter length, [1] qos,
//                  [1] options (MQTT 5 bits), 2 padding; client id, filter
//   CLIENT (6)     [8] session expiry time (wall seconds), [4] expiry interval, [2] last mid,
//                  [2] client id length; format 6 adds [2] listener port, [2] username length,
//                  4 padding; client id, username
// - Decoding never trusts a length: every read is checked against the chunk and the file, and a
//   failure names the byte offset and the chunk (`MosquittoDBError`).

/// A mosquitto.db could not be read: where, in which chunk, and why.
public struct MosquittoDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset in the file where the problem was found.
    public var offset: Int
    /// The chunk being read ("header" before the first chunk).
    public var chunk: String
    public var reason: String

    public var description: String { "at byte \(offset) (\(chunk)): \(reason)" }
}

/// The contents of a mosquitto.db, as Mosquitto wrote them (no interpretation beyond decoding).
public struct MosquittoDB: Sendable, Equatable {
    public static let magic: [UInt8] = [0x00, 0xB5, 0x00] + Array("mosquitto db".utf8)
    public static let supportedVersions: ClosedRange<UInt32> = 5...6

    public struct StoredMessage: Sendable, Equatable {
        public var storeID: UInt64
        /// Wall-clock seconds; 0 = never expires.
        public var expiryTime: Int64
        public var sourceID: String
        public var sourceUsername: String
        public var topic: String
        public var payload: [UInt8]
        public var qos: UInt8
        public var retain: Bool
        /// MQTT 5 PUBLISH property block (length + list); empty when none.
        public var properties: [UInt8]
    }

    public struct Client: Sendable, Equatable {
        public var clientID: String
        public var username: String?
        /// Wall-clock seconds when the session expires (0 while it was connected or never expires).
        public var sessionExpiryTime: Int64
        /// Seconds; `UInt32.max` never expires (MQTT 3.1.1 clean session false).
        public var sessionExpiryInterval: UInt32
        public var lastMid: UInt16
    }

    /// Mosquitto's `enum mosquitto_msg_state`.
    public enum MessageState: UInt8, Sendable, Equatable {
        case invalid = 0, publishQoS0, publishQoS1, waitForPubAck, publishQoS2, waitForPubRec, resendPubRel
        case waitForPubRel, resendPubComp, waitForPubComp, sendPubRec, queued
    }

    public struct ClientMessage: Sendable, Equatable {
        public var clientID: String
        public var storeID: UInt64
        public var mid: UInt16
        public var qos: UInt8
        public var state: MessageState
        public var retain: Bool
        public var dup: Bool
        /// Outgoing (to the client); false: received from it (QoS 2 awaiting PUBREL).
        public var outgoing: Bool
        public var subscriptionIdentifier: UInt32
    }

    public struct Subscription: Sendable, Equatable {
        public var clientID: String
        public var filter: String
        public var qos: UInt8
        /// No local (0x04), retain as published (0x08), retain handling (0x30), as in SUBSCRIBE.
        public var options: UInt8
        public var identifier: UInt32
    }

    public var version: UInt32 = 6
    public var lastStoreID: UInt64 = 0
    /// In file order.
    public var messages: [StoredMessage] = []
    public var clients: [Client] = []
    public var clientMessages: [ClientMessage] = []
    /// Store ids of retained messages.
    public var retained: [UInt64] = []
    public var subscriptions: [Subscription] = []
    /// Chunks of a type this decoder does not know (Mosquitto skips them too): type and offset.
    public var unknownChunks: [(type: UInt32, offset: Int)] = []

    public init() {}

    public static func == (lhs: MosquittoDB, rhs: MosquittoDB) -> Bool {
        lhs.version == rhs.version && lhs.lastStoreID == rhs.lastStoreID && lhs.messages == rhs.messages
            && lhs.clients == rhs.clients && lhs.clientMessages == rhs.clientMessages
            && lhs.retained == rhs.retained && lhs.subscriptions == rhs.subscriptions
            && lhs.unknownChunks.map(\.type) == rhs.unknownChunks.map(\.type)
    }

    /// Decodes a whole file. Throws on anything that is not a complete mosquitto.db of format 5 or 6.
    public static func decode(_ bytes: [UInt8]) throws(MosquittoDBError) -> MosquittoDB {
        var file = ChunkReader(bytes: bytes, start: 0, end: bytes.count, chunk: "header")
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw file.error("not a mosquitto.db (its first bytes are not Mosquitto's magic number)")
        }
        file.position = magic.count
        _ = try file.u32()  // CRC: written as 0, never checked by Mosquitto
        var db = MosquittoDB()
        db.version = try file.u32()
        guard supportedVersions.contains(db.version) else {
            throw MosquittoDBError(
                offset: file.position - 4,
                chunk: "header",
                reason: "format version \(db.version) is not supported (5 and 6: Mosquitto 1.6 and 2.0)"
            )
        }
        var sawConfig = false
        while file.position < bytes.count {
            let headerOffset = file.position
            file.chunk = "chunk header"
            let type = try file.u32()
            let length = Int(try file.u32())
            let bodyStart = file.position
            guard length <= bytes.count - bodyStart else {
                throw MosquittoDBError(
                    offset: headerOffset,
                    chunk: chunkName(type),
                    reason: "chunk of \(length) bytes runs past the end of the file (\(bytes.count - bodyStart) left)"
                )
            }
            var body = ChunkReader(bytes: bytes, start: bodyStart, end: bodyStart + length, chunk: chunkName(type))
            switch type {
            case 1:
                db.lastStoreID = try body.u64LittleEndian()
                _ = try body.u8()  // shutdown flag
                let idSize = try body.u8()
                guard idSize == 8 else { throw body.error("store ids of \(idSize) bytes (only 8 is supported)") }
                sawConfig = true
            case 2: db.messages.append(try body.storedMessage())
            case 3: db.clientMessages.append(try body.clientMessage())
            case 4: db.retained.append(try body.u64LittleEndian())
            case 5: db.subscriptions.append(try body.subscription())
            case 6: db.clients.append(try body.client(version: db.version))
            default: db.unknownChunks.append((type, headerOffset))
            }
            file.position = bodyStart + length
        }
        guard sawConfig else { throw file.error("no CFG chunk: the file ends before Mosquitto finished writing it") }
        return db
    }

    static func chunkName(_ type: UInt32) -> String {
        switch type {
        case 1: "CFG chunk"
        case 2: "MSG_STORE chunk"
        case 3: "CLIENT_MSG chunk"
        case 4: "RETAIN chunk"
        case 5: "SUB chunk"
        case 6: "CLIENT chunk"
        default: "chunk of type \(type)"
        }
    }
}

/// Bounded reads inside one chunk (or the file header).
private struct ChunkReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int
    var chunk: String

    init(bytes: [UInt8], start: Int, end: Int, chunk: String) {
        self.bytes = bytes
        self.position = start
        self.end = end
        self.chunk = chunk
    }

    func error(_ reason: String) -> MosquittoDBError {
        MosquittoDBError(offset: position, chunk: chunk, reason: reason)
    }

    mutating func take(_ count: Int, _ what: String) throws(MosquittoDBError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= end - position else {
            throw error("\(what) of \(count) bytes runs past the end of the \(chunk) (\(end - position) left)")
        }
        defer { position += count }
        return bytes[position..<position + count]
    }

    mutating func u8() throws(MosquittoDBError) -> UInt8 { try take(1, "a byte").first! }

    mutating func u16() throws(MosquittoDBError) -> UInt16 {
        try take(2, "a 16-bit field").reduce(0) { $0 << 8 | UInt16($1) }
    }

    mutating func u32() throws(MosquittoDBError) -> UInt32 {
        try take(4, "a 32-bit field").reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// 64-bit fields are in the writer's byte order (see the note at the top).
    mutating func u64LittleEndian() throws(MosquittoDBError) -> UInt64 {
        try take(8, "a 64-bit field").reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func skip(_ count: Int) throws(MosquittoDBError) { _ = try take(count, "padding") }

    mutating func string(_ length: UInt16, _ what: String) throws(MosquittoDBError) -> String {
        let start = position
        let slice = try take(Int(length), what)
        guard let text = String(validating: slice, as: UTF8.self) else {
            throw MosquittoDBError(offset: start, chunk: chunk, reason: "\(what) is not UTF-8")
        }
        return text
    }

    /// What is left of the chunk: an MQTT 5 property block, or nothing.
    mutating func rest() -> [UInt8] {
        defer { position = end }
        return Array(bytes[position..<end])
    }

    mutating func storedMessage() throws(MosquittoDBError) -> MosquittoDB.StoredMessage {
        let storeID = try u64LittleEndian()
        let expiryTime = Int64(bitPattern: try u64LittleEndian())
        let payloadLength = Int(try u32())
        _ = try u16()  // source mid
        let sourceIDLength = try u16()
        let sourceUsernameLength = try u16()
        let topicLength = try u16()
        _ = try u16()  // source port
        let qos = try u8()
        let retain = try u8()
        guard qos <= 2 else { throw error("QoS \(qos)") }
        let sourceID = try string(sourceIDLength, "source client id")
        let sourceUsername = try string(sourceUsernameLength, "source username")
        let topic = try string(topicLength, "topic")
        let payload = Array(try take(payloadLength, "payload"))
        return MosquittoDB.StoredMessage(
            storeID: storeID,
            expiryTime: expiryTime,
            sourceID: sourceID,
            sourceUsername: sourceUsername,
            topic: topic,
            payload: payload,
            qos: qos,
            retain: retain != 0,
            properties: rest()
        )
    }

    mutating func clientMessage() throws(MosquittoDBError) -> MosquittoDB.ClientMessage {
        let storeID = try u64LittleEndian()
        let mid = try u16()
        let idLength = try u16()
        let qos = try u8()
        let stateByte = try u8()
        let retainDup = try u8()
        let direction = try u8()
        guard qos <= 2 else { throw error("QoS \(qos)") }
        guard let state = MosquittoDB.MessageState(rawValue: stateByte) else {
            throw error("message state \(stateByte)")
        }
        guard direction <= 1 else { throw error("direction \(direction)") }
        let clientID = try string(idLength, "client id")
        let propertiesStart = position
        var subscriptionIdentifier: UInt32 = 0
        let properties = rest()
        if !properties.isEmpty {
            // Mosquitto writes only a Subscription Identifier here (0x0B, variable byte integer).
            var list = PropertyBlock(bytes: properties)
            guard let entries = list.entries() else {
                throw MosquittoDBError(offset: propertiesStart, chunk: chunk, reason: "damaged property block")
            }
            for (identifier, value) in entries where identifier == 0x0B { subscriptionIdentifier = value }
        }
        return MosquittoDB.ClientMessage(
            clientID: clientID,
            storeID: storeID,
            mid: mid,
            qos: qos,
            state: state,
            retain: retainDup >> 4 != 0,
            dup: retainDup & 0x0F != 0,
            outgoing: direction == 1,
            subscriptionIdentifier: subscriptionIdentifier
        )
    }

    mutating func subscription() throws(MosquittoDBError) -> MosquittoDB.Subscription {
        let identifier = try u32()
        let idLength = try u16()
        let filterLength = try u16()
        let qos = try u8()
        let options = try u8()
        try skip(2)
        guard qos <= 2 else { throw error("QoS \(qos)") }
        return MosquittoDB.Subscription(
            clientID: try string(idLength, "client id"),
            filter: try string(filterLength, "topic filter"),
            qos: qos,
            options: options,
            identifier: identifier
        )
    }

    mutating func client(version: UInt32) throws(MosquittoDBError) -> MosquittoDB.Client {
        let expiryTime = Int64(bitPattern: try u64LittleEndian())
        let interval = try u32()
        let lastMid = try u16()
        let idLength = try u16()
        var usernameLength: UInt16 = 0
        if version >= 6 {
            _ = try u16()  // listener port
            usernameLength = try u16()
            try skip(4)
        }
        let clientID = try string(idLength, "client id")
        guard !clientID.isEmpty else { throw error("empty client id") }
        let username = usernameLength > 0 ? try string(usernameLength, "username") : nil
        return MosquittoDB.Client(
            clientID: clientID,
            username: username,
            sessionExpiryTime: expiryTime,
            sessionExpiryInterval: interval,
            lastMid: lastMid
        )
    }
}

/// The few property identifiers a CLIENT_MSG block can hold, read without trusting its lengths.
private struct PropertyBlock {
    let bytes: [UInt8]
    var position = 0

    mutating func varint() -> UInt32? {
        var value: UInt32 = 0
        for shift in stride(from: 0, to: 28, by: 7) {
            guard position < bytes.count else { return nil }
            let byte = bytes[position]
            position += 1
            value |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
        }
        return nil
    }

    /// Identifier and value of each entry; nil when the block is damaged or holds anything but
    /// variable byte integer properties.
    mutating func entries() -> [(UInt8, UInt32)]? {
        guard let length = varint(), Int(length) == bytes.count - position else { return nil }
        var result: [(UInt8, UInt32)] = []
        while position < bytes.count {
            let identifier = bytes[position]
            position += 1
            guard identifier == 0x0B, let value = varint() else { return nil }
            result.append((identifier, value))
        }
        return result
    }
}
