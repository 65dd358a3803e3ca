import MQTTCore

/// A message on its way to one subscriber: the QoS and retain flag it is delivered with.
struct Delivery: Sendable, Equatable {
    var message: Message
    var qos: QoS
    var retain: Bool
    var subscriptionIdentifiers: [UInt32]
    /// Its place in the session (increasing per session): the key of its persisted record.
    var seq: UInt64 = 0
}

/// An outgoing QoS 1/2 message awaiting the client's acknowledgement.
struct Outgoing: Sendable {
    enum State: Sendable { case awaitingPubAck, awaitingPubRec, awaitingPubComp }
    var packetID: UInt16
    var delivery: Delivery
    var state: State
}

/// MQTT session state: what survives the network connection (MQTT 5 §4.1).
/// Word-sized fields first, the small ones packed after them: a session is a dictionary value,
/// whose empty slots cost its stride too (88 bytes; 104 with its own copy of the client id, the
/// table's key, and 120 with the connection and the time it ended as two optionals).
struct Session: Sendable {
    /// Whether a connection holds the session, or since when none has: one field, since a session
    /// is never both (an optional each would cost a byte and its padding twice).
    enum Presence: Sendable, Equatable {
        /// Never attached: a session being built (loaded, imported) that did not say since when.
        case detached
        case connected(ConnectionID)
        case offline(since: BrokerTime)
    }

    /// The username the session was last authenticated with (nil = anonymous): messages that
    /// arrive while it is offline are checked against the ACL as this user, as Mosquitto does.
    var username: String?
    /// By filter; nearly always one entry, so not a `Dictionary` (SmallMap.swift).
    var subscriptions: SubscriptionMap = [:]
    /// QoS 2 packet identifiers received and not yet released by PUBREL.
    var inboundQoS2: Set<UInt16> = []
    /// A will waiting for its delay to pass (MQTT 5 will delay interval).
    @Indirect var delayedWill: (message: Message, dueAt: BrokerTime)? = nil
    /// The messages on their way to the client: in flight, and waiting (four words, no padding).
    var outbound = OutboundWindow()
    var presence = Presence.detached
    var protocolVersion: ProtocolVersion
    /// Seconds; `UInt32.max` never expires.
    var expiryInterval: UInt32

    init(protocolVersion: ProtocolVersion, expiryInterval: UInt32) {
        self.protocolVersion = protocolVersion
        self.expiryInterval = expiryInterval
    }

    var connection: ConnectionID? {
        if case .connected(let connection) = presence { connection } else { nil }
    }
    var disconnectedAt: BrokerTime? {
        if case .offline(let since) = presence { since } else { nil }
    }
    var isConnected: Bool { connection != nil }
    /// Whether the session outlives its connection, and so is saved by persistence.
    var isPersistent: Bool { expiryInterval > 0 }

    func expiresAt() -> BrokerTime? {
        guard let disconnectedAt, expiryInterval != UInt32.max else { return nil }
        return disconnectedAt + BrokerTime(expiryInterval) * 1000
    }
}

/// Per-connection state that ends with the socket. Word-sized fields first, the small ones packed
/// after them, and what few clients use (a will, topic aliases) out of line: it is a dictionary
/// value, whose empty slots cost its stride too (72 bytes; it was 104, and 128 in the order of the
/// initializer's parameters).
struct ClientConnection: Sendable {
    /// What few connections carry: one pointer in every slot, a box only for a client that has one.
    struct Rare: Sendable {
        var will: Will? = nil
        var outgoingAliases: [String: UInt16] = [:]
        var inboundAliases: [UInt16: String] = [:]
    }

