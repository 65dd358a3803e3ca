import MQTTCore

// Note on bridge topic rules (Mosquitto's `topic PATTERN in|out|both QOS LOCAL_PREFIX REMOTE_PREFIX`):
// - The local filter is LOCAL_PREFIX + PATTERN, the remote filter REMOTE_PREFIX + PATTERN, by plain
//   concatenation (so a prefix normally ends in "/"). Prefixes must not contain wildcards.
// - Remapping strips one prefix and prepends the other: with `topic # out 1 local/ remote/`,
//   local "local/a/b" goes out as "remote/a/b".
// - PATTERN "" (written `""` in the config) means each prefix is a whole topic; Mosquitto then
//   requires both prefixes ("Invalid bridge remapping" otherwise).
// - "#" also matches the parent level: `local/#` matches "local". Such a topic maps to the other
//   prefix without its trailing "/" ("remote"); if that leaves nothing, there is no mapping.
// - The first matching rule wins, as in Mosquitto.

/// Which way a bridge topic rule carries messages.
public enum BridgeDirection: String, Sendable, Hashable, CaseIterable {
    /// Remote → local: subscribe on the remote, republish locally.
    case `in`
    /// Local → remote: queued locally, published on the remote.
    case out
    case both

    public var isOutbound: Bool { self != .in }
    public var isInbound: Bool { self != .out }
}

/// A rejected bridge topic rule. The message names the offending input.
public struct TopicRuleError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case invalidPattern
        case wildcardInPrefix
        case invalidPrefix
        case emptyPatternNeedsBothPrefixes
        case invalidCombinedFilter
    }

    public var code: Code
    /// The exact input that is wrong (a pattern, a prefix or a combined filter).
    public var input: String
    public var message: String

    public init(_ code: Code, input: String, _ message: String) {
        self.code = code
        self.input = input
        self.message = message
    }

    public var description: String { message }
}

/// One bridge `topic` line, validated.
public struct TopicRule: Sendable, Hashable {
    public let pattern: String
    public let direction: BridgeDirection
    public let qos: QoS
    public let localPrefix: String
    public let remotePrefix: String

    public init(
        pattern: String,
        direction: BridgeDirection = .out,
        qos: QoS = .atMostOnce,
        localPrefix: String = "",
        remotePrefix: String = ""
    ) throws(TopicRuleError) {
        for (name, prefix) in [("local prefix", localPrefix), ("remote prefix", remotePrefix)] {
            if prefix.utf8.contains(UInt8(ascii: "+")) || prefix.utf8.contains(UInt8(ascii: "#")) {
                throw TopicRuleError(
                    .wildcardInPrefix,
                    input: prefix,
                    "bridge topic \(name) '\(prefix)' must not contain '+' or '#'"
                )
            }
            if prefix.utf8.contains(0) {
                throw TopicRuleError(.invalidPrefix, input: prefix, "bridge topic \(name) '\(prefix)' contains NUL")
            }
        }
        if pattern.isEmpty {
            if localPrefix.isEmpty || remotePrefix.isEmpty {
                throw TopicRuleError(
                    .emptyPatternNeedsBothPrefixes,
                    input: pattern,
                    "bridge topic pattern \"\" needs both a local and a remote prefix (got '\(localPrefix)' and '\(remotePrefix)')"
                )
            }
        } else if let problem = Topic.filterProblem(pattern) {
            throw TopicRuleError(.invalidPattern, input: pattern, "bridge topic pattern '\(pattern)': \(problem)")
        }
        for filter in [localPrefix + pattern, remotePrefix + pattern] {
            if let problem = Topic.filterProblem(filter) {
                throw TopicRuleError(
                    .invalidCombinedFilter,
                    input: filter,
                    "bridge topic '\(pattern)' with prefix gives the invalid filter '\(filter)': \(problem)"
                )
            }
        }
        self.pattern = pattern
        self.direction = direction
        self.qos = qos
        self.localPrefix = localPrefix
        self.remotePrefix = remotePrefix
    }

    /// What the bridge subscribes to on the local broker (for `out` and `both`).
    public var localFilter: String { localPrefix + pattern }
    /// What the bridge subscribes to on the remote broker (for `in` and `both`).
    public var remoteFilter: String { remotePrefix + pattern }

    /// The remote topic for a local topic matching `localFilter`, or nil when it does not match.
    /// Direction is not checked here; `BridgeRules` does that.
    public func remoteTopic(forLocal topic: String) -> String? {
        Self.remap(topic, filter: localFilter, from: localPrefix, to: remotePrefix)
    }

    /// The local topic for a remote topic matching `remoteFilter`, or nil when it does not match.
    public func localTopic(forRemote topic: String) -> String? {
        Self.remap(topic, filter: remoteFilter, from: remotePrefix, to: localPrefix)
    }

    /// `remoteTopic(forLocal:)` for a topic already known to match `localFilter` (the broker's subscription
    /// trie matched it): the prefix swap alone, without matching again.
    public func remoteTopic(forMatchedLocal topic: String) -> String? {
        Self.swapPrefix(topic, from: localPrefix, to: remotePrefix)
    }

