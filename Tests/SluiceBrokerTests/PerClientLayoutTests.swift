import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

/// The per-client structs are dictionary values: every slot of the table, used or not, costs their
/// stride (issue 17, RSS per idle connection). Word-sized fields first keeps the padding out.
@Suite struct PerClientLayoutTests {
    @Test func clientConnectionPacksItsSmallFieldsIntoOneWord() {
        #expect(MemoryLayout<ClientConnection>.stride <= 72)
    }

    @Test func sessionPacksItsSmallFieldsAfterTheWords() {
        #expect(MemoryLayout<Session>.stride <= 88)
    }

    @Test func aSubscriptionIsEightBytesAndKeepsItsIdentifier() {
        // A one-entry SubscriptionMap's array: 32 bytes of header + one (filter or client id, subscription).
        #expect(MemoryLayout<Subscription>.stride == 8)
        #expect(MemoryLayout<SubscriptionMap.Element>.stride == 24)
        var subscription = Subscription(options: SubscriptionOptions(qos: .exactlyOnce, noLocal: true))
        #expect(subscription.identifier == nil)
        subscription.identifier = 268_435_455
        #expect(subscription.identifier == 268_435_455 && subscription.options.noLocal)
        #expect(subscription != Subscription(options: subscription.options))
        subscription.identifier = nil
        #expect(subscription == Subscription(options: subscription.options, identifier: nil))
    }

    @Test func aTreeNodePacksItsSlotsIntoThirtyTwoBits() {
        // Two nodes per subscription of `a/b/+`; the node array's spare capacity costs the stride too.
        #expect(MemoryLayout<SubscriptionTree.Node>.stride <= 72)
    }

    @Test func reorderedFieldsKeepTheirValues() {
        var client = ClientConnection(
            clientID: "c",
            username: "u",
            version: .v5,
            listener: 3,
            keepAlive: 60,
            lastActivity: 7,
            receiveMaximum: 20,
            maximumPacketSize: 1 << 20,
            topicAliasMaximum: 5
        )
        client.isBridge = true
        #expect(client.clientID == "c" && client.username == "u" && client.version == .v5)
        #expect(client.listener == 3 && client.keepAlive == 60 && client.lastActivity == 7)
        #expect(client.receiveMaximum == 20 && client.maximumPacketSize == 1 << 20 && client.topicAliasMaximum == 5)
        #expect(client.isBridge && !client.backedUp && !client.disconnectedCleanly && client.will == nil)
        let session = Session(protocolVersion: .v3_1_1, expiryInterval: 30)
        #expect(session.protocolVersion == .v3_1_1 && session.expiryInterval == 30)
        #expect(session.connection == nil && session.disconnectedAt == nil && session.outbound.nextSeq == 1)
    }

    @Test func narrowedFieldsKeepTheirFullRange() {
        var client = ClientConnection(
            clientID: "c",
            username: nil,
            version: .v5,
            listener: 70_000,
            keepAlive: 65535,
            lastActivity: .max,
            receiveMaximum: 65535,
            maximumPacketSize: 268_435_460,
            topicAliasMaximum: 65535
        )
        #expect(client.listener == 70_000 && client.receiveMaximum == 65535 && client.maximumPacketSize == 268_435_460)
        client.inboundUnacknowledged += 65535
        client.inboundUnacknowledged -= 1
        #expect(client.inboundUnacknowledged == 65534)
    }

    @Test func willAndAliasesLiveInOneBoxWithValueSemantics() {
        var client = ClientConnection(
            clientID: "c",
            username: nil,
            version: .v5,
            listener: 0,
            keepAlive: 0,
            lastActivity: 0,
            receiveMaximum: 10,
            maximumPacketSize: 1000,
            topicAliasMaximum: 3
        )
        #expect(client.will == nil && client.outgoingAliases.isEmpty && client.inboundAliases.isEmpty)
        client.will = nil  // nothing to clear: still no box
        client.outgoingAliases["a/b"] = 1
        let before = client
        client.inboundAliases[2] = "x/y"
        client.outgoingAliases["c/d"] = 2
        client.will = Will(topic: "w", payload: ByteBuffer(string: "gone"), qos: .atMostOnce, retain: false)
        #expect(client.outgoingAliases == ["a/b": 1, "c/d": 2] && client.inboundAliases == [2: "x/y"])
        #expect(client.will?.topic == "w")
        // The copy taken before saw none of the later changes.
        #expect(before.outgoingAliases == ["a/b": 1] && before.inboundAliases.isEmpty && before.will == nil)
        client.will = nil
        #expect(client.will == nil && client.outgoingAliases.count == 2 && client.inboundAliases[2] == "x/y")
    }

    @Test func presenceIsConnectedOrOfflineSinceNeverBoth() {
        var session = Session(protocolVersion: .v5, expiryInterval: 10)
        #expect(session.presence == .detached && session.expiresAt() == nil)
        session.presence = .connected(ConnectionID(7))
        #expect(session.connection == ConnectionID(7) && session.isConnected && session.disconnectedAt == nil)
        #expect(session.expiresAt() == nil)
        session.presence = .offline(since: 1_000)
        #expect(session.connection == nil && !session.isConnected && session.disconnectedAt == 1_000)
        #expect(session.expiresAt() == 11_000)
        session.expiryInterval = UInt32.max
        #expect(session.expiresAt() == nil)
    }

    /// `slot(of:)` remembers its last answer; a slot from before sessions were added or removed would
    /// name another session (or trap), so every such change must forget it.
    @Test func aRememberedSessionSlotNeverOutlivesAChangeOfTheTable() {
        var table = SessionTable()
        func expiry(of clientID: String) -> UInt32? {
            table.slot(of: clientID).map { table[slot: $0].expiryInterval }
        }
        table["a"] = Session(protocolVersion: .v5, expiryInterval: 1)
        #expect(expiry(of: "a") == 1)
        // Enough new sessions to grow the table (rehashing every slot) while "a" is remembered.
        for index in 0..<100 { table["n\(index)"] = Session(protocolVersion: .v5, expiryInterval: UInt32(index + 10)) }
        #expect(expiry(of: "a") == 1 && expiry(of: "a") == 1)
        #expect(expiry(of: "n42") == 52)
        _ = table.removeValue(forKey: "n42")
        #expect(expiry(of: "n42") == nil)
        #expect(expiry(of: "a") == 1)
        table["a"] = nil
        #expect(expiry(of: "a") == nil)
        table["a"] = Session(protocolVersion: .v5, expiryInterval: 3)
        #expect(expiry(of: "a") == 3 && expiry(of: "n7") == 17)
        // The same id as a different string object is the same session.
        let rebuilt = String("a".utf8.map { Character(UnicodeScalar($0)) })
        #expect(expiry(of: rebuilt) == 3)
    }

    @Test func takingTheChangesLetsTheirStorageGo() {
        var table = SessionTable()
        table.tracksChanges = true
        for index in 0..<1000 {
            table[String(index)] = Session(protocolVersion: .v3_1_1, expiryInterval: 60)
        }
        table.noteRewrite("7")
        let taken = table.takeChanged()
        #expect(taken.sessions.count == 1000 && taken.journals.count == 1)
        #expect(table.changed.isEmpty && table.changed.capacity == 0)
        #expect(table.journals.isEmpty && table.journals.capacity == 0)
        table["1"]?.expiryInterval = 5
        #expect(table.takeChanged().sessions == ["1"])
    }
}
