import NIOCore

// A note on MQTT 5 properties (spec 2.2.2). A property list is a variable byte integer length and
// then (identifier, value) pairs. Which identifiers a packet may carry is spec table 2.2.2.2; an
// identifier outside that set, or one the spec does not define, makes the packet malformed (0x81).
// A property that may appear once and appears twice is a protocol error (0x82); only User Property
// repeats everywhere, and Subscription Identifier repeats in PUBLISH only. The encoder writes only the
// properties the packet allows, so a `Properties` value can be reused across packet types safely.

/// MQTT 5 property identifiers (spec 2.2.2.2).
public enum PropertyIdentifier: UInt8, Sendable, Hashable, CaseIterable {
    case payloadFormatIndicator = 0x01
    case messageExpiryInterval = 0x02
    case contentType = 0x03
    case responseTopic = 0x08
    case correlationData = 0x09
    case subscriptionIdentifier = 0x0B
    case sessionExpiryInterval = 0x11
    case assignedClientIdentifier = 0x12
    case serverKeepAlive = 0x13
    case authenticationMethod = 0x15
    case authenticationData = 0x16
    case requestProblemInformation = 0x17
    case willDelayInterval = 0x18
    case requestResponseInformation = 0x19
    case responseInformation = 0x1A
    case serverReference = 0x1C
    case reasonString = 0x1F
    case receiveMaximum = 0x21
    case topicAliasMaximum = 0x22
    case topicAlias = 0x23
    case maximumQoS = 0x24
    case retainAvailable = 0x25
    case userProperty = 0x26
    case maximumPacketSize = 0x27
    case wildcardSubscriptionAvailable = 0x28
    case subscriptionIdentifierAvailable = 0x29
    case sharedSubscriptionAvailable = 0x2A
}

/// Where a property list sits; each place allows its own identifiers (spec table 2.2.2.2).
public enum PropertyContext: Sendable, Hashable, CaseIterable {
    case connect, will, connAck, publish
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    case pubAck
    case subscribe, subAck, unsubscribe, unsubAck, disconnect, auth

    /// Bit `id` set for every property identifier allowed here.
    var allowed: UInt64 {
        switch self {
        case .connect:
            Self.mask(
                .sessionExpiryInterval,
                .authenticationMethod,
                .authenticationData,
                .requestProblemInformation,
                .requestResponseInformation,
                .receiveMaximum,
                .topicAliasMaximum,
                .userProperty,
                .maximumPacketSize
            )
        case .will:
            Self.mask(
                .payloadFormatIndicator,
                .messageExpiryInterval,
                .contentType,
                .responseTopic,
                .correlationData,
                .willDelayInterval,
                .userProperty
            )
        case .connAck:
            Self.mask(
                .sessionExpiryInterval,
                .assignedClientIdentifier,
                .serverKeepAlive,
                .authenticationMethod,
                .authenticationData,
                .responseInformation,
                .serverReference,
                .reasonString,
                .receiveMaximum,
                .topicAliasMaximum,
                .maximumQoS,
                .retainAvailable,
                .userProperty,
                .maximumPacketSize,
                .wildcardSubscriptionAvailable,
                .subscriptionIdentifierAvailable,
                .sharedSubscriptionAvailable
            )
        case .publish:
            Self.mask(
                .payloadFormatIndicator,
                .messageExpiryInterval,
                .contentType,
                .responseTopic,
                .correlationData,
                .subscriptionIdentifier,
                .topicAlias,
                .userProperty
            )
        case .pubAck, .subAck, .unsubAck: Self.mask(.reasonString, .userProperty)
        case .subscribe: Self.mask(.subscriptionIdentifier, .userProperty)
        case .unsubscribe: Self.mask(.userProperty)
        case .disconnect: Self.mask(.sessionExpiryInterval, .serverReference, .reasonString, .userProperty)
        case .auth: Self.mask(.authenticationMethod, .authenticationData, .reasonString, .userProperty)
        }
    }

    /// Whether `identifier` may appear in a property list at this place.
    public func allows(_ identifier: PropertyIdentifier) -> Bool {
        self.allowed & (1 << UInt64(identifier.rawValue)) != 0
    }

