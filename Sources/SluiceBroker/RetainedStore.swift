import MQTTCore

/// Retained messages (Mosquitto's retain.c): the last retained message per topic, the topics changed
/// since the last save, and which of them a new subscription receives.
struct RetainedStore: Sendable {
    private var messages: [String: Message] = [:]
    /// Topics changed since the last `takeChanges()`, each saved with its message or deleted.
    private var changed: Set<String> = []
    /// Whether changes are recorded: only persistence drains them, so without it they must not
    /// accumulate (every retained topic ever seen would).
    var tracksChanges = false {
        didSet { if !tracksChanges { changed.removeAll() } }
    }

    var count: Int { messages.count }
    var payloadBytes: Int { messages.values.reduce(0) { $0 + $1.payload.readableBytes } }
    subscript(topic: String) -> Message? { messages[topic] }

    /// A message published with retain=1: kept for its topic, or, with an empty payload, clearing it
    /// [MQTT-3.3.1-6].
    mutating func store(_ message: Message) {
        // `$SYS` state is regenerated every interval: not worth saving.
        defer { if message.topic.hasPrefix("$SYS/") { changed.remove(message.topic) } }
        if message.payload.readableBytes == 0 {
            messages[message.topic] = nil
        } else {
            var kept = message
            kept.retain = true
            kept.payload = message.payload.compacted()  // kept for good: not with the buffer it was read into
            messages[message.topic] = kept
        }
        if tracksChanges { changed.insert(message.topic) }
    }

    /// A message read back from the store at start-up: already saved.
    mutating func restore(_ message: Message) {
        messages[message.topic] = message
    }

    /// A message imported from elsewhere (a Mosquitto database): kept, and saved by the next save.
    mutating func importMessage(_ message: Message) {
        var kept = message
        kept.retain = true
        messages[message.topic] = kept
        changed.insert(message.topic)
    }

    /// Each changed topic with its message, or nil when its record is to be deleted.
    mutating func takeChanges() -> [(topic: String, message: Message?)] {
        defer { changed.removeAll(keepingCapacity: true) }
        return changed.map { ($0, messages[$0]) }
    }

    /// Whether a new subscription receives the retained messages it matches (Retain Handling, MQTT 5
    /// 3.8.3.1): 0 always, 1 only when the subscription did not exist, 2 never; a shared subscription
    /// never does, as in Mosquitto.
    static func sendsOnSubscribe(_ handling: RetainHandling, filter: String, existed: Bool) -> Bool {
        guard Topic.sharedSubscription(filter) == nil else { return false }
        switch handling {
        case .sendOnSubscribe: return true
        case .sendOnSubscribeIfNew: return !existed
        default: return false
        }
    }

    /// The retained messages a new subscription of `clientID` to `filter` receives [MQTT-3.3.1-9],
    /// in topic order. Expired ones are deleted on the way; one the subscriber may not read, or (with
    /// `check_retain_source`) whose publisher may no longer write its topic, is kept but not sent.
    mutating func deliveries(
        for filter: String,
        subscription: Subscription,
        clientID: String,
        username: String?,
        settings: BrokerSettings,
        accessPolicy: (any AccessPolicy)?,
        now: BrokerTime
    ) -> [Delivery] {
        var deliveries: [Delivery] = []
        for topic in matchingTopics(filter).sorted() {
            guard let message = messages[topic] else { continue }
            if let expiresAt = message.expiresAt, expiresAt <= now {
                messages[topic] = nil
                if tracksChanges { changed.insert(topic) }
                continue
            }
            if let accessPolicy {
                guard accessPolicy.mayReceive(clientID: clientID, username: username, topic: topic),
                    Self.sourceMayStillWrite(message, settings: settings, accessPolicy: accessPolicy)
                else { continue }
            }
            deliveries.append(
                Delivery(
                    message: message,
                    qos: settings.deliveredQoS(message.qos, subscription: subscription.options.qos),
                    retain: true,
                    subscriptionIdentifiers: subscription.identifier.map { [$0] } ?? []
                )
            )
        }
        return deliveries
    }

    /// The topics of the retained messages `filter` matches: one lookup for a filter without wildcards;
    /// otherwise every topic is matched, and only the matches are sorted and copied. (Sorting the whole
    /// store for every filter made a SUBSCRIBE of many filters cost each one a sort of every message.)
    private func matchingTopics(_ filter: String) -> [String] {
        guard Topic.hasWildcard(filter) else { return messages[filter] == nil ? [] : [filter] }
        return messages.keys.filter { Topic.matches(filter: filter, topic: $0) }
    }

    /// `check_retain_source`: the publisher of a retained message must still be allowed to write its topic
    /// (checked against the ACL in force now, so a reload that takes the right away hides the message).
    static func sourceMayStillWrite(
        _ message: Message,
        settings: BrokerSettings,
        accessPolicy: any AccessPolicy
    ) -> Bool {
        guard settings.checkRetainSource, let publisher = message.publisher else { return true }
        return accessPolicy.mayPublish(clientID: publisher.clientID, username: publisher.username, topic: message.topic)
    }
}
