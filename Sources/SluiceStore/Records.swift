import NIOCore

/// One outbound message held in a bridge queue.
public struct QueuedMessage: Sendable, Hashable {
    public var topic: String
    /// The bytes the publisher sent: the broker's slice of the received buffer on the way in (no copy until
    /// LMDB's page), one buffer made from the page when read back from the store.
    public var payload: ByteBuffer
    public var qos: UInt8
    public var retain: Bool
    /// MQTT 5 properties, already encoded by the caller; the store keeps them opaque. Bytes, not a buffer:
    /// usually empty (no allocation), and the bridge parses them when it sends.
    public var properties: [UInt8]
    /// When the gateway accepted the message, in milliseconds since the Unix epoch (drives `maxAge`).
    public var enqueuedAt: UInt64

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: UInt8 = 1,
        retain: Bool = false,
        properties: [UInt8] = [],
        enqueuedAt: UInt64
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.enqueuedAt = enqueuedAt
    }

    /// A message with a payload given as bytes (copied into a buffer): for tests and tools.
    public init(
        topic: String,
        payload: [UInt8],
        qos: UInt8 = 1,
        retain: Bool = false,
        properties: [UInt8] = [],
        enqueuedAt: UInt64
    ) {
        self.init(
            topic: topic,
            payload: ByteBuffer(bytes: payload),
            qos: qos,
            retain: retain,
            properties: properties,
            enqueuedAt: enqueuedAt
        )
    }
}

/// A message read back from a queue with its sequence number (pass it to `remove` after the PUBACK).
public struct StoredMessage: Sendable, Hashable {
    public var seq: UInt64
    public var message: QueuedMessage
}

// MARK: - Record format

/// Note on the queue record format (version 1). All integers are big-endian.
///
/// ```
/// offset  size  field
/// 0       1     format version = 1
/// 1       1     flags: bit 0 = retain; other bits must be 0
/// 2       1     qos (0, 1 or 2)
/// 3       8     enqueuedAt, ms since the Unix epoch
/// 11      4     topic length T, then T bytes of UTF-8
/// …       4     properties length P, then P bytes (opaque, pre-encoded MQTT 5 properties)
/// …       4     payload length N, then N bytes
/// ```
/// Version 2 (written since records carry a checksum) is the same layout with version byte 2 followed by
/// a 4-byte CRC32C (Castagnoli, big-endian) of every byte before it, so flash rot inside a payload is
/// detected instead of forwarded. Version 1 records (no checksum) still read.
///
/// The record must be consumed exactly: trailing bytes are damage. Compatibility: a reader accepts only
/// versions it knows and throws `.corruptRecord` otherwise; a new layout gets a new version byte and the
/// decoder keeps reading every older version (records are never rewritten in place).
enum RecordCodec {
    static let version: UInt8 = 2
    static let checksumSize = 4

    /// Bytes before the topic: version, flags, qos, enqueuedAt, topic length.
    private static let headerSize = 15

    /// The size of `message`'s record: what `encode(_:into:)` writes.
    static func encodedSize(_ message: QueuedMessage) -> Int {
        headerSize + message.topic.utf8.count + 4 + message.properties.count + 4 + message.payload.readableBytes
            + checksumSize
    }

