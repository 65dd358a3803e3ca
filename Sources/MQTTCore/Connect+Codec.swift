import NIOCore

// CONNECT (spec 3.1). Variable header: protocol name, level, flags, keep alive, (5.0) properties.
// Payload: client identifier, (will) [5.0 will properties] topic and payload, user name, password.
// The protocol version comes from the packet itself, so CONNECT decodes with no version known.

extension ConnectPacket {
    private enum Flag {
        static let reserved: UInt8 = 0x01
        static let cleanStart: UInt8 = 0x02
        static let will: UInt8 = 0x04
        static let willQoSShift: UInt8 = 3
        static let willRetain: UInt8 = 0x20
        static let password: UInt8 = 0x40
        static let username: UInt8 = 0x80
    }

    static func decode(from body: inout ByteBuffer) throws(MQTTError) -> ConnectPacket {
        let (version, isBridge) = try decodeProtocol(from: &body)
        let flags = try body.readMQTTUInt8("CONNECT flags")
        // [MQTT-3.1.2-3] the reserved flag is zero.
        guard flags & Flag.reserved == 0 else { throw .malformed("CONNECT reserved flag is set [MQTT-3.1.2-3]") }
        let hasWill = flags & Flag.will != 0
        let willQoSBits = (flags >> Flag.willQoSShift) & 0x03
        let willRetain = flags & Flag.willRetain != 0
        let hasPassword = flags & Flag.password != 0
        let hasUsername = flags & Flag.username != 0
        if !hasWill {
            // [MQTT-3.1.2-11] / [MQTT-3.1.2-13] (5.0; 3.1.2-13/-15 in 3.1.1): no will, no will QoS or retain.
            guard willQoSBits == 0 else { throw .malformed("CONNECT will QoS set without a will [MQTT-3.1.2-11]") }
            guard !willRetain else { throw .malformed("CONNECT will retain set without a will [MQTT-3.1.2-13]") }
        }
        // [MQTT-3.1.2-12] will QoS 3 is malformed.
        guard let willQoS = QoS(rawValue: willQoSBits) else { throw .malformed("CONNECT will QoS 3 [MQTT-3.1.2-12]") }
        // [MQTT-3.1.2-22] (3.1.1): a password needs a user name. MQTT 5 dropped the rule.
        if version < .v5 && hasPassword && !hasUsername {
            throw .malformed("CONNECT password flag without user name flag [MQTT-3.1.2-22]")
        }
        let keepAlive = try body.readMQTTUInt16("CONNECT keep alive")
        let properties = version == .v5 ? try Properties.decode(from: &body, context: .connect) : .none

        // Payload. An empty client identifier is allowed here; the server decides (spec 3.1.3.1).
        let clientIdentifier = try body.readMQTTString("CONNECT client identifier")
        var will: Will?
        if hasWill {
            let willProperties = version == .v5 ? try Properties.decode(from: &body, context: .will) : .none
            let topic = try body.readMQTTString("CONNECT will topic")
            try Topic.validateName(topic)
            let payload = try body.readMQTTBinarySlice("CONNECT will payload")
            will = Will(topic: topic, payload: payload, qos: willQoS, retain: willRetain, properties: willProperties)
        }
        let username = hasUsername ? try body.readMQTTString("CONNECT user name") : nil
        let password = hasPassword ? try body.readMQTTBinary("CONNECT password") : nil
        return ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientIdentifier,
            cleanStart: flags & Flag.cleanStart != 0,
            keepAlive: keepAlive,
            username: username,
            password: password,
            will: will,
            properties: properties,
            isBridge: isBridge
        )
    }

    /// Protocol name and level (spec 3.1.2.1, 3.1.2.2): "MQIsdp" with level 3, "MQTT" with 4 or 5, and
    /// Mosquitto's bridges' 0x83/0x84 (the level with the top bit set, `isBridge`). Another name is a protocol
    /// error; an unknown level is `.unsupportedProtocolVersion`, which the server answers with CONNACK 0x01
    /// (3.x) or 0x84 (5.0) [MQTT-3.1.2-2].
    private static func decodeProtocol(from body: inout ByteBuffer) throws(MQTTError) -> (ProtocolVersion, Bool) {
        let nameLength = Int(try body.readMQTTUInt16("CONNECT protocol name"))
        guard let name = body.readSlice(length: nameLength) else { throw .truncated("CONNECT protocol name") }
        let level = try body.readMQTTUInt8("CONNECT protocol level")
        let isMQTT = name.readableBytesView.elementsEqual("MQTT".utf8)
        let isMQIsdp = !isMQTT && name.readableBytesView.elementsEqual("MQIsdp".utf8)
        guard isMQTT || isMQIsdp else {
            throw .protocolError("CONNECT protocol name is neither MQTT nor MQIsdp [MQTT-3.1.2-1]")
        }
        switch (isMQTT, level) {
        case (true, 4): return (.v3_1_1, false)
        case (true, 5): return (.v5, false)
        case (false, 3): return (.v3_1, false)
        case (true, 0x84): return (.v3_1_1, true)
        case (false, 0x83): return (.v3_1, true)
        default:
            let name = isMQTT ? "MQTT" : "MQIsdp"
            throw MQTTError(
                .unsupportedProtocolVersion,
                "CONNECT protocol \(name) level \(level) is not supported [MQTT-3.1.2-2]"
            )
        }
    }

    /// Before 5.0 a password needs a user name [MQTT-3.1.2-22]; without one the password is left out.
    private func sendsPassword(_ version: ProtocolVersion) -> Bool {
        password != nil && (version == .v5 || username != nil)
    }

    func bodySize(version: ProtocolVersion) -> Int {
        var size = 2 + version.protocolName.utf8.count + 1 + 1 + 2
        if version == .v5 { size += properties.encodedSize(context: .connect) }
        size += 2 + clientIdentifier.utf8.count
        if let will {
            if version == .v5 { size += will.properties.encodedSize(context: .will) }
            size += 2 + will.topic.utf8.count + 2 + will.payload.readableBytes
        }
        if let username { size += 2 + username.utf8.count }
        if let password, sendsPassword(version) { size += 2 + password.count }
        return size
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        buffer.writeMQTTString(version.protocolName)
        buffer.writeInteger(version.rawValue | (isBridge && version < .v5 ? 0x80 : 0))
        var flags: UInt8 = 0
        if cleanStart { flags |= Flag.cleanStart }
        if let will {
            flags |= Flag.will | will.qos.rawValue << Flag.willQoSShift
            if will.retain { flags |= Flag.willRetain }
        }
        if username != nil { flags |= Flag.username }
        if sendsPassword(version) { flags |= Flag.password }
        buffer.writeInteger(flags)
        buffer.writeInteger(keepAlive)
        if version == .v5 { properties.encode(into: &buffer, context: .connect) }
        buffer.writeMQTTString(clientIdentifier)
        if let will {
            if version == .v5 { will.properties.encode(into: &buffer, context: .will) }
            buffer.writeMQTTString(will.topic)
            buffer.writeMQTTBinary(will.payload)
        }
        if let username { buffer.writeMQTTString(username) }
        if let password, sendsPassword(version) { buffer.writeMQTTBinary(password) }
    }
}

