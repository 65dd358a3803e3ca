import NIOCore

/// The protocol level byte of CONNECT. MQTT 3.1 is level 3 ("MQIsdp"), 3.1.1 is 4, 5.0 is 5.
public enum ProtocolVersion: UInt8, Sendable, Hashable, Comparable {
    case v3_1 = 3
    case v3_1_1 = 4
    case v5 = 5

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The protocol name carried in CONNECT for this level.
    public var protocolName: String { self == .v3_1 ? "MQIsdp" : "MQTT" }
}

public enum QoS: UInt8, Sendable, Hashable, Comparable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The fifteen MQTT control packet types (the high nibble of the fixed header).
public enum PacketType: UInt8, Sendable, Hashable, CaseIterable {
    case connect = 1, connAck, publish, pubAck, pubRec, pubRel, pubComp
    case subscribe, subAck, unsubscribe, unsubAck, pingReq, pingResp, disconnect, auth
}

/// A name/value pair carried in MQTT 5 properties; order and duplicates are preserved [MQTT-3.3.2-18].
public struct UserProperty: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// MQTT 5 properties (spec 2.2.2.2). `nil` means absent. Which properties a packet may carry is
/// checked by the decoder; the broker only reads the ones it understands and passes the rest through.
///
/// The values live out of line behind one copy-on-write reference (none at all when no property is
/// set, as in every MQTT 3.x packet): packets and messages are copied on every hop through the
/// broker, and inline the fields made a PUBLISH 267 bytes and each broker action 555.
@dynamicMemberLookup
public struct Properties: Sendable, Hashable {
    /// The property values themselves; read and written through `Properties` by name.
    public struct Values: Sendable, Hashable {
        public var payloadFormatIndicator: UInt8?  // 0x01
        public var messageExpiryInterval: UInt32?  // 0x02
        public var contentType: String?  // 0x03
        public var responseTopic: String?  // 0x08
        public var correlationData: [UInt8]?  // 0x09
        public var subscriptionIdentifiers: [UInt32] = []  // 0x0B (may repeat in PUBLISH)
        public var sessionExpiryInterval: UInt32?  // 0x11
        public var assignedClientIdentifier: String?  // 0x12
        public var serverKeepAlive: UInt16?  // 0x13
        public var authenticationMethod: String?  // 0x15
        public var authenticationData: [UInt8]?  // 0x16
        public var requestProblemInformation: UInt8?  // 0x17
        public var willDelayInterval: UInt32?  // 0x18
        public var requestResponseInformation: UInt8?  // 0x19
        public var responseInformation: String?  // 0x1A
        public var serverReference: String?  // 0x1C
        public var reasonString: String?  // 0x1F
        public var receiveMaximum: UInt16?  // 0x21
        public var topicAliasMaximum: UInt16?  // 0x22
        public var topicAlias: UInt16?  // 0x23
        public var maximumQoS: UInt8?  // 0x24
        public var retainAvailable: UInt8?  // 0x25
        public var userProperties: [UserProperty] = []  // 0x26
        public var maximumPacketSize: UInt32?  // 0x27
        public var wildcardSubscriptionAvailable: UInt8?  // 0x28
        public var subscriptionIdentifierAvailable: UInt8?  // 0x29
        public var sharedSubscriptionAvailable: UInt8?  // 0x2A

        public init() {}
    }

    /// Mutated only while uniquely referenced (copy on write), so sharing it across threads is safe.
    private final class Box: @unchecked Sendable {
        var values: Values
        init(_ values: Values) { self.values = values }
    }

    private var box: Box?

    public init() {}

    public init(_ values: Values) {
        box = values.isEmpty ? nil : Box(values)
    }

    public static let none = Properties()

    /// All values at once.
    public var values: Values { box?.values ?? Values() }

    public subscript<Value>(dynamicMember field: WritableKeyPath<Values, Value>) -> Value {
        get { (box?.values ?? Values())[keyPath: field] }
        set {
            if box == nil {
                box = Box(Values())
            } else if !isKnownUniquelyReferenced(&box!) {
                box = Box(box!.values)
            }
            box!.values[keyPath: field] = newValue
        }
    }

