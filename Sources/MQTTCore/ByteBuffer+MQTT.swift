import NIOCore

// A note on the data types (spec 1.5). Every reader here works on a body slice that has already been
// framed, so running out of bytes is a malformed packet, not "need more data": only
// `MQTTCodec.readFrame` returns nil for short input. Readers never trap on input: integers come from
// `readInteger`, lengths are bounded before slices are taken, and no value read from the wire is used
// in arithmetic that could overflow.

/// Variable byte integer limits (spec 1.5.5).
enum VariableByteInteger {
    /// The largest value four bytes can carry [MQTT-1.5.5].
    static let maximum = 268_435_455

    /// How many bytes `value` takes on the wire (1...4).
    @inline(__always)
    static func size(_ value: Int) -> Int {
        if value < 128 { return 1 }
        if value < 16_384 { return 2 }
        if value < 2_097_152 { return 3 }
        return 4
    }
}

extension ByteBuffer {
    // MARK: Reading (inside a framed body: short input is malformed)

    @inline(__always)
    mutating func readMQTTUInt8(_ field: StaticString) throws(MQTTError) -> UInt8 {
        guard let value = self.readInteger(as: UInt8.self) else { throw .truncated(field) }
        return value
    }

    @inline(__always)
    mutating func readMQTTUInt16(_ field: StaticString) throws(MQTTError) -> UInt16 {
        guard let value = self.readInteger(as: UInt16.self) else { throw .truncated(field) }
        return value
    }

    @inline(__always)
    mutating func readMQTTUInt32(_ field: StaticString) throws(MQTTError) -> UInt32 {
        guard let value = self.readInteger(as: UInt32.self) else { throw .truncated(field) }
        return value
    }

    /// Reads a variable byte integer: at most four bytes, minimal form only [MQTT-1.5.5-1].
    mutating func readMQTTVariableByteInteger(_ field: StaticString) throws(MQTTError) -> Int {
        var value = 0
        var count = 0
        while true {
            guard let byte = self.readInteger(as: UInt8.self) else { throw .truncated(field) }
            value |= Int(byte & 0x7F) << (7 * count)
            count += 1
            if byte & 0x80 == 0 {
                // A last byte of zero after a continuation byte is an overlong (non-minimal) form.
                if count > 1 && byte == 0 {
                    throw .malformed("\(field): variable byte integer is not in its minimal form [MQTT-1.5.5-1]")
                }
                return value
            }
            if count == 4 {
                throw .malformed("\(field): variable byte integer longer than four bytes [MQTT-1.5.5-1]")
            }
        }
    }

    /// Reads a UTF-8 encoded string (spec 1.5.4): two-byte length, well-formed UTF-8 with no
    /// surrogates [MQTT-1.5.4-1] and no U+0000 [MQTT-1.5.4-2]. The bytes are validated in place before
    /// the `String` is made, so a bad string costs no allocation.
    mutating func readMQTTString(_ field: StaticString) throws(MQTTError) -> String {
        try readMQTTString(field, rejectingWildcards: false)
    }

    /// Reads a topic name as a PUBLISH carries it: a UTF-8 string as `readMQTTString` reads it, without
    /// the wildcards `+` and `#` [MQTT-3.3.2-2], both checked in the one pass over its bytes (every PUBLISH
    /// reads one). It may be empty (MQTT 5's topic alias): the caller decides.
    mutating func readMQTTTopicName(_ field: StaticString) throws(MQTTError) -> String {
        try readMQTTString(field, rejectingWildcards: true)
    }

    /// `readMQTTTopicName`, answering `previous` when the topic's bytes are the same: no new `String` is
    /// made and the bytes are not validated again (they were, for `previous`). A sensor publishes on a
    /// few topics, again and again; making and validating its topic cost about 5 % of the instructions per
    /// message (a 24-byte topic). A different topic is read as usual and becomes `previous`.
    mutating func readMQTTTopicName(_ field: StaticString, reusing previous: inout String) throws(MQTTError) -> String {
        let length = previous.utf8.count
        if length > 0, let rawLength = self.getInteger(at: self.readerIndex, as: UInt16.self), Int(rawLength) == length,
            self.readableBytes - 2 >= length
        {
            let same = self.withUnsafeReadableBytes { bytes in
                previous.utf8.withContiguousStorageIfAvailable { known in
                    Self.sameBytes(
                        UnsafeRawBufferPointer(rebasing: bytes[2..<(2 + length)]),
                        UnsafeRawBufferPointer(known)
                    )
                }
            }
            if same == true {
                self.moveReaderIndex(forwardBy: 2 + length)
                return previous
            }
        }
        let topic = try readMQTTTopicName(field)
        if !topic.isEmpty { previous = topic }  // an MQTT 5 topic alias's empty name leaves it
        return topic
    }

