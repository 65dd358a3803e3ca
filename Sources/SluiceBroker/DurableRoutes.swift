import MQTTCore
import SluiceBridge

// Note on the durable path (issue 17, "one durable path"):
// - Each bridge's `out`/`both` rules are internal durable subscribers in the broker's SubscriptionTree, as
//   Mosquitto's bridges are (src/bridge.c). Routing a published message matches the trie once and yields,
//   besides the local deliveries, one `DurableAppend` per bridge with its topic already remapped.
// - Internal subscribers are not sessions or clients: they are kept apart from `subscribers`/`shared` in each
//   node, so `$share`, no-local, ACLs, subscription counts and `$SYS` never see them.
// - A SIGHUP reload replaces all of them in one `setBridgeOutbound` call on the broker loop: there is one
//   table, so a message is routed either wholly under the old rules or wholly under the new ones.

/// Where a rule's messages are queued: its priority class queue and the TTL it gives them.
public struct DurableQueueClass: Sendable, Hashable {
    public var queue: String
    /// Seconds; nil = none.
    public var ttl: UInt32?

    public init(queue: String, ttl: UInt32?) {
        self.queue = queue
        self.ttl = ttl
    }
}

/// One bridge's outbound side as the broker routes it: its topic rules and, per rule index, its queue.
public struct BridgeOutbound: Sendable, Hashable {
    public var rules: BridgeRules
    /// By rule index (as in `rules.rules`); a rule without an entry goes to `defaultQueue`.
    public var classes: [DurableQueueClass]
    public var defaultQueue: DurableQueueClass

    public init(rules: BridgeRules, classes: [DurableQueueClass], defaultQueue: DurableQueueClass) {
        self.rules = rules
        self.classes = classes
        self.defaultQueue = defaultQueue
    }

    func queueClass(forRule index: Int) -> DurableQueueClass {
        classes.indices.contains(index) ? classes[index] : defaultQueue
    }
}

/// A durable append that routing a message yielded: for bridge `bridge` (its index in the table given to
/// `Broker.setBridgeOutbound`), the topic remapped by its first matching `out` rule, and that rule's queue.
public struct DurableAppend: Sendable, Hashable {
    public var bridge: Int
    public var rule: Int
    public var topic: String
    /// On the remote: 0 if the rule says 0, else 1 (the bridge relays at QoS 1).
    public var qos: QoS
    public var queue: DurableQueueClass

    public init(bridge: Int, rule: Int, topic: String, qos: QoS, queue: DurableQueueClass) {
        self.bridge = bridge
        self.rule = rule
        self.topic = topic
        self.qos = qos
        self.queue = queue
    }
}

/// An internal subscriber in a trie node: bridge `bridge`'s rule `rule`.
struct DurableSubscriber: Sendable, Hashable {
    var bridge: Int
    var rule: Int
}

extension BridgeOutbound {
    /// The appends for the internal subscribers a match found (any order, any number per bridge): per bridge,
    /// the first rule in configuration order whose remapping gives a valid topic, as `BridgeRules.outbound`.
    static func appends(for topic: String, matched: [DurableSubscriber], in table: [BridgeOutbound]) -> [DurableAppend]
    {
        guard !matched.isEmpty else { return [] }
        let ordered = matched.count == 1 ? matched : matched.sorted { ($0.bridge, $0.rule) < ($1.bridge, $1.rule) }
        var appends: [DurableAppend] = []
        for subscriber in ordered where table.indices.contains(subscriber.bridge) {
            if appends.last?.bridge == subscriber.bridge { continue }  // an earlier rule of this bridge won
            let outbound = table[subscriber.bridge]
            guard outbound.rules.rules.indices.contains(subscriber.rule) else { continue }
            let topicRule = outbound.rules.rules[subscriber.rule]
            guard let remote = topicRule.remoteTopic(forMatchedLocal: topic) else { continue }
            appends.append(
                DurableAppend(
                    bridge: subscriber.bridge,
                    rule: subscriber.rule,
                    topic: remote,
                    qos: topicRule.qos == .atMostOnce ? .atMostOnce : .atLeastOnce,
                    queue: outbound.queueClass(forRule: subscriber.rule)
                )
            )
        }
        return appends
    }
}

extension Broker {
    /// The bridges' outbound tables in force (by bridge index).
    public var bridgeOutbound: [BridgeOutbound] { outboundTable }

    /// Installs (or on SIGHUP replaces, in one step) every bridge's `out` rules as internal durable subscribers.
    public mutating func setBridgeOutbound(_ table: [BridgeOutbound]) {
        var entries: [(filter: String, subscriber: DurableSubscriber)] = []
        for (bridge, outbound) in table.enumerated() {
            for (rule, topicRule) in outbound.rules.rules.enumerated() where topicRule.direction.isOutbound {
                entries.append((topicRule.localFilter, DurableSubscriber(bridge: bridge, rule: rule)))
            }
        }
        subscriptions.replaceDurable(entries)
        outboundTable = table
    }
}