    /// True when no property is set.
    public var isEmpty: Bool { box?.values.isEmpty ?? true }

    public static func == (lhs: Properties, rhs: Properties) -> Bool { lhs.box === rhs.box || lhs.values == rhs.values }

    public func hash(into hasher: inout Hasher) { hasher.combine(values) }

    /// Only the properties `context` allows (what the encoder writes there).
    public func filtered(for context: PropertyContext) -> Properties {
        guard let box else { return self }
        return Properties(box.values.filtered(for: context))
    }

    static func decode(from buffer: inout ByteBuffer, context: PropertyContext) throws(MQTTError) -> Properties {
        Properties(try Values.decode(from: &buffer, context: context))
    }

    /// Bytes of the property list alone (without its length).
    func encodedListSize(context: PropertyContext) -> Int {
        box?.values.encodedListSize(context: context) ?? 0
    }

    /// Bytes on the wire: the property length and the list.
    func encodedSize(context: PropertyContext) -> Int {
        box?.values.encodedSize(context: context) ?? 1
    }

    /// Writes the property length and the properties `context` allows, in identifier order.
    func encode(into buffer: inout ByteBuffer, context: PropertyContext) {
        guard let box else {
            buffer.writeInteger(UInt8(0))
            return
        }
        box.values.encode(into: &buffer, context: context)
    }
}

/// An MQTT 5 reason code (spec 2.4). Several names share a value (0x00 is Success, Normal
/// disconnection and Granted QoS 0), so this is a struct over the byte rather than an enum.
public struct ReasonCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let success = ReasonCode(rawValue: 0x00)
    public static let normalDisconnection = ReasonCode(rawValue: 0x00)
    public static let grantedQoS0 = ReasonCode(rawValue: 0x00)
    public static let grantedQoS1 = ReasonCode(rawValue: 0x01)
    public static let grantedQoS2 = ReasonCode(rawValue: 0x02)
    public static let disconnectWithWillMessage = ReasonCode(rawValue: 0x04)
    public static let noMatchingSubscribers = ReasonCode(rawValue: 0x10)
    public static let noSubscriptionExisted = ReasonCode(rawValue: 0x11)
    public static let continueAuthentication = ReasonCode(rawValue: 0x18)
    public static let reAuthenticate = ReasonCode(rawValue: 0x19)
    public static let unspecifiedError = ReasonCode(rawValue: 0x80)
    public static let malformedPacket = ReasonCode(rawValue: 0x81)
    public static let protocolError = ReasonCode(rawValue: 0x82)
    public static let implementationSpecificError = ReasonCode(rawValue: 0x83)
    public static let unsupportedProtocolVersion = ReasonCode(rawValue: 0x84)
    public static let clientIdentifierNotValid = ReasonCode(rawValue: 0x85)
    public static let badUserNameOrPassword = ReasonCode(rawValue: 0x86)
    public static let notAuthorized = ReasonCode(rawValue: 0x87)
    public static let serverUnavailable = ReasonCode(rawValue: 0x88)
    public static let serverBusy = ReasonCode(rawValue: 0x89)
    public static let banned = ReasonCode(rawValue: 0x8A)
    public static let serverShuttingDown = ReasonCode(rawValue: 0x8B)
    public static let badAuthenticationMethod = ReasonCode(rawValue: 0x8C)
    public static let keepAliveTimeout = ReasonCode(rawValue: 0x8D)
    public static let sessionTakenOver = ReasonCode(rawValue: 0x8E)
    public static let topicFilterInvalid = ReasonCode(rawValue: 0x8F)
    public static let topicNameInvalid = ReasonCode(rawValue: 0x90)
    public static let packetIdentifierInUse = ReasonCode(rawValue: 0x91)
    public static let packetIdentifierNotFound = ReasonCode(rawValue: 0x92)
    public static let receiveMaximumExceeded = ReasonCode(rawValue: 0x93)
    public static let topicAliasInvalid = ReasonCode(rawValue: 0x94)
    public static let packetTooLarge = ReasonCode(rawValue: 0x95)
    public static let messageRateTooHigh = ReasonCode(rawValue: 0x96)
    public static let quotaExceeded = ReasonCode(rawValue: 0x97)
    public static let administrativeAction = ReasonCode(rawValue: 0x98)
    public static let payloadFormatInvalid = ReasonCode(rawValue: 0x99)
    public static let retainNotSupported = ReasonCode(rawValue: 0x9A)
    public static let qosNotSupported = ReasonCode(rawValue: 0x9B)
    public static let useAnotherServer = ReasonCode(rawValue: 0x9C)
    public static let serverMoved = ReasonCode(rawValue: 0x9D)
    public static let sharedSubscriptionsNotSupported = ReasonCode(rawValue: 0x9E)
    public static let connectionRateExceeded = ReasonCode(rawValue: 0x9F)
    public static let maximumConnectTime = ReasonCode(rawValue: 0xA0)
    public static let subscriptionIdentifiersNotSupported = ReasonCode(rawValue: 0xA1)
    public static let wildcardSubscriptionsNotSupported = ReasonCode(rawValue: 0xA2)

    /// True for codes 0x80 and above, which report a failure [MQTT-2.4].
    public var isFailure: Bool { rawValue >= 0x80 }

    public var description: String { "0x" + String(rawValue, radix: 16, uppercase: true) }
}