    /// Whether `a` and `b` (of one length) hold the same bytes, eight at a time.
    private static func sameBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let count = a.count
        var i = 0
        while count - i >= 8 {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                != b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            {
                return false
            }
            i += 8
        }
        while i < count {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    @inline(__always)
    private mutating func readMQTTString(_ field: StaticString, rejectingWildcards: Bool) throws(MQTTError) -> String {
        guard let rawLength = self.getInteger(at: self.readerIndex, as: UInt16.self) else { throw .truncated(field) }
        let length = Int(rawLength)
        guard self.readableBytes - 2 >= length else { throw .truncated(field) }
        if length == 0 {
            self.moveReaderIndex(forwardBy: 2)
            return ""
        }
        let check = self.withUnsafeReadableBytes { bytes in
            MQTTUTF8.validate(
                UnsafeRawBufferPointer(rebasing: bytes[2..<(2 + length)]),
                rejectingWildcards: rejectingWildcards
            )
        }
        switch check {
        case .valid: break
        case .containsNull: throw .malformed("\(field): string contains U+0000 [MQTT-1.5.4-2]")
        case .invalid: throw .malformed("\(field): string is not well-formed UTF-8 [MQTT-1.5.4-1]")
        case .containsWildcard: throw Topic.wildcardInName
        }
        self.moveReaderIndex(forwardBy: 2)
        guard let string = self.readString(length: length) else { throw .truncated(field) }
        return string
    }

    /// Reads binary data (spec 1.5.6): two-byte length and that many bytes, copied into an array.
    mutating func readMQTTBinary(_ field: StaticString) throws(MQTTError) -> [UInt8] {
        guard let rawLength = self.getInteger(at: self.readerIndex, as: UInt16.self) else { throw .truncated(field) }
        let length = Int(rawLength)
        guard self.readableBytes - 2 >= length else { throw .truncated(field) }
        self.moveReaderIndex(forwardBy: 2)
        guard let bytes = self.readBytes(length: length) else { throw .truncated(field) }
        return bytes
    }

    /// Reads binary data (spec 1.5.6) as a slice of this buffer, without copying.
    mutating func readMQTTBinarySlice(_ field: StaticString) throws(MQTTError) -> ByteBuffer {
        guard let rawLength = self.getInteger(at: self.readerIndex, as: UInt16.self) else { throw .truncated(field) }
        let length = Int(rawLength)
        guard self.readableBytes - 2 >= length else { throw .truncated(field) }
        self.moveReaderIndex(forwardBy: 2)
        guard let slice = self.readSlice(length: length) else { throw .truncated(field) }
        return slice
    }

    // MARK: Writing

    /// Writes a variable byte integer. `value` must be in 0...268,435,455 (spec 1.5.5).
    @inline(__always)
    mutating func writeMQTTVariableByteInteger(_ value: Int) {
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: 4) { bytes in
            var writer = RawBytesWriter(bytes)
            writer.writeVariableByteInteger(value)
            return writer.count
        }
    }

    /// Writes a two-byte length and the UTF-8 bytes of `string`. Strings longer than 65,535 bytes
    /// cannot be sent (spec 1.5.4); validate user input with `Topic` or by length before encoding.
    @inline(__always)
    mutating func writeMQTTString(_ string: String) {
        let count = string.utf8.count
        precondition(count <= 0xFFFF, "MQTT string longer than 65535 bytes")
        self.writeInteger(UInt16(truncatingIfNeeded: count))
        self.writeString(string)
    }

    /// Writes binary data with its two-byte length (spec 1.5.6).
    @inline(__always)
    mutating func writeMQTTBinary(_ bytes: [UInt8]) {
        precondition(bytes.count <= 0xFFFF, "MQTT binary data longer than 65535 bytes")
        self.writeInteger(UInt16(truncatingIfNeeded: bytes.count))
        self.writeBytes(bytes)
    }

    /// Writes binary data with its two-byte length (spec 1.5.6).
    @inline(__always)
    mutating func writeMQTTBinary(_ bytes: ByteBuffer) {
        precondition(bytes.readableBytes <= 0xFFFF, "MQTT binary data longer than 65535 bytes")
        self.writeInteger(UInt16(truncatingIfNeeded: bytes.readableBytes))
        var copy = bytes
        self.writeBuffer(&copy)
    }
}

/// Writes front to back into bytes a `ByteBuffer` reserved (`writeWithUnsafeMutableBytes`): one capacity
/// check for several fields, where each `ByteBuffer` write checks its own. The caller reserves enough; a
/// write past the bytes traps rather than overwrite memory (unsafe pointers check bounds in debug only).
struct RawBytesWriter {
    private let bytes: UnsafeMutableRawBufferPointer
    /// The bytes written so far.
    private(set) var count = 0

    init(_ bytes: UnsafeMutableRawBufferPointer) { self.bytes = bytes }

    mutating func write(_ byte: UInt8) {
        precondition(count < bytes.count, "write past the reserved bytes")
        bytes[count] = byte
        count += 1
    }

    /// Big-endian, as MQTT's two-byte integers are (spec 1.5.2).
    mutating func write(_ value: UInt16) {
        precondition(bytes.count - count >= 2, "write past the reserved bytes")
        bytes[count] = UInt8(truncatingIfNeeded: value >> 8)
        bytes[count + 1] = UInt8(truncatingIfNeeded: value)
        count += 2
    }

