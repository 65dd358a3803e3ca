/// Why a JSON text was refused, and the byte offset (from 0) where the parser saw it.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The text ended inside a value (or was empty).
        case unexpectedEnd
        /// A byte that cannot start or continue a value here (`NaN`, `'`, a trailing comma's `]`, …).
        case unexpectedByte(UInt8)
        /// A complete value followed by more than whitespace.
        case trailingData
        /// A backslash followed by something other than `" \ / b f n r t u`.
        case invalidEscape
        /// `\u` not followed by four hex digits.
        case invalidUnicodeEscape
        /// A `\uD800`–`\uDFFF` escape that is not a high surrogate followed by a low one.
        case loneSurrogate
        /// A byte below 0x20 inside a string: JSON requires those escaped.
        case controlCharacter(UInt8)
        /// Bytes inside a string that are not UTF-8.
        case invalidUTF8
        /// `01`, `-00`: JSON numbers have no leading zeros.
        case leadingZero
        /// A `-`, `.` or exponent without the digits it needs.
        case invalidNumber
        /// A number too large for a Double (`1e400`).
        case numberOutOfRange
        /// Arrays and objects nested deeper than the parser's limit.
        case tooDeep(limit: Int)
        /// The same key twice in one object: RFC 8259 leaves its meaning open, so it is refused.
        case duplicateKey(String)
    }

    public let reason: Reason
    public let offset: Int

    public init(_ reason: Reason, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONValue {
    /// The default nesting limit: the GWMP and ChirpStack documents nest four deep; a datagram of brackets
    /// must not take the stack.
    public static let defaultMaxDepth = 64

    /// Parses one JSON text (RFC 8259, UTF-8, any value at the top level, surrounding whitespace allowed).
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = JSONValue.defaultMaxDepth)
        throws(JSONParseError)
    {
        var parser = JSONParser(bytes: Array(bytes), maxDepth: maxDepth)
        self = try parser.parseDocument()
    }

    public init(parsing text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) {
        try self.init(parsing: text.utf8, maxDepth: maxDepth)
    }
}

