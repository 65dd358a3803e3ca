import Testing

@testable import SluiceBroker

/// The per-client structs are dictionary values: every slot of the table, used or not, costs their
/// stride (issue 17, RSS per idle connection). Word-sized fields first keeps the padding out.
@Suite struct PerClientLayoutTests {
    @Test func clientConnectionPacksItsSmallFieldsIntoOneWord() {
        #expect(MemoryLayout<ClientConnection>.stride <= 104)
    }

    @Test func sessionPacksItsSmallFieldsAfterTheWords() {
        #expect(MemoryLayout<Session>.stride <= 120)
    }

    @Test func aTreeNodePacksItsSlotsIntoThirtyTwoBits() {
        // Two nodes per subscription of `a/b/+`; the node array's spare capacity costs the stride too.
        #expect(MemoryLayout<SubscriptionTree.Node>.stride <= 80)
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
        let session = Session(clientID: "s", protocolVersion: .v3_1_1, expiryInterval: 30)
        #expect(session.clientID == "s" && session.protocolVersion == .v3_1_1 && session.expiryInterval == 30)
        #expect(session.connection == nil && session.disconnectedAt == nil && session.nextSeq == 1)
    }
}