    private static func mask(_ ids: PropertyIdentifier...) -> UInt64 {
        var mask: UInt64 = 0
        for id in ids { mask |= 1 << UInt64(id.rawValue) }
        return mask
    }

    var name: String {
        switch self {
        case .connect: "CONNECT"
        case .will: "will properties"
        case .connAck: "CONNACK"
        case .publish: "PUBLISH"
        case .pubAck: "PUBACK/PUBREC/PUBREL/PUBCOMP"
        case .subscribe: "SUBSCRIBE"
        case .subAck: "SUBACK"
        case .unsubscribe: "UNSUBSCRIBE"
        case .unsubAck: "UNSUBACK"
        case .disconnect: "DISCONNECT"
        case .auth: "AUTH"
        }
    }
}

extension Properties.Values {
    /// True when no property is set.
    public var isEmpty: Bool {
        payloadFormatIndicator == nil && messageExpiryInterval == nil && contentType == nil && responseTopic == nil
            && correlationData == nil && subscriptionIdentifiers.isEmpty && sessionExpiryInterval == nil
            && assignedClientIdentifier == nil && serverKeepAlive == nil && authenticationMethod == nil
            && authenticationData == nil && requestProblemInformation == nil && willDelayInterval == nil
            && requestResponseInformation == nil && responseInformation == nil && serverReference == nil
            && reasonString == nil && receiveMaximum == nil && topicAliasMaximum == nil && topicAlias == nil
            && maximumQoS == nil && retainAvailable == nil && userProperties.isEmpty && maximumPacketSize == nil
            && wildcardSubscriptionAvailable == nil && subscriptionIdentifierAvailable == nil
            && sharedSubscriptionAvailable == nil
    }

    /// Only the properties `context` allows (what the encoder writes there).
    func filtered(for context: PropertyContext) -> Properties.Values {
        var copy = Properties.Values()
        let allowed = context.allowed
        func has(_ id: PropertyIdentifier) -> Bool { allowed & (1 << UInt64(id.rawValue)) != 0 }
        if has(.payloadFormatIndicator) { copy.payloadFormatIndicator = payloadFormatIndicator }
        if has(.messageExpiryInterval) { copy.messageExpiryInterval = messageExpiryInterval }
        if has(.contentType) { copy.contentType = contentType }
        if has(.responseTopic) { copy.responseTopic = responseTopic }
        if has(.correlationData) { copy.correlationData = correlationData }
        if has(.subscriptionIdentifier) {
            copy.subscriptionIdentifiers =
                context == .publish ? subscriptionIdentifiers : Array(subscriptionIdentifiers.prefix(1))
        }
        if has(.sessionExpiryInterval) { copy.sessionExpiryInterval = sessionExpiryInterval }
        if has(.assignedClientIdentifier) { copy.assignedClientIdentifier = assignedClientIdentifier }
        if has(.serverKeepAlive) { copy.serverKeepAlive = serverKeepAlive }
        if has(.authenticationMethod) { copy.authenticationMethod = authenticationMethod }
        if has(.authenticationData) { copy.authenticationData = authenticationData }
        if has(.requestProblemInformation) { copy.requestProblemInformation = requestProblemInformation }
        if has(.willDelayInterval) { copy.willDelayInterval = willDelayInterval }
        if has(.requestResponseInformation) { copy.requestResponseInformation = requestResponseInformation }
        if has(.responseInformation) { copy.responseInformation = responseInformation }
        if has(.serverReference) { copy.serverReference = serverReference }
        if has(.reasonString) { copy.reasonString = reasonString }
        if has(.receiveMaximum) { copy.receiveMaximum = receiveMaximum }
        if has(.topicAliasMaximum) { copy.topicAliasMaximum = topicAliasMaximum }
        if has(.topicAlias) { copy.topicAlias = topicAlias }
        if has(.maximumQoS) { copy.maximumQoS = maximumQoS }
        if has(.retainAvailable) { copy.retainAvailable = retainAvailable }
        if has(.userProperty) { copy.userProperties = userProperties }
        if has(.maximumPacketSize) { copy.maximumPacketSize = maximumPacketSize }
        if has(.wildcardSubscriptionAvailable) { copy.wildcardSubscriptionAvailable = wildcardSubscriptionAvailable }
        if has(.subscriptionIdentifierAvailable) {
            copy.subscriptionIdentifierAvailable = subscriptionIdentifierAvailable
        }
        if has(.sharedSubscriptionAvailable) { copy.sharedSubscriptionAvailable = sharedSubscriptionAvailable }
        return copy
    }

