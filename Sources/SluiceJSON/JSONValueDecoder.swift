/// Decodes `Decodable` types from a parsed `JSONValue` with the stdlib's Codable machinery, so that structs
/// written for Foundation's JSONDecoder move over unchanged. Numbers follow JSONDecoder: an integer field
/// takes `7`, `7.0` or `7e0` but not `7.5` or a value outside its type; a missing key of a non-optional
/// property is `keyNotFound`, `null` there is `valueNotFound`.
public struct JSONValueDecoder: Sendable {
    /// Reads snake_case keys into camelCase properties (JSONDecoder's `.convertFromSnakeCase`, see
    /// `JSONKeyCase.camel`).
    public var snakeCaseKeys: Bool

    public init(snakeCaseKeys: Bool = false) { self.snakeCaseKeys = snakeCaseKeys }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        let keyed = snakeCaseKeys ? value.mappingKeys { JSONKeyCase.camel(fromSnake: $0) } : value
        return try T(from: ValueDecoder(value: keyed, codingPath: []))
    }

    /// Parses and decodes in one step; parse errors are thrown as `JSONParseError`.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try decode(type, from: try JSONValue(parsing: bytes))
    }
}

/// A coding key for array positions and for keys rebuilt from a path.
struct JSONIndexKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw DecodingError.typeMismatch(
                JSONObject.self,
                .init(codingPath: codingPath, debugDescription: "expected an object, found \(value.kindName)")
            )
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else {
            throw DecodingError.typeMismatch(
                [JSONValue].self,
                .init(codingPath: codingPath, debugDescription: "expected an array, found \(value.kindName)")
            )
        }
        return UnkeyedContainer(elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueContainer(value: value, codingPath: codingPath)
    }
}

/// The scalar conversions every container kind shares.
private enum Scalars {
    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, at path: [any CodingKey]) throws -> T {
        switch type {
        case is Bool.Type:
            guard case .bool(let flag) = value else { throw mismatch(type, value, path) }
            return flag as! T
        case is String.Type:
            guard case .string(let text) = value else { throw mismatch(type, value, path) }
            return text as! T
        case is Double.Type:
            guard let number = value.double else { throw mismatch(type, value, path) }
            return number as! T
        case is Float.Type:
            guard let number = value.double else { throw mismatch(type, value, path) }
            return Float(number) as! T
        case is Int.Type: return try integer(Int.self, value, path) as! T
        case is Int8.Type: return try integer(Int8.self, value, path) as! T
        case is Int16.Type: return try integer(Int16.self, value, path) as! T
        case is Int32.Type: return try integer(Int32.self, value, path) as! T
        case is Int64.Type: return try integer(Int64.self, value, path) as! T
        case is UInt.Type: return try integer(UInt.self, value, path) as! T
        case is UInt8.Type: return try integer(UInt8.self, value, path) as! T
        case is UInt16.Type: return try integer(UInt16.self, value, path) as! T
        case is UInt32.Type: return try integer(UInt32.self, value, path) as! T
        case is UInt64.Type: return try integer(UInt64.self, value, path) as! T
        case is JSONValue.Type: return value as! T
        default:
            if value.isNull, !(T.self is any OptionalMarker.Type) {
                throw DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "null"))
            }
            return try T(from: ValueDecoder(value: value, codingPath: path))
        }
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ value: JSONValue, _ path: [any CodingKey]) throws -> I {
        switch value {
        case .int(let number):
            if let exact = I(exactly: number) { return exact }
        case .unsigned(let number):
            if let exact = I(exactly: number) { return exact }
        case .double(let number):
            if let exact = I(exactly: number) { return exact }
        case .null:
            throw DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "null"))
        default:
            throw mismatch(type, value, path)
        }
        throw DecodingError.dataCorrupted(
            .init(codingPath: path, debugDescription: "number does not fit \(type)")
        )
    }

    static func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: [any CodingKey]) -> DecodingError {
        if value.isNull {
            return .valueNotFound(type, .init(codingPath: path, debugDescription: "null"))
        }
        return .typeMismatch(
            type,
            .init(codingPath: path, debugDescription: "expected \(type), found \(value.kindName)")
        )
    }
}

/// Lets the decoder pass `null` through to an `Optional`'s own `init(from:)`.
private protocol OptionalMarker {}
extension Optional: OptionalMarker {}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]

    var allKeys: [Key] { object.members.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(for key: Key) throws -> JSONValue {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(for: key).isNull }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try Scalars.decode(type, from: try value(for: key), at: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try ValueDecoder(value: try value(for: key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: try value(for: key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        ValueDecoder(value: object["super"] ?? .null, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ValueDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let elements: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(elements: [JSONValue], codingPath: [any CodingKey]) {
        self.elements = elements
        self.codingPath = codingPath
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    private var currentPath: [any CodingKey] { codingPath + [JSONIndexKey(intValue: currentIndex)] }

    private func current<T>(_ type: T.Type) throws -> JSONValue {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: currentPath, debugDescription: "past the end"))
        }
        return elements[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard try current(JSONValue.self).isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let decoded = try Scalars.decode(type, from: try current(type), at: currentPath)
        currentIndex += 1
        return decoded
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        let container = try ValueDecoder(value: try current(JSONObject.self), codingPath: currentPath)
            .container(keyedBy: type)
        currentIndex += 1
        return container
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let container = try ValueDecoder(value: try current([JSONValue].self), codingPath: currentPath)
            .unkeyedContainer()
        currentIndex += 1
        return container
    }

    mutating func superDecoder() throws -> any Decoder {
        let decoder = ValueDecoder(value: try current(JSONValue.self), codingPath: currentPath)
        currentIndex += 1
        return decoder
    }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value.isNull }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try Scalars.decode(type, from: value, at: codingPath) }
}

extension JSONValue {
    /// For error messages: `object`, `string`, ….
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .unsigned, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
