import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The retained store alone: what it keeps, what it reports for saving, and what a new
// subscription receives.

private func retained(
    _ topic: String,
    _ text: String,
    qos: QoS = .atLeastOnce,
    expiresAt: BrokerTime? = nil,
    publisher: Publisher? = nil
) -> Message {
    Message(
        topic: topic,
        payload: ByteBuffer(string: text),
        qos: qos,
        retain: true,
        expiresAt: expiresAt,
        publisher: publisher
    )
}

/// Only `writers` may publish; only `readers` may receive (nil username = anonymous).
private struct ListPolicy: AccessPolicy {
    var writers: Set<String?> = [nil]
    var readers: Set<String?> = [nil]
    func mayPublish(clientID: String, username: String?, topic: String) -> Bool { writers.contains(username) }
    func maySubscribe(clientID: String, username: String?, filter: String) -> Bool { true }
    func mayReceive(clientID: String, username: String?, topic: String) -> Bool { readers.contains(username) }
}

@Suite struct RetainedStoreTests {
    func deliveries(
        _ store: inout RetainedStore,
        _ filter: String,
        qos: QoS = .exactlyOnce,
        identifier: UInt32? = nil,
        username: String? = nil,
        settings: BrokerSettings = BrokerSettings(),
        policy: (any AccessPolicy)? = nil,
        now: BrokerTime = 0
    ) -> [Delivery] {
        store.deliveries(
            for: filter,
            subscription: Subscription(options: SubscriptionOptions(qos: qos), identifier: identifier),
            clientID: "sub",
            username: username,
            settings: settings,
            accessPolicy: policy,
            now: now
        )
    }

    @Test func keepsTheLastMessagePerTopicAndAnEmptyPayloadClearsIt() {
        var store = RetainedStore()
        var unflagged = retained("a", "1")
        unflagged.retain = false
        store.store(unflagged)
        store.store(retained("a", "2"))
        store.store(retained("b", "3"))
        #expect(store.count == 2)
        #expect(store["a"].map { String(buffer: $0.payload) } == "2")
        #expect(store.payloadBytes == 2)
        store.store(retained("a", ""))
        #expect(store["a"] == nil)
        #expect(store.count == 1)
        store.store(retained("never/set", ""))
        #expect(store.count == 1)
    }

    @Test func aKeptMessageCarriesTheRetainFlag() {
        var store = RetainedStore()
        var message = retained("a", "x")
        message.retain = false
        store.store(message)
        #expect(store["a"]?.retain == true)
    }

    @Test func changesAreRecordedOnlyWhileTracked() {
        var store = RetainedStore()
        store.store(retained("a", "1"))
        #expect(store.takeChanges().isEmpty)
        store.tracksChanges = true
        store.store(retained("a", "2"))
        store.store(retained("b", "3"))
        store.store(retained("b", ""))
        let changes = store.takeChanges().sorted { $0.topic < $1.topic }
        #expect(changes.map(\.topic) == ["a", "b"])
        #expect(changes[0].message.map { String(buffer: $0.payload) } == "2")
        #expect(changes[1].message == nil, "a cleared topic is deleted from the store")
        #expect(store.takeChanges().isEmpty, "taken once")
    }

    @Test func turningTrackingOffForgetsPendingChanges() {
        var store = RetainedStore()
        store.tracksChanges = true
        store.store(retained("a", "1"))
        store.tracksChanges = false
        store.tracksChanges = true
        #expect(store.takeChanges().isEmpty)
    }

    @Test func systemTopicsAreNeverSaved() {
        var store = RetainedStore()
        store.tracksChanges = true
        store.store(retained("$SYS/broker/uptime", "5"))
        #expect(store.count == 1)
        #expect(store.takeChanges().isEmpty)
    }

    @Test func restoredMessagesAreNotSavedAgainButImportedOnesAre() {
        var store = RetainedStore()
        store.tracksChanges = true
        store.restore(retained("from/disk", "d"))
        var imported = retained("from/mosquitto", "m")
        imported.retain = false
        store.importMessage(imported)
        #expect(store.count == 2)
        #expect(store.takeChanges().map(\.topic) == ["from/mosquitto"])
        #expect(store["from/mosquitto"]?.retain == true)
    }