    // MARK: Decoding

    /// Reads a property length and the property list after it.
    static func decode(from buffer: inout ByteBuffer, context: PropertyContext) throws(MQTTError) -> Properties.Values {
        let length = try buffer.readMQTTVariableByteInteger("property length")
        if length == 0 { return Properties.Values() }
        guard var list = buffer.readSlice(length: length) else {
            throw .malformed("\(context.name): property length \(length) exceeds the packet")
        }
        let allowed = context.allowed
        var properties = Properties.Values()
        var seen: UInt64 = 0
        while list.readableBytes > 0 {
            // Identifiers are variable byte integers, but all defined ones fit in one byte, so any byte
            // at or above 0x80 (the start of a longer integer) is an unknown identifier.
            let raw = try list.readMQTTUInt8("property identifier")
            guard raw <= 0x2A, allowed & (1 << UInt64(raw)) != 0, let id = PropertyIdentifier(rawValue: raw) else {
                throw .malformed("\(context.name): property 0x\(String(raw, radix: 16)) not allowed [MQTT-2.2.2.2]")
            }
            let bit: UInt64 = 1 << UInt64(raw)
            if seen & bit != 0 && id != .userProperty && !(id == .subscriptionIdentifier && context == .publish) {
                throw .protocolError("\(context.name): property \(id) appears more than once")
            }
            seen |= bit
            try properties.decodeValue(of: id, from: &list, context: context)
        }
        // [MQTT-3.1.2.11.10] (and 3.2.2.3.18, 3.15.2.2.3) Authentication Data needs an Authentication Method.
        if properties.authenticationData != nil && properties.authenticationMethod == nil {
            throw .protocolError("\(context.name): authentication data without an authentication method")
        }
        return properties
    }