    /// Spec 1.5.5: seven bits a byte, least significant first, the high bit set on all but the last.
    mutating func writeVariableByteInteger(_ value: Int) {
        precondition(value >= 0 && value <= VariableByteInteger.maximum, "variable byte integer out of range: \(value)")
        var rest = value
        repeat {
            var byte = UInt8(truncatingIfNeeded: rest & 0x7F)
            rest >>= 7
            if rest > 0 { byte |= 0x80 }
            write(byte)
        } while rest > 0
    }

    /// The readable bytes of `buffer`, without a length.
    mutating func write(_ buffer: ByteBuffer) {
        let target = UnsafeMutableRawBufferPointer(rebasing: bytes[count...])
        count += buffer.withUnsafeReadableBytes { source in
            precondition(source.count <= target.count, "write past the reserved bytes")
            target.copyMemory(from: source)
            return source.count
        }
    }

    /// The UTF-8 bytes of `string`, without a length.
    mutating func write(_ string: String) {
        let target = UnsafeMutableRawBufferPointer(rebasing: bytes[count...])
        precondition(string.utf8.count <= target.count, "write past the reserved bytes")
        let copied: Void? = string.utf8.withContiguousStorageIfAvailable {
            target.copyMemory(from: UnsafeRawBufferPointer($0))
        }
        if copied == nil { target.copyBytes(from: string.utf8) }
        count += string.utf8.count
    }
}

/// UTF-8 validation for MQTT strings.
enum MQTTUTF8 {
    /// `containsWildcard` only when asked, and only for otherwise valid bytes: a string that is malformed
    /// as well is malformed.
    enum Result { case valid, invalid, containsNull, containsWildcard }

    /// Checks well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates D800–DFFF, nothing above
    /// U+10FFFF) and rejects U+0000; with `rejectingWildcards`, also `+` and `#` (which no multi-byte
    /// sequence contains: its bytes are all ≥ 0x80). ASCII runs are checked eight bytes at a time.
    static func validate(_ bytes: UnsafeRawBufferPointer, rejectingWildcards: Bool = false) -> Result {
        let count = bytes.count
        var wildcard = false
        var i = 0
        while i < count {
            if count - i >= 8 {
                let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if word & 0x8080_8080_8080_8080 == 0 {
                    if hasZeroByte(word) { return .containsNull }
                    if rejectingWildcards, hasZeroByte(word ^ everyByte("+")) || hasZeroByte(word ^ everyByte("#")) {
                        wildcard = true
                    }
                    i += 8
                    continue
                }
            }
            let b0 = bytes[i]
            if b0 < 0x80 {
                if b0 == 0 { return .containsNull }
                if rejectingWildcards && (b0 == UInt8(ascii: "+") || b0 == UInt8(ascii: "#")) { wildcard = true }
                i += 1
                continue
            }
            if b0 < 0xC2 { return .invalid }  // stray continuation byte or overlong two-byte form
            if b0 < 0xE0 {
                guard count - i >= 2, bytes[i + 1] & 0xC0 == 0x80 else { return .invalid }
                i += 2
                continue
            }
            if b0 < 0xF0 {
                guard count - i >= 3 else { return .invalid }
                let b1 = bytes[i + 1]
                let lower: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80  // no overlong three-byte forms
                let upper: UInt8 = b0 == 0xED ? 0x9F : 0xBF  // no surrogates [MQTT-1.5.4-1]
                guard b1 >= lower, b1 <= upper, bytes[i + 2] & 0xC0 == 0x80 else { return .invalid }
                i += 3
                continue
            }
            if b0 < 0xF5 {
                guard count - i >= 4 else { return .invalid }
                let b1 = bytes[i + 1]
                let lower: UInt8 = b0 == 0xF0 ? 0x90 : 0x80  // no overlong four-byte forms
                let upper: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF  // nothing above U+10FFFF
                guard b1 >= lower, b1 <= upper, bytes[i + 2] & 0xC0 == 0x80, bytes[i + 3] & 0xC0 == 0x80 else {
                    return .invalid
                }
                i += 4
                continue
            }
            return .invalid
        }
        return wildcard ? .containsWildcard : .valid
    }

    /// Whether an all-ASCII word has a zero byte: only a zero byte's borrow reaches its high bit.
    @inline(__always)
    private static func hasZeroByte(_ word: UInt64) -> Bool {
        (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080 != 0
    }

    @inline(__always)
    private static func everyByte(_ ascii: Unicode.Scalar) -> UInt64 {
        UInt64(UInt8(ascii: ascii)) &* 0x0101_0101_0101_0101
    }
}

extension MQTTError {
    static func truncated(_ field: StaticString) -> MQTTError {
        .malformed("\(field) is truncated")
    }

    static func topicNameInvalid(_ message: String) -> MQTTError { MQTTError(.topicNameInvalid, message) }
    static func topicFilterInvalid(_ message: String) -> MQTTError { MQTTError(.topicFilterInvalid, message) }
}
