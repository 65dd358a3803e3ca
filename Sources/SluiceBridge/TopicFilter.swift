// Note on topic matching (MQTT 5.0 section 4.7, identical in 3.1.1):
// - Levels are separated by "/"; empty levels are levels ("a//b" has three).
// - "+" matches exactly one level and must fill the whole level [MQTT-4.7.1-2].
// - "#" matches the parent level and any number of child levels; it must be the last
//   level and fill it [MQTT-4.7.1-1]. So "a/#" matches "a", "a/" and "a/b/c".
// - A topic starting with "$" is not matched by a filter starting with a wildcard
//   [MQTT-4.7.2-1]: "#" and "+/x" do not match "$SYS/x"; "$SYS/#" does.
// - Comparison is byte-wise on UTF-8 (no Unicode normalisation) [MQTT-4.7.3-4].

/// MQTT topic name and topic filter rules, without any subscription tree.
public enum TopicFilter {
    private static let slash = UInt8(ascii: "/")
    private static let plus = UInt8(ascii: "+")
    private static let hash = UInt8(ascii: "#")
    private static let dollar = UInt8(ascii: "$")

    /// True when `topic` (a topic name, no wildcards) matches `filter` (which may hold `+` and `#`).
    /// Assumes both are valid; an invalid filter simply fails to match where it is invalid.
    public static func matches(filter: String, topic: String) -> Bool {
        let f = filter.utf8.split(separator: slash, omittingEmptySubsequences: false)
        let t = topic.utf8.split(separator: slash, omittingEmptySubsequences: false)
        if topic.utf8.first == dollar, let first = f.first, first.count == 1,
            first.first == plus || first.first == hash
        {
            return false  // [MQTT-4.7.2-1]
        }
        var i = 0
        while i < f.count {
            let level = f[i]
            if level.count == 1 && level.first == hash { return true }
            if i >= t.count { return false }
            if !(level.count == 1 && level.first == plus) && !level.elementsEqual(t[i]) { return false }
            i += 1
        }
        return i == t.count
    }

    /// Why a filter is not valid, or nil when it is. [MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1], [MQTT-4.7.3-2]
    public static func problem(inFilter filter: String) -> String? {
        if filter.isEmpty { return "a topic filter must not be empty" }
        if filter.utf8.contains(0) { return "a topic filter must not contain NUL" }
        if filter.utf8.count > 65535 { return "a topic filter is longer than 65535 bytes" }
        let levels = filter.utf8.split(separator: slash, omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            if level.contains(hash) && (level.count != 1 || index != levels.count - 1) {
                return "'#' must be the last level and alone in it"
            }
            if level.contains(plus) && level.count != 1 {
                return "'+' must fill a whole level"
            }
        }
        return nil
    }

    /// Why a topic name is not valid, or nil when it is. [MQTT-4.7.3-1], [MQTT-4.7.3-2], [MQTT-3.3.2-2]
    public static func problem(inTopicName topic: String) -> String? {
        if topic.isEmpty { return "a topic name must not be empty" }
        if topic.utf8.contains(0) { return "a topic name must not contain NUL" }
        if topic.utf8.count > 65535 { return "a topic name is longer than 65535 bytes" }
        if topic.utf8.contains(plus) || topic.utf8.contains(hash) { return "a topic name must not contain '+' or '#'" }
        return nil
    }

    public static func isValidFilter(_ filter: String) -> Bool { problem(inFilter: filter) == nil }
    public static func isValidTopicName(_ topic: String) -> Bool { problem(inTopicName: topic) == nil }
}