    private mutating func decodeValue(
        of id: PropertyIdentifier,
        from list: inout ByteBuffer,
        context: PropertyContext
    ) throws(MQTTError) {
        switch id {
        case .payloadFormatIndicator:
            payloadFormatIndicator = try Self.readFlag(&list, "payload format indicator")
        case .messageExpiryInterval:
            messageExpiryInterval = try list.readMQTTUInt32("message expiry interval")
        case .contentType:
            contentType = try list.readMQTTString("content type")
        case .responseTopic:
            let topic = try list.readMQTTString("response topic")
            do {
                try Topic.validateName(topic)
            } catch {
                // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards.
                throw .protocolError("response topic is not a valid topic name: \(error.message)")
            }
            responseTopic = topic
        case .correlationData:
            correlationData = try list.readMQTTBinary("correlation data")
        case .subscriptionIdentifier:
            let value = try list.readMQTTVariableByteInteger("subscription identifier")
            // [MQTT-3.8.2.1.2] 1...268,435,455; zero is a protocol error.
            guard value != 0 else { throw .protocolError("\(context.name): subscription identifier 0") }
            subscriptionIdentifiers.append(UInt32(value))
        case .sessionExpiryInterval:
            sessionExpiryInterval = try list.readMQTTUInt32("session expiry interval")
        case .assignedClientIdentifier:
            assignedClientIdentifier = try list.readMQTTString("assigned client identifier")
        case .serverKeepAlive:
            serverKeepAlive = try list.readMQTTUInt16("server keep alive")
        case .authenticationMethod:
            authenticationMethod = try list.readMQTTString("authentication method")
        case .authenticationData:
            authenticationData = try list.readMQTTBinary("authentication data")
        case .requestProblemInformation:
            requestProblemInformation = try Self.readFlag(&list, "request problem information")
        case .willDelayInterval:
            willDelayInterval = try list.readMQTTUInt32("will delay interval")
        case .requestResponseInformation:
            requestResponseInformation = try Self.readFlag(&list, "request response information")
        case .responseInformation:
            responseInformation = try list.readMQTTString("response information")
        case .serverReference:
            serverReference = try list.readMQTTString("server reference")
        case .reasonString:
            reasonString = try list.readMQTTString("reason string")
        case .receiveMaximum:
            let value = try list.readMQTTUInt16("receive maximum")
            // [MQTT-3.1.2.11.3] / [MQTT-3.2.2.3.3]: zero is a protocol error.
            guard value != 0 else { throw .protocolError("\(context.name): receive maximum 0") }
            receiveMaximum = value
        case .topicAliasMaximum:
            topicAliasMaximum = try list.readMQTTUInt16("topic alias maximum")
        case .topicAlias:
            // Zero is a protocol error too [MQTT-3.3.2-8], but the broker reports it (0x94), so keep it.
            topicAlias = try list.readMQTTUInt16("topic alias")
        case .maximumQoS:
            maximumQoS = try Self.readFlag(&list, "maximum QoS")
        case .retainAvailable:
            retainAvailable = try Self.readFlag(&list, "retain available")
        case .userProperty:
            let name = try list.readMQTTString("user property name")
            let value = try list.readMQTTString("user property value")
            userProperties.append(UserProperty(name, value))
        case .maximumPacketSize:
            let value = try list.readMQTTUInt32("maximum packet size")
            // [MQTT-3.1.2.11.4] / [MQTT-3.2.2.3.6]: zero is a protocol error.
            guard value != 0 else { throw .protocolError("\(context.name): maximum packet size 0") }
            maximumPacketSize = value
        case .wildcardSubscriptionAvailable:
            wildcardSubscriptionAvailable = try Self.readFlag(&list, "wildcard subscription available")
        case .subscriptionIdentifierAvailable:
            subscriptionIdentifierAvailable = try Self.readFlag(&list, "subscription identifier available")
        case .sharedSubscriptionAvailable:
            sharedSubscriptionAvailable = try Self.readFlag(&list, "shared subscription available")
        }
    }

    /// A byte property whose only values are 0 and 1; anything else is a protocol error (spec 3.1.2.11,
    /// 3.2.2.3, 3.3.2.3.2).
    private static func readFlag(_ list: inout ByteBuffer, _ field: StaticString) throws(MQTTError) -> UInt8 {
        let value = try list.readMQTTUInt8(field)
        guard value <= 1 else { throw .protocolError("\(field) must be 0 or 1, is \(value)") }
        return value
    }

    // MARK: Encoding

    /// Bytes of the property list itself (without its length), counting only what `context` allows.
    func encodedListSize(context: PropertyContext) -> Int {
        let allowed = context.allowed
        @inline(__always) func has(_ id: PropertyIdentifier) -> Bool { allowed & (1 << UInt64(id.rawValue)) != 0 }
        var size = 0
        if payloadFormatIndicator != nil, has(.payloadFormatIndicator) { size += 2 }
        if messageExpiryInterval != nil, has(.messageExpiryInterval) { size += 5 }
        if let contentType, has(.contentType) { size += 3 + contentType.utf8.count }
        if let responseTopic, has(.responseTopic) { size += 3 + responseTopic.utf8.count }
        if let correlationData, has(.correlationData) { size += 3 + correlationData.count }
        if !subscriptionIdentifiers.isEmpty, has(.subscriptionIdentifier) {
            if context == .publish {
                for id in subscriptionIdentifiers { size += 1 + VariableByteInteger.size(Int(id)) }
            } else {
                size += 1 + VariableByteInteger.size(Int(subscriptionIdentifiers[0]))
            }
        }
        if sessionExpiryInterval != nil, has(.sessionExpiryInterval) { size += 5 }
        if let assignedClientIdentifier, has(.assignedClientIdentifier) {
            size += 3 + assignedClientIdentifier.utf8.count
        }
        if serverKeepAlive != nil, has(.serverKeepAlive) { size += 3 }
        if let authenticationMethod, has(.authenticationMethod) { size += 3 + authenticationMethod.utf8.count }
        if let authenticationData, has(.authenticationData) { size += 3 + authenticationData.count }
        if requestProblemInformation != nil, has(.requestProblemInformation) { size += 2 }
        if willDelayInterval != nil, has(.willDelayInterval) { size += 5 }
        if requestResponseInformation != nil, has(.requestResponseInformation) { size += 2 }
        if let responseInformation, has(.responseInformation) { size += 3 + responseInformation.utf8.count }
        if let serverReference, has(.serverReference) { size += 3 + serverReference.utf8.count }
        if let reasonString, has(.reasonString) { size += 3 + reasonString.utf8.count }
        if receiveMaximum != nil, has(.receiveMaximum) { size += 3 }
        if topicAliasMaximum != nil, has(.topicAliasMaximum) { size += 3 }
        if topicAlias != nil, has(.topicAlias) { size += 3 }
        if maximumQoS != nil, has(.maximumQoS) { size += 2 }
        if retainAvailable != nil, has(.retainAvailable) { size += 2 }
        if has(.userProperty) {
            for property in userProperties { size += 5 + property.name.utf8.count + property.value.utf8.count }
        }
        if maximumPacketSize != nil, has(.maximumPacketSize) { size += 5 }
        if wildcardSubscriptionAvailable != nil, has(.wildcardSubscriptionAvailable) { size += 2 }
        if subscriptionIdentifierAvailable != nil, has(.subscriptionIdentifierAvailable) { size += 2 }
        if sharedSubscriptionAvailable != nil, has(.sharedSubscriptionAvailable) { size += 2 }
        return size
    }