    /// Writes `message`'s record into `record`, which must hold exactly `encodedSize(message)` bytes (LMDB's
    /// reserved space in the page, so the record is built once, where it is kept); the checksum is computed
    /// over the bytes just written.
    static func encode(_ message: QueuedMessage, into record: UnsafeMutableRawBufferPointer) {
        precondition(record.count == encodedSize(message), "record buffer does not fit the message")
        var writer = RecordWriter(record)
        writer.write(version)
        writer.write(message.retain ? UInt8(1) : 0)
        writer.write(message.qos)
        writer.write(message.enqueuedAt)
        var topic = message.topic
        topic.withUTF8 { writer.writeLengthPrefixed(UnsafeRawBufferPointer($0)) }
        message.properties.withUnsafeBytes { writer.writeLengthPrefixed($0) }
        message.payload.withUnsafeReadableBytes { writer.writeLengthPrefixed($0) }
        let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[..<writer.offset]))
        writer.write(checksum)
    }

    /// The record as an array (tests, and `encodeVersion1`); the store writes records with `encode(_:into:)`.
    static func encode(_ message: QueuedMessage) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: encodedSize(message)) { buffer, count in
            encode(message, into: UnsafeMutableRawBufferPointer(buffer))
            count = buffer.count
        }
    }

    /// Encodes in the version 1 layout (no checksum): for tests of old stores only.
    static func encodeVersion1(_ message: QueuedMessage) -> [UInt8] {
        var out = encode(message)
        out.removeLast(checksumSize)
        out[0] = 1
        return out
    }

    /// Decodes a record; throws `.corruptRecord` on any damage, never traps.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StoreError) -> QueuedMessage {
        guard let version = bytes.first else { throw StoreError.corrupt("empty queue record") }
        var body = bytes
        switch version {
        case 1:
            break
        case 2:
            guard bytes.count >= 1 + checksumSize else { throw StoreError.corrupt("truncated queue record") }
            body = UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - checksumSize)])
            var trailer = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - checksumSize)...]))
            let stored = trailer.readUInt32()!
            let computed = CRC32C.checksum(body)
            guard stored == computed else {
                throw StoreError.corrupt(
                    "checksum mismatch in queue record (stored 0x\(String(stored, radix: 16)), "
                        + "computed 0x\(String(computed, radix: 16)))"
                )
            }
        default:
            throw StoreError.corrupt("unknown queue record version \(version)")
        }
        var reader = ByteReader(body)
        _ = reader.readByte()
        guard let flags = reader.readByte(), let qos = reader.readByte(), let enqueuedAt = reader.readUInt64()
        else { throw StoreError.corrupt("truncated queue record header") }
        guard flags & ~1 == 0 else {
            throw StoreError.corrupt("unknown flags 0x\(String(flags, radix: 16)) in queue record")
        }
        guard qos <= 2 else { throw StoreError.corrupt("invalid qos \(qos) in queue record") }
        guard let topicBytes = reader.readLengthPrefixedBytes() else {
            throw StoreError.corrupt("truncated topic in queue record")
        }
        guard let topic = String(validating: topicBytes, as: UTF8.self) else {
            throw StoreError.corrupt("topic in queue record is not UTF-8")
        }
        guard let properties = reader.readLengthPrefixed() else {
            throw StoreError.corrupt("truncated properties in queue record")
        }
        guard let payload = reader.readLengthPrefixedBytes() else {
            throw StoreError.corrupt("truncated payload in queue record")
        }
        guard reader.isAtEnd else { throw StoreError.corrupt("\(reader.remaining) trailing bytes in queue record") }
        return QueuedMessage(
            topic: topic,
            payload: ByteBuffer(bytes: payload),
            qos: qos,
            retain: flags & 1 == 1,
            properties: properties,
            enqueuedAt: enqueuedAt
        )
    }

    static func decode(_ bytes: [UInt8]) throws(StoreError) -> QueuedMessage {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(StoreError) -> QueuedMessage in try decode(buffer) }
        }
        return try result.get()
    }

    /// Reads only the `enqueuedAt` field (for age checks without decoding the whole record).
    static func enqueuedAt(_ bytes: UnsafeRawBufferPointer) throws(StoreError) -> UInt64 {
        var reader = ByteReader(bytes)
        guard let version = reader.readByte(), version == 1 || version == 2, reader.readByte() != nil,
            reader.readByte() != nil,
            let value = reader.readUInt64()
        else { throw StoreError.corrupt("damaged queue record header") }
        return value
    }
}

/// Why a message was dropped from a queue or rejected before entering it.
public enum DropReason: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The queue held `maxMessages`.
    case maxMessages = 0
    /// The queue held `maxBytes` (or the message alone is larger than `maxBytes`).
    case maxBytes = 1
    /// The message was older than `maxAge`.
    case maxAge = 2
    /// The LMDB map was at its ceiling, or the disk was full.
    case storeFull = 3
    /// Older than its bridge rule's `ttl` when it would have been sent.
    case expired = 4

    public var description: String {
        switch self {
        case .maxMessages: "max_messages"
        case .maxBytes: "max_bytes"
        case .maxAge: "max_age"
        case .storeFull: "store_full"
        case .expired: "expired"
        }
    }
}

/// Per-reason counters.
public struct DropCounts: Sendable, Hashable {
    public var counts: [UInt64] = Array(repeating: 0, count: DropReason.allCases.count)
    public init() {}
    public subscript(reason: DropReason) -> UInt64 {
        get { counts[Int(reason.rawValue)] }
        set { counts[Int(reason.rawValue)] = newValue }
    }
    /// Sum over all reasons.
    public var total: UInt64 { counts.reduce(0, +) }
}