/// A will message as sent in CONNECT.
public struct Will: Sendable, Hashable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// Will properties (MQTT 5 only): will delay, expiry, content type, user properties...
    public var properties: Properties

    public init(topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: Properties = .none) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}

public struct ConnectPacket: Sendable, Hashable {
    public var protocolVersion: ProtocolVersion
    public var clientIdentifier: String
    /// "Clean session" in 3.1/3.1.1, "clean start" in 5.0.
    public var cleanStart: Bool
    public var keepAlive: UInt16
    public var username: String?
    public var password: [UInt8]?
    public var will: Will?
    public var properties: Properties
    /// Mosquitto's bridge flag (`try_private`): the protocol level's top bit (0x83, 0x84) says the client is
    /// a broker's bridge, which gets no-local and retain-as-published subscriptions in 3.1/3.1.1. Not in 5.0,
    /// which has those subscription options.
    public var isBridge: Bool

    public init(
        protocolVersion: ProtocolVersion,
        clientIdentifier: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 60,
        username: String? = nil,
        password: [UInt8]? = nil,
        will: Will? = nil,
        properties: Properties = .none,
        isBridge: Bool = false
    ) {
        self.isBridge = isBridge
        self.protocolVersion = protocolVersion
        self.clientIdentifier = clientIdentifier
        self.cleanStart = cleanStart
        self.keepAlive = keepAlive
        self.username = username
        self.password = password
        self.will = will
        self.properties = properties
    }
}

