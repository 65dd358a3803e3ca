// Note on topic matching (MQTT 5 §4.7, same rules in 3.1.1):
// - Levels are separated by "/"; empty levels are real levels ("a//b" has three).
// - "+" matches exactly one level, "#" matches the parent level and any number of children
//   ("sport/#" matches "sport") [MQTT-4.7.1-2].
// - A filter starting with a wildcard never matches a topic starting with "$" [MQTT-4.7.2-1].
// - "$share/GROUP/FILTER" is a shared subscription to FILTER; matching uses FILTER.

extension Topic {
    /// Whether `topic` (a valid topic name) matches `filter` (a valid, non-shared topic filter).
    public static func matches(filter: String, topic: String) -> Bool {
        var filterLevels = filter.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)[...]
        var topicLevels = topic.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)[...]
        if topic.utf8.first == UInt8(ascii: "$"), let first = filterLevels.first,
            first.elementsEqual("+".utf8) || first.elementsEqual("#".utf8)
        {
            return false
        }
        while let level = filterLevels.popFirst() {
            if level.elementsEqual("#".utf8) { return true }
            guard let topicLevel = topicLevels.popFirst() else { return false }
            if level.elementsEqual("+".utf8) { continue }
            if !level.elementsEqual(topicLevel) { return false }
        }
        return topicLevels.isEmpty
    }

    /// Whether `topicOrFilter` has more than `limit` levels ("a/b" has two, "/" has two). Counts
    /// separators and stops at the first one past the limit, so a 65,535-level topic costs little.
    /// Inlinable: the broker checks every PUBLISH with it, and unspecialised it walks the generic view.
    @inlinable
    public static func exceedsLevels(_ topicOrFilter: some StringProtocol, limit: Int) -> Bool {
        var separators = 0
        for byte in topicOrFilter.utf8 where byte == UInt8(ascii: "/") {
            separators += 1
            if separators >= limit { return true }
        }
        return false
    }

    /// True when the filter contains a wildcard level.
    public static func hasWildcard(_ filter: String) -> Bool {
        filter.utf8.contains(UInt8(ascii: "+")) || filter.utf8.contains(UInt8(ascii: "#"))
    }

    /// Why `filter` is not a valid topic filter, or nil when it is (for messages naming the input).
    public static func filterProblem(_ filter: String) -> String? {
        do {
            try validateFilter(filter)
            return nil
        } catch {
            return error.message
        }
    }

    /// Why `name` is not a valid topic name, or nil when it is (for messages naming the input).
    public static func nameProblem(_ name: String) -> String? {
        var name = name
        return name.withUTF8 { nameError($0) }?.message
    }
}