/// Bookkeeping for one queue, persisted in the metadata database so `stats` is cheap and survives restarts.
///
/// Note on the meta record format (version 2), big-endian:
/// `[1] version=2, [8] nextSeq, [8] count, [8] bytes, 5×[8] dropped by DropReason, 5×[8] rejected by DropReason`
/// (89 bytes). Version 1 (73 bytes: 4×[8] each, before `expired`) is still read; the next write makes it
/// version 2 (a binary from before then rebuilds such a record, its counters restarting at 0). A damaged or
/// unknown meta record is rebuilt from the queue's records (counters restart at 0).
struct QueueMeta: Hashable {
    var nextSeq: UInt64 = 1
    var count: UInt64 = 0
    var bytes: UInt64 = 0
    var dropped = DropCounts()
    var rejected = DropCounts()

    static let version: UInt8 = 2
    static let encodedSize = 1 + 8 * 3 + 8 * 2 * DropReason.allCases.count
    /// Version 1 counted the first four reasons (before `expired`).
    static let version1Reasons = 4
    static let version1Size = 1 + 8 * 3 + 8 * 2 * version1Reasons

    func encode() -> [UInt8] {
        var out: [UInt8] = [QueueMeta.version]
        out.reserveCapacity(QueueMeta.encodedSize)
        out.appendBigEndian(nextSeq)
        out.appendBigEndian(count)
        out.appendBigEndian(bytes)
        for value in dropped.counts { out.appendBigEndian(value) }
        for value in rejected.counts { out.appendBigEndian(value) }
        return out
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StoreError) -> QueueMeta {
        var reader = ByteReader(bytes)
        let reasons: ArraySlice<DropReason>
        switch (reader.readByte(), bytes.count) {
        case (version, encodedSize): reasons = DropReason.allCases[...]
        case (1, version1Size): reasons = DropReason.allCases.prefix(version1Reasons)
        default: throw StoreError.corrupt("damaged or unknown queue metadata record")
        }
        var meta = QueueMeta()
        meta.nextSeq = reader.readUInt64()!
        meta.count = reader.readUInt64()!
        meta.bytes = reader.readUInt64()!
        for reason in reasons { meta.dropped[reason] = reader.readUInt64()! }
        for reason in reasons { meta.rejected[reason] = reader.readUInt64()! }
        return meta
    }
}

// MARK: - Byte helpers

struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - index }
    var isAtEnd: Bool { index == bytes.count }

    mutating func readByte() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func readUInt64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(bytes[index + i]) }
        index += 8
        return value
    }

    mutating func readUInt32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        var value: UInt32 = 0
        for i in 0..<4 { value = value << 8 | UInt32(bytes[index + i]) }
        index += 4
        return value
    }

    /// A 4-byte big-endian length and that many bytes, copied; nil (not a trap) if the length overruns.
    mutating func readLengthPrefixed() -> [UInt8]? {
        readLengthPrefixedBytes().map { Array($0) }
    }

    /// A 4-byte big-endian length and that many bytes, in place; nil (not a trap) if the length overruns.
    mutating func readLengthPrefixedBytes() -> UnsafeRawBufferPointer? {
        let start = index
        guard let length = readUInt32(), Int(length) <= remaining else {
            index = start
            return nil
        }
        defer { index += Int(length) }
        return UnsafeRawBufferPointer(rebasing: bytes[index..<index + Int(length)])
    }
}

/// Writes big-endian integers and length-prefixed bytes into a buffer sized for them (a record's reserved
/// space); running past its end traps.
struct RecordWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    mutating func write(_ byte: UInt8) {
        buffer[offset] = byte
        offset += 1
    }

    mutating func write<Value: FixedWidthInteger>(_ value: Value) {
        let size = MemoryLayout<Value>.size
        precondition(offset + size <= buffer.count, "record writer overrun")
        buffer.storeBytes(of: value.bigEndian, toByteOffset: offset, as: Value.self)
        offset += size
    }

    /// A 4-byte big-endian length, then the bytes.
    mutating func writeLengthPrefixed(_ bytes: UnsafeRawBufferPointer) {
        write(UInt32(bytes.count))
        UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + bytes.count]).copyMemory(from: bytes)
        offset += bytes.count
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func appendBigEndian(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}

extension UnsafeRawBufferPointer {
    /// The big-endian UInt64 in the last 8 bytes (a queue key's sequence number).
    var trailingSequence: UInt64 {
        var value: UInt64 = 0
        for i in (count - 8)..<count { value = value << 8 | UInt64(self[i]) }
        return value
    }
}