    let clientID: String
    let username: String?
    var lastActivity: BrokerTime
    @Indirect private var rare: Rare? = nil
    /// The client's Maximum Packet Size (at most 268,435,460: 32 bits hold it).
    private let maximumPacketSizeBits: UInt32
    /// Which listener accepted the connection, in 32 bits (listeners are a config file's few).
    private let listenerIndex: Int32
    /// QoS 1 publishes whose PUBACK waits for the disk, and QoS 2 ones awaiting PUBREL: at most the
    /// Receive Maximum we announce (65,535) before the client is closed, so 32 bits hold it.
    private var inboundUnacknowledgedCount: Int32 = 0
    /// The client's Receive Maximum, our outgoing window towards it (1...65,535 by the protocol).
    private let receiveMaximumBits: UInt16
    /// Effective keep alive in seconds (0 = none).
    var keepAlive: UInt16
    var topicAliasMaximum: UInt16
    let version: ProtocolVersion
    /// Another broker's bridge (Mosquitto's `try_private`, protocol level 0x83/0x84).
    var isBridge = false
    /// The socket's send buffer is above its high-water mark: deliveries wait in the session queue.
    var backedUp = false
    /// Set once DISCONNECT arrived: the will is then not sent (unless reason 0x04).
    var disconnectedCleanly = false

    init(
        clientID: String,
        username: String?,
        version: ProtocolVersion,
        listener: Int,
        keepAlive: UInt16,
        lastActivity: BrokerTime,
        receiveMaximum: Int,
        maximumPacketSize: Int,
        topicAliasMaximum: UInt16,
        will: Will? = nil
    ) {
        self.clientID = clientID
        self.username = username
        self.version = version
        self.listenerIndex = Int32(clamping: listener)
        self.keepAlive = keepAlive
        self.lastActivity = lastActivity
        self.receiveMaximumBits = UInt16(clamping: receiveMaximum)
        self.maximumPacketSizeBits = UInt32(clamping: maximumPacketSize)
        self.topicAliasMaximum = topicAliasMaximum
        if let will { self.rare = Rare(will: will) }
    }

    var listener: Int { Int(listenerIndex) }
    var receiveMaximum: Int { Int(receiveMaximumBits) }
    var maximumPacketSize: Int { Int(maximumPacketSizeBits) }
    var inboundUnacknowledged: Int {
        get { Int(inboundUnacknowledgedCount) }
        set { inboundUnacknowledgedCount = Int32(clamping: newValue) }
    }

    var will: Will? {
        get { rare?.will }
        set {
            guard newValue != nil || rare != nil else { return }
            changeRare { $0.will = newValue }
        }
    }
    /// Set once per alias (at most Topic Alias Maximum times), each set a new box.
    var outgoingAliases: [String: UInt16] {
        get { rare?.outgoingAliases ?? [:] }
        set { changeRare { $0.outgoingAliases = newValue } }
    }
    var inboundAliases: [UInt16: String] {
        get { rare?.inboundAliases ?? [:] }
        set { changeRare { $0.inboundAliases = newValue } }
    }

    private mutating func changeRare(_ change: (inout Rare) -> Void) {
        var value = rare ?? Rare()
        change(&value)
        rare = value
    }
}

/// What happened to one persistent session's stored messages since the last save, so a save
/// writes one record per message that arrived and deletes one per message that left, never the
/// whole queue again.
struct MessageJournal: Sendable {
    /// The session's earlier records must all go (it was created, replaced, or became
    /// persistent): the save deletes them and writes every message the session holds now.
    var rewrite = false
    var added: [UInt64: Delivery] = [:]
    var removed: Set<UInt64> = []
}

/// The sessions by client identifier. Every write through it marks the session changed, so
/// persistence can save exactly what changed; `_modify` keeps mutations in place.
struct SessionTable: Sendable {
    private(set) var all: [String: Session] = [:]
    private(set) var changed: Set<String> = []
    private(set) var journals: [String: MessageJournal] = [:]
    /// Messages stored for persistent sessions so far: a publish that raised it changed saved state.
    private(set) var storedMessages = 0
    /// Off when nothing saves the changes (no persistence): then nothing accumulates.
    var tracksChanges = false {
        didSet {
            if !tracksChanges {
                changed.removeAll()
                journals.removeAll()
            }
        }
    }

    subscript(clientID: String) -> Session? {
        get { all[clientID] }
        _modify {
            if tracksChanges { changed.insert(clientID) }
            lastLookup = nil  // may add or remove a session: every slot may move
            yield &all[clientID]
        }
    }