/// A recursive-descent parser over bytes; its recursion is bounded by `maxDepth`.
struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var position = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard position == bytes.count else { throw JSONParseError(.trailingData, at: position) }
        return value
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): position += 1
            default: return
            }
        }
    }

    /// The byte at `position`, or `unexpectedEnd`.
    private func current() throws(JSONParseError) -> UInt8 {
        guard position < bytes.count else { throw JSONParseError(.unexpectedEnd, at: position) }
        return bytes[position]
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        let byte = try current()
        switch byte {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return .array(try parseArray(depth: depth + 1))
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw JSONParseError(.unexpectedByte(byte), at: position)
        }
    }

    private mutating func expectLiteral(_ word: StaticString) throws(JSONParseError) {
        for expected in UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount) {
            let byte = try current()
            guard byte == expected else { throw JSONParseError(.unexpectedByte(byte), at: position) }
            position += 1
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONObject {
        guard depth <= maxDepth else { throw JSONParseError(.tooDeep(limit: maxDepth), at: position) }
        position += 1  // {
        var object = JSONObject()
        var keys = Set<String>()
        skipWhitespace()
        if try current() == UInt8(ascii: "}") {
            position += 1
            return object
        }
        while true {
            let keyOffset = position
            let byte = try current()
            guard byte == UInt8(ascii: "\"") else { throw JSONParseError(.unexpectedByte(byte), at: position) }
            let key = try parseString()
            guard keys.insert(key).inserted else { throw JSONParseError(.duplicateKey(key), at: keyOffset) }
            skipWhitespace()
            let colon = try current()
            guard colon == UInt8(ascii: ":") else { throw JSONParseError(.unexpectedByte(colon), at: position) }
            position += 1
            skipWhitespace()
            object.appendUnchecked(key, try parseValue(depth: depth))
            skipWhitespace()
            let separator = try current()
            position += 1
            switch separator {
            case UInt8(ascii: ","): skipWhitespace()
            case UInt8(ascii: "}"): return object
            default: throw JSONParseError(.unexpectedByte(separator), at: position - 1)
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> [JSONValue] {
        guard depth <= maxDepth else { throw JSONParseError(.tooDeep(limit: maxDepth), at: position) }
        position += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if try current() == UInt8(ascii: "]") {
            position += 1
            return elements
        }
        while true {
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            let separator = try current()
            position += 1
            switch separator {
            case UInt8(ascii: ","): skipWhitespace()
            case UInt8(ascii: "]"): return elements
            default: throw JSONParseError(.unexpectedByte(separator), at: position - 1)
            }
        }
    }

    // MARK: Strings

    private mutating func parseString() throws(JSONParseError) -> String {
        position += 1  // opening quote
        var text: [UInt8] = []
        while true {
            let byte = try current()
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: text, as: UTF8.self)  // validated byte by byte below
            case UInt8(ascii: "\\"):
                try parseEscape(into: &text)
            case 0..<0x20:
                throw JSONParseError(.controlCharacter(byte), at: position)
            case 0x20..<0x80:
                text.append(byte)
                position += 1
            default:
                try copyUTF8Sequence(into: &text)
            }
        }
    }

    /// One escape starting at the backslash; errors name the backslash's offset.
    private mutating func parseEscape(into text: inout [UInt8]) throws(JSONParseError) {
        let start = position
        position += 1
        let letter = try current()
        position += 1
        let simple: UInt8?
        switch letter {
        case UInt8(ascii: "\""): simple = UInt8(ascii: "\"")
        case UInt8(ascii: "\\"): simple = UInt8(ascii: "\\")
        case UInt8(ascii: "/"): simple = UInt8(ascii: "/")
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"): simple = nil
        default: throw JSONParseError(.invalidEscape, at: start)
        }
        if let simple {
            text.append(simple)
            return
        }
        let unit = try hexQuad(escapeAt: start)
        let scalarValue: UInt32
        switch unit {
        case 0xD800..<0xDC00:
            // A high surrogate counts only with `\u` + a low surrogate right after it.
            guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                bytes[position + 1] == UInt8(ascii: "u")
            else { throw JSONParseError(.loneSurrogate, at: start) }
            let lowStart = position
            position += 2
            let low = try hexQuad(escapeAt: lowStart)
            guard (0xDC00..<0xE000).contains(low) else { throw JSONParseError(.loneSurrogate, at: start) }
            scalarValue = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
        case 0xDC00..<0xE000:
            throw JSONParseError(.loneSurrogate, at: start)
        default:
            scalarValue = unit
        }
        // Never nil: surrogates were handled above and the value is below 0x110000.
        guard let scalar = Unicode.Scalar(scalarValue) else { throw JSONParseError(.loneSurrogate, at: start) }
        text.append(contentsOf: UTF8.encode(scalar)!)
    }

    /// Four hex digits at `position`.
    private mutating func hexQuad(escapeAt start: Int) throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = try current()
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONParseError(.invalidUnicodeEscape, at: start)
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// One multi-byte UTF-8 sequence, checked against RFC 3629's table (no overlongs, no surrogates, nothing
    /// past U+10FFFF); errors name the lead byte's offset.
    private mutating func copyUTF8Sequence(into text: inout [UInt8]) throws(JSONParseError) {
        let start = position
        let lead = bytes[position]
        let continuations: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: continuations = 1
        case 0xE0:
            continuations = 2
            secondRange = 0xA0...0xBF
        case 0xED:
            continuations = 2
            secondRange = 0x80...0x9F
        case 0xE1...0xEF: continuations = 2
        case 0xF0:
            continuations = 3
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: continuations = 3
        case 0xF4:
            continuations = 3
            secondRange = 0x80...0x8F
        default: throw JSONParseError(.invalidUTF8, at: start)
        }
        guard start + continuations < bytes.count else { throw JSONParseError(.invalidUTF8, at: start) }
        for index in 1...continuations {
            let byte = bytes[start + index]
            guard (index == 1 ? secondRange : 0x80...0xBF).contains(byte) else {
                throw JSONParseError(.invalidUTF8, at: start)
            }
        }
        text.append(contentsOf: bytes[start...(start + continuations)])
        position = start + continuations + 1
    }

    // MARK: Numbers

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        var isInteger = true
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        let first = try current()
        switch first {
        case UInt8(ascii: "0"):
            position += 1
            if position < bytes.count, isDigit(bytes[position]) {
                throw JSONParseError(.leadingZero, at: position - 1)
            }
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            skipDigits()
        default:
            throw JSONParseError(.invalidNumber, at: position)
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            try requireDigits()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            try requireDigits()
        }
        // The grammar is checked above, so the standard library only converts (it would also take "nan").
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if isInteger, let integer = Int64(text) { return .int(integer) }
        if isInteger, let integer = UInt64(text) { return .unsigned(integer) }
        guard let number = Double(text), number.isFinite else {
            throw JSONParseError(.numberOutOfRange, at: start)
        }
        return .double(number)
    }

    private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private mutating func skipDigits() {
        while position < bytes.count, isDigit(bytes[position]) { position += 1 }
    }

    private mutating func requireDigits() throws(JSONParseError) {
        let byte = try current()
        guard isDigit(byte) else { throw JSONParseError(.invalidNumber, at: position) }
        skipDigits()
    }
}