/// CONNACK. The reason code is always the MQTT 5 one; the codec maps it to and from the 3.1.1
/// return codes (0x84→1, 0x85→2, 0x88/0x89→3, 0x86→4, 0x87→5) in one place.
public struct ConnAckPacket: Sendable, Hashable {
    public var sessionPresent: Bool
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(sessionPresent: Bool = false, reasonCode: ReasonCode = .success, properties: Properties = .none) {
        self.sessionPresent = sessionPresent
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

public struct PublishPacket: Sendable, Hashable {
    /// May be empty in MQTT 5 when a topic alias stands for it.
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    public var dup: Bool
    /// Present exactly when qos > 0.
    public var packetIdentifier: UInt16?
    public var properties: Properties

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        dup: Bool = false,
        packetIdentifier: UInt16? = nil,
        properties: Properties = .none
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packetIdentifier = packetIdentifier
        self.properties = properties
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
public struct PubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCode: ReasonCode = .success, properties: Properties = .none) {
        self.packetIdentifier = packetIdentifier
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

/// MQTT 5 retain handling (3.8.3.1): when retained messages are sent on subscribe.
public enum RetainHandling: UInt8, Sendable, Hashable {
    case sendOnSubscribe = 0
    case sendOnSubscribeIfNew = 1
    case doNotSend = 2
}

public struct SubscriptionOptions: Sendable, Hashable {
    public var qos: QoS
    public var noLocal: Bool
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(
        qos: QoS,
        noLocal: Bool = false,
        retainAsPublished: Bool = false,
        retainHandling: RetainHandling = .sendOnSubscribe
    ) {
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }
}

public struct TopicSubscription: Sendable, Hashable {
    public var filter: String
    public var options: SubscriptionOptions

    public init(filter: String, options: SubscriptionOptions) {
        self.filter = filter
        self.options = options
    }
}

public struct SubscribePacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var subscriptions: [TopicSubscription]
    public var properties: Properties

    public init(packetIdentifier: UInt16, subscriptions: [TopicSubscription], properties: Properties = .none) {
        self.packetIdentifier = packetIdentifier
        self.subscriptions = subscriptions
        self.properties = properties
    }
}

/// SUBACK: one code per requested filter. In 3.1.1 only 0x00, 0x01, 0x02 and 0x80 exist; the
/// codec writes any other failure code as 0x80 there.
public struct SubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode], properties: Properties = .none) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

public struct UnsubscribePacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var filters: [String]
    public var properties: Properties

    public init(packetIdentifier: UInt16, filters: [String], properties: Properties = .none) {
        self.packetIdentifier = packetIdentifier
        self.filters = filters
        self.properties = properties
    }
}

/// UNSUBACK: reason codes exist only in MQTT 5; they are empty when decoded from 3.1.1.
public struct UnsubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode] = [], properties: Properties = .none) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

public struct DisconnectPacket: Sendable, Hashable {
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(reasonCode: ReasonCode = .normalDisconnection, properties: Properties = .none) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

public struct AuthPacket: Sendable, Hashable {
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(reasonCode: ReasonCode = .success, properties: Properties = .none) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

/// One MQTT control packet, version-independent. The codec knows which fields each version has.
public enum Packet: Sendable, Hashable {
    case connect(ConnectPacket)
    case connAck(ConnAckPacket)
    case publish(PublishPacket)
    case pubAck(PubAckPacket)
    case pubRec(PubAckPacket)
    case pubRel(PubAckPacket)
    case pubComp(PubAckPacket)
    case subscribe(SubscribePacket)
    case subAck(SubAckPacket)
    case unsubscribe(UnsubscribePacket)
    case unsubAck(UnsubAckPacket)
    case pingReq
    case pingResp
    case disconnect(DisconnectPacket)
    case auth(AuthPacket)

    public var type: PacketType {
        switch self {
        case .connect: .connect
        case .connAck: .connAck
        case .publish: .publish
        case .pubAck: .pubAck
        case .pubRec: .pubRec
        case .pubRel: .pubRel
        case .pubComp: .pubComp
        case .subscribe: .subscribe
        case .subAck: .subAck
        case .unsubscribe: .unsubscribe
        case .unsubAck: .unsubAck
        case .pingReq: .pingReq
        case .pingResp: .pingResp
        case .disconnect: .disconnect
        case .auth: .auth
        }
    }
}

/// A decoding or protocol failure, carrying the MQTT 5 reason code the peer should be told
/// (0x81 malformed, 0x82 protocol error, 0x95 packet too large, 0x84 unsupported version...).
public struct MQTTError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: ReasonCode
    public var message: String

    public init(_ code: ReasonCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func malformed(_ message: String) -> MQTTError { MQTTError(.malformedPacket, message) }
    public static func protocolError(_ message: String) -> MQTTError { MQTTError(.protocolError, message) }

    public var description: String { "\(message) (reason \(code))" }
}