    /// Bytes on the wire: the property length and the list.
    @inline(__always)
    func encodedSize(context: PropertyContext) -> Int {
        let list = encodedListSize(context: context)
        return VariableByteInteger.size(list) + list
    }

    /// Writes the property length and the properties `context` allows, in identifier order (CONNACK: in
    /// Mosquitto's order, see `encodeConnAckList`).
    func encode(into buffer: inout ByteBuffer, context: PropertyContext) {
        let list = encodedListSize(context: context)
        buffer.writeMQTTVariableByteInteger(list)
        if list == 0 { return }
        if context == .connAck {
            encodeConnAckList(into: &buffer)
        } else {
            encodeList(into: &buffer, context: context)
        }
    }

    /// CONNACK properties in the order Mosquitto 2.0 sends them (topic alias maximum, server keep alive,
    /// assigned client identifier, authentication, retain available, maximum packet size, receive maximum,
    /// maximum QoS), then the rest in identifier order. Any order is legal; test rigs and captures that compare
    /// bytes with Mosquitto's expect this one.
    private func encodeConnAckList(into buffer: inout ByteBuffer) {
        var rest = self
        func take<Value>(_ field: WritableKeyPath<Properties.Values, Value?>) {
            guard let value = rest[keyPath: field] else { return }
            var one = Properties.Values()
            one[keyPath: field] = value
            one.encodeList(into: &buffer, context: .connAck)
            rest[keyPath: field] = nil
        }
        take(\.topicAliasMaximum)
        take(\.serverKeepAlive)
        take(\.assignedClientIdentifier)
        take(\.authenticationMethod)
        take(\.authenticationData)
        take(\.retainAvailable)
        take(\.maximumPacketSize)
        take(\.receiveMaximum)
        take(\.maximumQoS)
        rest.encodeList(into: &buffer, context: .connAck)
    }