    private static func remap(_ topic: String, filter: String, from: String, to: String) -> String? {
        guard Topic.matches(filter: filter, topic: topic) else { return nil }
        return swapPrefix(topic, from: from, to: to)
    }

    private static func swapPrefix(_ topic: String, from: String, to: String) -> String? {
        let result: String
        if topic.utf8.starts(with: from.utf8) {
            // The prefix is valid UTF-8 matched byte-wise, so the cut falls on a scalar boundary.
            result = to + String(decoding: topic.utf8.dropFirst(from.utf8.count), as: UTF8.self)
        } else if from.utf8.last == UInt8(ascii: "/"), topic.utf8.elementsEqual(from.utf8.dropLast()) {
            // "#" matched the parent level: "a/#" and "a".
            result = to.utf8.last == UInt8(ascii: "/") ? String(decoding: to.utf8.dropLast(), as: UTF8.self) : to
        } else {
            return nil
        }
        return (try? Topic.validateName(result)) != nil ? result : nil
    }
}

/// A remapped topic and the rule that produced it.
public struct TopicMapping: Sendable, Hashable {
    public var topic: String
    /// For outbound mappings, the QoS to use on the remote: 0 if the rule says 0, else 1 (the bridge
    /// relays at QoS 1). For inbound mappings, the rule's QoS (the cap for the local republish).
    public var qos: QoS
    /// Index of the matching rule in `BridgeRules.rules`.
    public var ruleIndex: Int

    public init(topic: String, qos: QoS, ruleIndex: Int) {
        self.topic = topic
        self.qos = qos
        self.ruleIndex = ruleIndex
    }
}

/// All topic rules of one bridge connection, in configuration order.
public struct BridgeRules: Sendable, Hashable {
    public let rules: [TopicRule]

    public init(_ rules: [TopicRule]) { self.rules = rules }

    public var hasInbound: Bool { rules.contains { $0.direction.isInbound } }
    public var hasOutbound: Bool { rules.contains { $0.direction.isOutbound } }

    /// The local subscriptions the bridge needs for `out`/`both` rules (duplicates removed, order kept).
    public var localSubscriptions: [TopicSubscription] {
        Self.unique(rules.filter { $0.direction.isOutbound }.map { ($0.localFilter, $0.qos) }, noLocal: false)
    }

    /// The remote subscriptions for `in`/`both` rules. `noLocal` is for MQTT 5 loop prevention.
    public func remoteSubscriptions(noLocal: Bool) -> [TopicSubscription] {
        Self.unique(rules.filter { $0.direction.isInbound }.map { ($0.remoteFilter, $0.qos) }, noLocal: noLocal)
    }

    /// The remote filters of `out` rules that no `in`/`both` rule subscribes (duplicates removed, order kept):
    /// what `bridge_attempt_unsubscribe` unsubscribes at connect, as Mosquitto does for each `out` topic.
    /// Unlike Mosquitto, a filter an inbound rule subscribes is left alone rather than unsubscribed again.
    public var remoteOutboundOnlyFilters: [String] {
        let subscribed = Set(rules.filter { $0.direction.isInbound }.map(\.remoteFilter))
        var seen: Set<String> = []
        return rules.filter { $0.direction == .out }.map(\.remoteFilter).filter {
            !subscribed.contains($0) && seen.insert($0).inserted
        }
    }

    /// Where a local PUBLISH goes on the remote: the first `out`/`both` rule that matches, or nil.
    public func outbound(forLocal topic: String) -> TopicMapping? {
        for (index, rule) in rules.enumerated() where rule.direction.isOutbound {
            if let remote = rule.remoteTopic(forLocal: topic) {
                return TopicMapping(
                    topic: remote,
                    qos: rule.qos == .atMostOnce ? .atMostOnce : .atLeastOnce,
                    ruleIndex: index
                )
            }
        }
        return nil
    }

    /// Where a remote PUBLISH goes locally: the first `in`/`both` rule that matches, or nil.
    public func inbound(forRemote topic: String) -> TopicMapping? {
        for (index, rule) in rules.enumerated() where rule.direction.isInbound {
            if let local = rule.localTopic(forRemote: topic) {
                return TopicMapping(topic: local, qos: rule.qos, ruleIndex: index)
            }
        }
        return nil
    }

    private static func unique(_ pairs: [(String, QoS)], noLocal: Bool) -> [TopicSubscription] {
        var seen: [String: Int] = [:]
        var result: [TopicSubscription] = []
        for (filter, qos) in pairs {
            if let i = seen[filter] {
                // Same filter twice: one subscription at the higher QoS.
                result[i].options.qos = max(result[i].options.qos, qos)
                continue
            }
            seen[filter] = result.count
            let options = SubscriptionOptions(qos: qos, noLocal: noLocal, retainAsPublished: noLocal)
            result.append(TopicSubscription(filter: filter, options: options))
        }
        return result
    }
}
