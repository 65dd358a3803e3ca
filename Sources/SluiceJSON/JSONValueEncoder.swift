/// Encodes `Encodable` types into a `JSONValue` with the stdlib's Codable machinery, the counterpart of
/// `JSONValueDecoder`. Nil optionals are left out (as JSONEncoder leaves them); `sortingKeys` orders every
/// object's members by key (JSONEncoder's `.sortedKeys` for the ASCII keys of the protocols here), otherwise
/// they stay in the order `encode(to:)` wrote them.
public struct JSONValueEncoder: Sendable {
    public var sortingKeys: Bool
    /// Writes every key in snake_case (JSONEncoder's `.convertToSnakeCase`, see `JSONKeyCase.snake`);
    /// keys are sorted after the conversion, as JSONEncoder sorts them. Unlike JSONEncoder it converts the
    /// keys of `[String: T]` dictionaries too: keep this off for documents that carry dictionaries.
    public var snakeCaseKeys: Bool

    public init(sortingKeys: Bool = false, snakeCaseKeys: Bool = false) {
        self.sortingKeys = sortingKeys
        self.snakeCaseKeys = snakeCaseKeys
    }

    public func encode(_ value: some Encodable) throws -> JSONValue {
        let root = EncodingNode()
        try encodeValue(value, into: root, codingPath: [])
        guard snakeCaseKeys else { return root.finished(sortingKeys: sortingKeys) }
        let snake = root.finished(sortingKeys: false).mappingKeys(JSONKeyCase.snake)
        return sortingKeys ? snake.sortingKeys() : snake
    }

    /// Compact JSON text, slashes unescaped.
    public func encodeText(_ value: some Encodable) throws -> [UInt8] {
        Array(try encode(value).serialized().utf8)
    }
}

/// One value under construction: containers hand out nodes that nested encoders fill in later.
final class EncodingNode {
    enum Content {
        case empty
        case scalar(JSONValue)
        case object(keys: [String], nodes: [String: EncodingNode])
        case array([EncodingNode])
    }

    var content: Content = .empty

    func finished(sortingKeys: Bool) -> JSONValue {
        switch content {
        case .empty: return .object(JSONObject())  // an Encodable that wrote nothing: JSONEncoder gives {}
        case .scalar(let value): return value
        case .array(let nodes): return .array(nodes.map { $0.finished(sortingKeys: sortingKeys) })
        case .object(let keys, let nodes):
            let ordered = sortingKeys ? keys.sorted() : keys
            return .object(JSONObject(ordered.map { ($0, nodes[$0]!.finished(sortingKeys: sortingKeys)) }))
        }
    }

    /// The member node for `key`, making this node an object if it is not one yet.
    func member(_ key: String) -> EncodingNode {
        var keys: [String] = []
        var nodes: [String: EncodingNode] = [:]
        if case .object(let existingKeys, let existingNodes) = content {
            keys = existingKeys
            nodes = existingNodes
        }
        if let node = nodes[key] { return node }
        let node = EncodingNode()
        keys.append(key)
        nodes[key] = node
        content = .object(keys: keys, nodes: nodes)
        return node
    }

    func makeObject() {
        if case .object = content { return }
        content = .object(keys: [], nodes: [:])
    }

    func appendElement() -> EncodingNode {
        var nodes: [EncodingNode] = []
        if case .array(let existing) = content { nodes = existing }
        let node = EncodingNode()
        nodes.append(node)
        content = .array(nodes)
        return node
    }

    func makeArray() {
        if case .array = content { return }
        content = .array([])
    }

    var elementCount: Int {
        if case .array(let nodes) = content { return nodes.count }
        return 0
    }
}

private func encodeValue(_ value: some Encodable, into node: EncodingNode, codingPath: [any CodingKey]) throws {
    switch value {
    case let flag as Bool: node.content = .scalar(.bool(flag))
    case let text as String: node.content = .scalar(.string(text))
    case let number as Double: node.content = .scalar(try finite(number, codingPath))
    case let number as Float: node.content = .scalar(try finite(Double(number), codingPath))
    case let number as Int: node.content = .scalar(.int(Int64(number)))
    case let number as Int8: node.content = .scalar(.int(Int64(number)))
    case let number as Int16: node.content = .scalar(.int(Int64(number)))
    case let number as Int32: node.content = .scalar(.int(Int64(number)))
    case let number as Int64: node.content = .scalar(.int(number))
    case let number as UInt: node.content = .scalar(unsigned(UInt64(number)))
    case let number as UInt8: node.content = .scalar(.int(Int64(number)))
    case let number as UInt16: node.content = .scalar(.int(Int64(number)))
    case let number as UInt32: node.content = .scalar(.int(Int64(number)))
    case let number as UInt64: node.content = .scalar(unsigned(number))
    case let json as JSONValue: node.content = .scalar(json)
    default: try value.encode(to: ValueEncoder(node: node, codingPath: codingPath))
    }
}

private func unsigned(_ number: UInt64) -> JSONValue {
    if let exact = Int64(exactly: number) { return .int(exact) }
    return .unsigned(number)
}

private func finite(_ number: Double, _ codingPath: [any CodingKey]) throws -> JSONValue {
    guard number.isFinite else {
        throw EncodingError.invalidValue(number, .init(codingPath: codingPath, debugDescription: "not a finite number"))
    }
    return .double(number)
}

private struct ValueEncoder: Encoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.makeObject()
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.makeArray()
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(node: node, codingPath: codingPath)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { node.member(key.stringValue).content = .scalar(.null) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try encodeValue(value, into: node.member(key.stringValue), codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        ValueEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        ValueEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        ValueEncoder(node: node.member("super"), codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        ValueEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    var count: Int { node.elementCount }

    private var nextPath: [any CodingKey] { codingPath + [JSONIndexKey(intValue: count)] }

    mutating func encodeNil() throws { node.appendElement().content = .scalar(.null) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = nextPath
        try encodeValue(value, into: node.appendElement(), codingPath: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        let path = nextPath
        return ValueEncoder(node: node.appendElement(), codingPath: path).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        return ValueEncoder(node: node.appendElement(), codingPath: path).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let path = nextPath
        return ValueEncoder(node: node.appendElement(), codingPath: path)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { node.content = .scalar(.null) }

    mutating func encode<T: Encodable>(_ value: T) throws { try encodeValue(value, into: node, codingPath: codingPath) }
}