    /// Writes the properties `context` allows, in identifier order, without the length.
    private func encodeList(into buffer: inout ByteBuffer, context: PropertyContext) {
        let allowed = context.allowed
        @inline(__always) func has(_ id: PropertyIdentifier) -> Bool { allowed & (1 << UInt64(id.rawValue)) != 0 }
        @inline(__always) func id(_ id: PropertyIdentifier) { buffer.writeInteger(id.rawValue) }
        if let payloadFormatIndicator, has(.payloadFormatIndicator) {
            id(.payloadFormatIndicator)
            buffer.writeInteger(payloadFormatIndicator)
        }
        if let messageExpiryInterval, has(.messageExpiryInterval) {
            id(.messageExpiryInterval)
            buffer.writeInteger(messageExpiryInterval)
        }
        if let contentType, has(.contentType) {
            id(.contentType)
            buffer.writeMQTTString(contentType)
        }
        if let responseTopic, has(.responseTopic) {
            id(.responseTopic)
            buffer.writeMQTTString(responseTopic)
        }
        if let correlationData, has(.correlationData) {
            id(.correlationData)
            buffer.writeMQTTBinary(correlationData)
        }
        if !subscriptionIdentifiers.isEmpty, has(.subscriptionIdentifier) {
            for identifier in context == .publish ? subscriptionIdentifiers[...] : subscriptionIdentifiers.prefix(1) {
                id(.subscriptionIdentifier)
                buffer.writeMQTTVariableByteInteger(Int(identifier))
            }
        }
        if let sessionExpiryInterval, has(.sessionExpiryInterval) {
            id(.sessionExpiryInterval)
            buffer.writeInteger(sessionExpiryInterval)
        }
        if let assignedClientIdentifier, has(.assignedClientIdentifier) {
            id(.assignedClientIdentifier)
            buffer.writeMQTTString(assignedClientIdentifier)
        }
        if let serverKeepAlive, has(.serverKeepAlive) {
            id(.serverKeepAlive)
            buffer.writeInteger(serverKeepAlive)
        }
        if let authenticationMethod, has(.authenticationMethod) {
            id(.authenticationMethod)
            buffer.writeMQTTString(authenticationMethod)
        }
        if let authenticationData, has(.authenticationData) {
            id(.authenticationData)
            buffer.writeMQTTBinary(authenticationData)
        }
        if let requestProblemInformation, has(.requestProblemInformation) {
            id(.requestProblemInformation)
            buffer.writeInteger(requestProblemInformation)
        }
        if let willDelayInterval, has(.willDelayInterval) {
            id(.willDelayInterval)
            buffer.writeInteger(willDelayInterval)
        }
        if let requestResponseInformation, has(.requestResponseInformation) {
            id(.requestResponseInformation)
            buffer.writeInteger(requestResponseInformation)
        }
        if let responseInformation, has(.responseInformation) {
            id(.responseInformation)
            buffer.writeMQTTString(responseInformation)
        }
        if let serverReference, has(.serverReference) {
            id(.serverReference)
            buffer.writeMQTTString(serverReference)
        }
        if let reasonString, has(.reasonString) {
            id(.reasonString)
            buffer.writeMQTTString(reasonString)
        }
        if let receiveMaximum, has(.receiveMaximum) {
            id(.receiveMaximum)
            buffer.writeInteger(receiveMaximum)
        }
        if let topicAliasMaximum, has(.topicAliasMaximum) {
            id(.topicAliasMaximum)
            buffer.writeInteger(topicAliasMaximum)
        }
        if let topicAlias, has(.topicAlias) {
            id(.topicAlias)
            buffer.writeInteger(topicAlias)
        }
        if let maximumQoS, has(.maximumQoS) {
            id(.maximumQoS)
            buffer.writeInteger(maximumQoS)
        }
        if let retainAvailable, has(.retainAvailable) {
            id(.retainAvailable)
            buffer.writeInteger(retainAvailable)
        }
        if has(.userProperty) {
            for property in userProperties {
                id(.userProperty)
                buffer.writeMQTTString(property.name)
                buffer.writeMQTTString(property.value)
            }
        }
        if let maximumPacketSize, has(.maximumPacketSize) {
            id(.maximumPacketSize)
            buffer.writeInteger(maximumPacketSize)
        }
        if let wildcardSubscriptionAvailable, has(.wildcardSubscriptionAvailable) {
            id(.wildcardSubscriptionAvailable)
            buffer.writeInteger(wildcardSubscriptionAvailable)
        }
        if let subscriptionIdentifierAvailable, has(.subscriptionIdentifierAvailable) {
            id(.subscriptionIdentifierAvailable)
            buffer.writeInteger(subscriptionIdentifierAvailable)
        }
        if let sharedSubscriptionAvailable, has(.sharedSubscriptionAvailable) {
            id(.sharedSubscriptionAvailable)
            buffer.writeInteger(sharedSubscriptionAvailable)
        }
    }
}