    @Test func retainHandlingDecidesWhetherASubscriptionReceivesRetainedMessages() {
        #expect(RetainedStore.sendsOnSubscribe(.sendOnSubscribe, filter: "a/#", existed: false))
        #expect(RetainedStore.sendsOnSubscribe(.sendOnSubscribe, filter: "a/#", existed: true))
        #expect(RetainedStore.sendsOnSubscribe(.sendOnSubscribeIfNew, filter: "a/#", existed: false))
        #expect(!RetainedStore.sendsOnSubscribe(.sendOnSubscribeIfNew, filter: "a/#", existed: true))
        #expect(!RetainedStore.sendsOnSubscribe(.doNotSend, filter: "a/#", existed: false))
        #expect(!RetainedStore.sendsOnSubscribe(.sendOnSubscribe, filter: "$share/g/a/#", existed: false))
        #expect(!RetainedStore.sendsOnSubscribe(.sendOnSubscribeIfNew, filter: "$share/g/a/#", existed: false))
    }

    @Test func aNewSubscriptionGetsTheMatchingMessagesInTopicOrder() {
        var store = RetainedStore()
        for topic in ["s/c", "s/a", "other", "s/b/deep"] { store.store(retained(topic, topic)) }
        let sent = deliveries(&store, "s/#", qos: .atMostOnce, identifier: 7)
        #expect(sent.map(\.message.topic) == ["s/a", "s/b/deep", "s/c"])
        #expect(sent.allSatisfy { $0.retain && $0.qos == .atMostOnce && $0.subscriptionIdentifiers == [7] })
        #expect(deliveries(&store, "s/+").map(\.message.topic) == ["s/a", "s/c"])
        #expect(deliveries(&store, "none/#").isEmpty)
    }

    @Test func theDeliveredQoSIsTheLowerOfTheTwoUnlessUpgraded() {
        var store = RetainedStore()
        store.store(retained("t", "x", qos: .atLeastOnce))
        #expect(deliveries(&store, "t", qos: .exactlyOnce).map(\.qos) == [.atLeastOnce])
        #expect(deliveries(&store, "t", qos: .atMostOnce).map(\.qos) == [.atMostOnce])
        var upgrading = BrokerSettings()
        upgrading.upgradeOutgoingQoS = true
        #expect(deliveries(&store, "t", qos: .exactlyOnce, settings: upgrading).map(\.qos) == [.exactlyOnce])
    }

    @Test func anExpiredMessageIsDeletedInsteadOfSent() {
        var store = RetainedStore()
        store.tracksChanges = true
        store.store(retained("t/old", "x", expiresAt: 500))
        store.store(retained("t/new", "y", expiresAt: 2_000))
        _ = store.takeChanges()
        #expect(deliveries(&store, "t/#", now: 500).map(\.message.topic) == ["t/new"])
        #expect(store["t/old"] == nil)
        let changes = store.takeChanges()
        #expect(changes.map(\.topic) == ["t/old"] && changes.first?.message == nil)
    }

    @Test func aSubscriberThatMayNotReadGetsNothingAndTheMessageStays() {
        var store = RetainedStore()
        store.store(retained("t", "x"))
        let policy = ListPolicy(readers: ["alice"])
        #expect(deliveries(&store, "t", username: "bob", policy: policy).isEmpty)
        #expect(deliveries(&store, "t", username: "alice", policy: policy).count == 1)
        #expect(store.count == 1)
    }

    @Test func checkRetainSourceHoldsBackAMessageWhosePublisherLostWriteAccess() {
        var store = RetainedStore()
        store.store(retained("t", "x", publisher: Publisher(clientID: "p", username: "alice")))
        store.store(retained("u", "y"))  // no known publisher: not checked
        let policy = ListPolicy(writers: ["bob"], readers: ["reader"])
        var checking = BrokerSettings()
        checking.checkRetainSource = true
        let checked = deliveries(&store, "#", username: "reader", settings: checking, policy: policy)
        #expect(checked.map(\.message.topic) == ["u"])
        #expect(deliveries(&store, "#", username: "reader", policy: policy).map(\.message.topic) == ["t", "u"])
        #expect(store.count == 2)
        let restored = ListPolicy(writers: ["alice"], readers: ["reader"])
        #expect(deliveries(&store, "#", username: "reader", settings: checking, policy: restored).count == 2)
    }
}
