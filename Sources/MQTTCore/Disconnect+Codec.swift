import NIOCore

// DISCONNECT (spec 3.14) and AUTH (spec 3.15). In 3.x DISCONNECT has no body. In 5.0 both carry an
// optional reason code and properties: remaining length 0 means reason 0x00 and no properties
// [MQTT-3.14.2.1] [MQTT-3.15.2.1], 1 means a reason code and no properties.

extension DisconnectPacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> DisconnectPacket {
        guard version == .v5 else {
            guard body.readableBytes == 0 else {
                throw .malformed("DISCONNECT with remaining length \(body.readableBytes)")
            }
            return DisconnectPacket()
        }
        let (reasonCode, properties) = try decodeReasonAndProperties(from: &body, context: .disconnect)
        return DisconnectPacket(reasonCode: reasonCode, properties: properties)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        guard version == .v5 else { return 0 }
        return reasonAndPropertiesSize(reasonCode, properties, context: .disconnect)
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        guard version == .v5 else { return }
        encodeReasonAndProperties(reasonCode, properties, context: .disconnect, into: &buffer)
    }
}

extension AuthPacket {
    static func decode(from body: inout ByteBuffer) throws(MQTTError) -> AuthPacket {
        let (reasonCode, properties) = try decodeReasonAndProperties(from: &body, context: .auth)
        return AuthPacket(reasonCode: reasonCode, properties: properties)
    }

    func bodySize() -> Int { reasonAndPropertiesSize(reasonCode, properties, context: .auth) }

    func encodeBody(into buffer: inout ByteBuffer) {
        encodeReasonAndProperties(reasonCode, properties, context: .auth, into: &buffer)
    }
}

private func decodeReasonAndProperties(
    from body: inout ByteBuffer,
    context: PropertyContext
) throws(MQTTError) -> (ReasonCode, Properties) {
    guard let code = body.readInteger(as: UInt8.self) else { return (.success, .none) }
    if body.readableBytes == 0 { return (ReasonCode(rawValue: code), .none) }
    return (ReasonCode(rawValue: code), try Properties.decode(from: &body, context: context))
}

private func reasonAndPropertiesSize(_ code: ReasonCode, _ properties: Properties, context: PropertyContext) -> Int {
    let list = properties.encodedListSize(context: context)
    if list == 0 { return code == .success ? 0 : 1 }
    return 1 + VariableByteInteger.size(list) + list
}

private func encodeReasonAndProperties(
    _ code: ReasonCode,
    _ properties: Properties,
    context: PropertyContext,
    into buffer: inout ByteBuffer
) {
    let hasProperties = properties.encodedListSize(context: context) > 0
    if !hasProperties && code == .success { return }
    buffer.writeInteger(code.rawValue)
    if hasProperties { properties.encode(into: &buffer, context: context) }
}
