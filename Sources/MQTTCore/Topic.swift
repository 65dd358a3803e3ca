// A note on topic names and filters (spec 4.7, 4.8.2). Both are UTF-8 strings of 1...65,535 bytes
// with no U+0000 [MQTT-4.7.3-1] [MQTT-4.7.3-2] [MQTT-4.7.3-3]. A topic name (what PUBLISH carries)
// has no wildcards [MQTT-3.3.2-2]. In a filter, '#' must be the last character and alone in its level
// [MQTT-4.7.1-1], and '+' must be alone in its level [MQTT-4.7.1-2]; empty levels ("a//b", "/a") are
// fine. A shared subscription is "$share/GROUP/FILTER": GROUP is non-empty with no '/', '+' or '#'
// and FILTER is a valid filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]. '$' topics are the broker's business, not
// the codec's. All checks run on the UTF-8 bytes, once.

/// Topic name and topic filter validation.
public enum Topic {
    /// The longest topic name or filter the wire can carry (spec 1.5.4).
    public static let maximumLength = 65_535

    /// The prefix of a shared subscription filter (spec 4.8.2).
    public static let sharedPrefix = "$share/"

    /// Checks a topic name as PUBLISH and will messages carry it. Throws `.topicNameInvalid`.
    public static func validateName(_ topic: String) throws(MQTTError) {
        var topic = topic
        if let error = topic.withUTF8({ nameError($0) }) { throw error }
    }

    /// Checks a topic filter as SUBSCRIBE and UNSUBSCRIBE carry it, including `$share/GROUP/FILTER`.
    /// Throws `.topicFilterInvalid`.
    public static func validateFilter(_ filter: String) throws(MQTTError) {
        var filter = filter
        if let error = filter.withUTF8({ filterError($0) }) { throw error }
    }

    /// Splits a shared subscription filter `$share/GROUP/FILTER` into its group and filter; nil when
    /// `filter` is not a shared subscription. Does not validate: call `validateFilter` first.
    public static func sharedSubscription(_ filter: String) -> (group: Substring, filter: Substring)? {
        guard filter.hasPrefix(sharedPrefix) else { return nil }
        let rest = filter.dropFirst(sharedPrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return (rest[rest.startIndex..<slash], rest[rest.index(after: slash)...])
    }

    /// True when `filter` starts with `$share/`.
    public static func isShared(_ filter: String) -> Bool { filter.hasPrefix(sharedPrefix) }

    // MARK: Byte-level checks

    private static let plus = UInt8(ascii: "+")
    private static let hash = UInt8(ascii: "#")
    private static let slash = UInt8(ascii: "/")

    static let wildcardInName = MQTTError.topicNameInvalid("topic name contains a wildcard [MQTT-3.3.2-2]")

    static func nameError(_ bytes: UnsafeBufferPointer<UInt8>) -> MQTTError? {
        guard !bytes.isEmpty else { return .topicNameInvalid("topic name is empty [MQTT-4.7.3-1]") }
        guard bytes.count <= maximumLength else {
            return .topicNameInvalid("topic name longer than 65535 bytes [MQTT-4.7.3-3]")
        }
        for byte in bytes {
            switch byte {
            case plus, hash:
                return wildcardInName
            case 0:
                return .topicNameInvalid("topic name contains U+0000 [MQTT-4.7.3-2]")
            default:
                continue
            }
        }
        return nil
    }

    static func filterError(_ bytes: UnsafeBufferPointer<UInt8>) -> MQTTError? {
        guard !bytes.isEmpty else { return .topicFilterInvalid("topic filter is empty [MQTT-4.7.3-1]") }
        guard bytes.count <= maximumLength else {
            return .topicFilterInvalid("topic filter longer than 65535 bytes [MQTT-4.7.3-3]")
        }
        var start = 0
        if bytes.starts(with: sharedPrefix.utf8) {
            let groupStart = sharedPrefix.utf8.count
            var index = groupStart
            while index < bytes.count, bytes[index] != slash {
                switch bytes[index] {
                case plus, hash:
                    return .topicFilterInvalid("shared subscription group contains a wildcard [MQTT-4.8.2-2]")
                default:
                    index += 1
                }
            }
            guard index > groupStart else {
                return .topicFilterInvalid("shared subscription group is empty [MQTT-4.8.2-1]")
            }
            guard index + 1 < bytes.count else {
                return .topicFilterInvalid("shared subscription has no topic filter [MQTT-4.8.2-1]")
            }
            start = index + 1
        }
        var levelStart = start
        var index = start
        let end = bytes.count
        while index < end {
            let byte = bytes[index]
            switch byte {
            case slash:
                levelStart = index + 1
            case hash:
                // [MQTT-4.7.1-1] alone in its level and last.
                guard index == levelStart, index == end - 1 else {
                    return .topicFilterInvalid("'#' must be alone in the last level [MQTT-4.7.1-1]")
                }
            case plus:
                // [MQTT-4.7.1-2] alone in its level.
                guard index == levelStart, index == end - 1 || bytes[index + 1] == slash else {
                    return .topicFilterInvalid("'+' must be alone in its level [MQTT-4.7.1-2]")
                }
            case 0:
                return .topicFilterInvalid("topic filter contains U+0000 [MQTT-4.7.3-2]")
            default:
                break
            }
            index += 1
        }
        return nil
    }
}