// CONNACK (spec 3.2). 3.1/3.1.1: acknowledge flags and a return code; 5.0: flags, reason code and
// properties. The packet model holds the MQTT 5 reason code; the mapping to and from the 3.x return
// codes lives in `ReasonCode.mqtt3ConnAckReturnCode` / `init(mqtt3ConnAckReturnCode:)` only.

extension ReasonCode {
    /// The MQTT 3.1/3.1.1 CONNACK return code that reports this MQTT 5 CONNACK reason code:
    /// success→0, unsupported protocol version→1, client identifier not valid→2, bad user name or
    /// password→4, not authorized→5, and any other failure (server unavailable, busy...)→3.
    public var mqtt3ConnAckReturnCode: UInt8 {
        guard isFailure else { return 0 }
        switch self {
        case .unsupportedProtocolVersion: return 1
        case .clientIdentifierNotValid: return 2
        case .badUserNameOrPassword: return 4
        case .notAuthorized: return 5
        default: return 3  // serverUnavailable, serverBusy and anything else failing
        }
    }

    /// The MQTT 5 reason code for a 3.1/3.1.1 CONNACK return code; nil for reserved values (6...255).
    public init?(mqtt3ConnAckReturnCode code: UInt8) {
        switch code {
        case 0: self = .success
        case 1: self = .unsupportedProtocolVersion
        case 2: self = .clientIdentifierNotValid
        case 3: self = .serverUnavailable
        case 4: self = .badUserNameOrPassword
        case 5: self = .notAuthorized
        default: return nil
        }
    }
}

extension ConnAckPacket {
    static func decode(from body: inout ByteBuffer, version: ProtocolVersion) throws(MQTTError) -> ConnAckPacket {
        let flags = try body.readMQTTUInt8("CONNACK acknowledge flags")
        let code = try body.readMQTTUInt8("CONNACK reason code")
        // 3.1 has no session present flag: the whole byte is reserved and ignored there.
        if version >= .v3_1_1 {
            // [MQTT-3.2.2-1] bits 7-1 are reserved.
            guard flags & 0xFE == 0 else {
                throw .malformed("CONNACK reserved acknowledge flags are set [MQTT-3.2.2-1]")
            }
        }
        // Session present means nothing with a failure code (the server must send 0 [MQTT-3.2.2-4],
        // [MQTT-3.2.2-6]): read it as 0, as it is encoded, so a refusal's reason code still reaches the client.
        let sessionPresent = version >= .v3_1_1 && flags & 0x01 != 0
        switch version {
        case .v5:
            let properties = try Properties.decode(from: &body, context: .connAck)
            let reasonCode = ReasonCode(rawValue: code)
            return ConnAckPacket(
                sessionPresent: sessionPresent && !reasonCode.isFailure,
                reasonCode: reasonCode,
                properties: properties
            )
        case .v3_1, .v3_1_1:
            guard let reasonCode = ReasonCode(mqtt3ConnAckReturnCode: code) else {
                throw .malformed("CONNACK return code \(code) is reserved")
            }
            return ConnAckPacket(sessionPresent: sessionPresent && !reasonCode.isFailure, reasonCode: reasonCode)
        }
    }

    func bodySize(version: ProtocolVersion) -> Int {
        version == .v5 ? 2 + properties.encodedSize(context: .connAck) : 2
    }

    func encodeBody(into buffer: inout ByteBuffer, version: ProtocolVersion) {
        // Session present is 0 with a failure code [MQTT-3.2.2-6] and does not exist in 3.1.
        let sessionPresent = self.sessionPresent && !reasonCode.isFailure && version >= .v3_1_1
        buffer.writeInteger(sessionPresent ? 1 : 0 as UInt8)
        if version == .v5 {
            buffer.writeInteger(reasonCode.rawValue)
            properties.encode(into: &buffer, context: .connAck)
        } else {
            buffer.writeInteger(reasonCode.mqtt3ConnAckReturnCode)
        }
    }
}