    mutating func removeValue(forKey clientID: String) -> Session? {
        if tracksChanges { changed.insert(clientID) }
        lastLookup = nil
        return all.removeValue(forKey: clientID)
    }

    var count: Int { all.count }

    /// A successful PUBREC for `packetID` in the session of `clientID` (`OutboundWindow.received(pubRec:)`), in place.
    mutating func received(pubRec packetID: UInt16, for clientID: String) -> Bool {
        guard let slot = all.index(forKey: clientID), all.values[slot].outbound.received(pubRec: packetID) else {
            return false
        }
        if tracksChanges { changed.insert(clientID) }
        return true
    }

    /// Where a session is in the table: it is read and changed there, in place, never copied out and back
    /// (a `Session` is a dozen references; copying one costs a retain and a release of each). A slot stays
    /// valid until a session is added or removed.
    typealias Slot = Dictionary<String, Session>.Index

    /// The session of `clientID`, looked up by its id unless it was the last one looked up: a stream of
    /// messages to one subscriber asks for the same session for each, and hashing the id cost more than
    /// the rest of the delivery's bookkeeping. The two ids are usually one string, compared by identity.
    mutating func slot(of clientID: String) -> Slot? {
        if let lastLookup, lastLookup.clientID == clientID { return lastLookup.slot }
        let slot = all.index(forKey: clientID)
        lastLookup = slot.map { (clientID, $0) }
        return slot
    }

    /// The last `slot(of:)` found, forgotten whenever a session may be added or removed.
    private var lastLookup: (clientID: String, slot: Slot)?

    /// The session at `slot`. A change marks a persistent session for the next save.
    subscript(slot slot: Slot) -> Session {
        _read { yield all.values[slot] }
        _modify {
            if tracksChanges && isPersistent(at: slot) { changed.insert(all.keys[slot]) }
            yield &all.values[slot]
        }
    }

    /// Whether the session at `slot` is saved (read in place).
    private mutating func isPersistent(at slot: Slot) -> Bool { all.read(at: slot) { $0.isPersistent } }

    /// Reads the session at `slot` where it lies (`Dictionary.read(at:)`: the subscript's getter copies it).
    mutating func read<Result>(at slot: Slot, _ body: (inout Session) -> Result) -> Result { all.read(at: slot, body) }

    /// `delivery` (numbered) now waits in, or is in flight for, the session at `slot`.
    mutating func noteStored(_ delivery: Delivery, at slot: Slot) {
        guard tracksChanges && isPersistent(at: slot) else { return }
        journals[all.keys[slot], default: MessageJournal()].added[delivery.seq] = delivery
        storedMessages += 1
    }

    /// The message just `sent` (`OutboundWindow.sent`, the window's last) is in flight for the session at `slot`.
    mutating func noteSent(at slot: Slot) {
        guard tracksChanges, let sent = all.read(at: slot, { $0.isPersistent ? $0.outbound.inflight.last : nil }) else {
            return
        }
        noteStored(sent.delivery, at: slot)
    }

    /// `delivery` left the session at `slot` (acknowledged, expired, dropped).
    mutating func noteReleased(_ delivery: Delivery, at slot: Slot) {
        guard tracksChanges && isPersistent(at: slot) else { return }
        let clientID = all.keys[slot]
        if journals[clientID, default: MessageJournal()].added.removeValue(forKey: delivery.seq) == nil {
            journals[clientID]!.removed.insert(delivery.seq)
        }
    }

    /// The session's saved messages no longer match it: the next save replaces them all.
    mutating func noteRewrite(_ clientID: String) {
        guard tracksChanges else { return }
        changed.insert(clientID)
        journals[clientID] = MessageJournal(rewrite: true)
    }

    /// Hands the changes over and starts empty: keeping the capacity would keep a connect storm's
    /// peak (a slot per client changed in one save interval) for good, and the caller's copy would
    /// make `removeAll(keepingCapacity:)` allocate that much anew on every save.
    mutating func takeChanged() -> (sessions: Set<String>, journals: [String: MessageJournal]) {
        defer {
            changed = []
            journals = [:]
        }
        return (changed, journals)
    }
}
