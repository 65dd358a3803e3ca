import MQTTCore

/// Why the broker's rules refuse a CONNECT: the CONNACK reason code, sent before anything changes.
struct ConnectRefusal: Error, Equatable {
    var reason: ReasonCode
}

/// The client identifier and will a CONNECT is admitted with.
struct ConnectIdentity: Sendable, Equatable {
    var clientID: String
    /// Assigned by the broker to a client that sent none (MQTT 5 hears it in the CONNACK).
    var assigned: String?
    /// Under the listener's `mount_point`.
    var will: Will?
}

extension Broker {
    /// The rules of a CONNECT that depend on nothing but its packet and listener: enhanced
    /// authentication, the will's limits and ACL, and the client identifier (assigned, or the
    /// username with `use_username_as_clientid`).
    mutating func connectIdentity(_ packet: ConnectPacket, listener: Int) throws(ConnectRefusal) -> ConnectIdentity {
        let version = packet.protocolVersion
        if packet.properties.authenticationMethod != nil {
            // No enhanced authentication methods are offered.
            throw ConnectRefusal(reason: .badAuthenticationMethod)
        }
        if let will = packet.will, will.retain && !settings.retainAvailable {
            throw ConnectRefusal(reason: .retainNotSupported)
        }
        if let will = packet.will, let limit = settings.messageSizeLimit, will.payload.readableBytes > limit {
            // `message_size_limit` covers the will's payload too; Mosquitto answers 0x95, or 5 in 3.1/3.1.1.
            throw ConnectRefusal(reason: version >= .v5 ? .packetTooLarge : .notAuthorized)
        }
        if let will = packet.will, will.qos.rawValue > settings.maxQoS {
            throw ConnectRefusal(reason: .qosNotSupported)
        }
        var clientID = packet.clientIdentifier
        var assigned: String? = nil
        if clientID.isEmpty {
            // 3.1 requires an identifier; 3.1.1 allows none only with a clean session [MQTT-3.1.3-8].
            if version == .v3_1 || (version == .v3_1_1 && !packet.cleanStart) || !settings.allowZeroLengthClientID {
                throw ConnectRefusal(reason: .clientIdentifierNotValid)
            }
            assignedIDCounter += 1
            clientID = "\(settings.autoIDPrefix)\(assignedIDEpoch)-\(assignedIDCounter)"
            assigned = clientID
        }
        if settings.listenersUsingUsernameAsClientID.contains(listener) {
            // Mosquitto's `use_username_as_clientid`: after authentication the username is the client id
            // (an assigned one included), so sessions and takeovers go by user.
            guard let username = packet.username, !username.isEmpty else {
                throw ConnectRefusal(reason: .notAuthorized)
            }
            clientID = username
            if assigned != nil { assigned = username }
        }
        // `mount_point`: the will is published under the listener's prefix, and checked there. Kept as
        // long as the connection lasts (and beyond, delayed): its payload must not keep the CONNECT's read.
        let will = packet.will.map { will in
            var mounted = will
            mounted.topic = (settings.listenerMountPoints[listener] ?? "") + will.topic
            mounted.payload = will.payload.compacted()
            return mounted
        }
        if let will, let policy = accessPolicy,
            !policy.mayPublish(clientID: clientID, username: packet.username, topic: will.topic)
        {
            throw ConnectRefusal(reason: .notAuthorized)
        }
        return ConnectIdentity(clientID: clientID, assigned: assigned, will: will)
    }
}

extension BrokerSettings {
    /// The keep-alive a client gets: its own, unless `max_keepalive` lowers it (or sets one where it
    /// asked for none); then the CONNACK tells it (Server Keep Alive).
    func keepAlive(asked: UInt16) -> (effective: UInt16, serverKeepAlive: UInt16?) {
        guard maxKeepalive < 65535 && (asked == 0 || asked > maxKeepalive) else { return (asked, nil) }
        return (maxKeepalive, maxKeepalive)
    }

    /// The MQTT 5 CONNACK properties that announce this server's limits.
    func connAckProperties(assigned: String?, serverKeepAlive: UInt16?) -> Properties {
        var properties = Properties()
        if receiveMaximum < 65535 { properties.receiveMaximum = UInt16(receiveMaximum) }
        if maximumPacketSize < 268_435_460 {
            properties.maximumPacketSize = UInt32(maximumPacketSize)
        }
        properties.topicAliasMaximum = topicAliasMaximum
        if !retainAvailable { properties.retainAvailable = 0 }
        if maxQoS < 2 { properties.maximumQoS = maxQoS }
        properties.assignedClientIdentifier = assigned
        properties.serverKeepAlive = serverKeepAlive
        return properties
    }
}

extension Broker {
    /// Whether a CONNACK with these properties fits the client's Maximum Packet Size [MQTT-3.1.2-24].
    static func connAck(with properties: Properties, fits packet: ConnectPacket) -> Bool {
        let limit = Int(packet.properties.maximumPacketSize ?? 268_435_460)
        let connAck = Packet.connAck(ConnAckPacket(sessionPresent: true, properties: properties))
        return MQTTCodec.encodedSize(connAck, version: packet.protocolVersion) <= limit
    }
}
