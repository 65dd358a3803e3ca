// Note on topic matching (MQTT 5 §4.7, same rules in 3.1.1):
// - Levels are separated by "/"; empty levels are real levels ("a//b" has three).
// - "+" matches exactly one level, "#" matches the parent level and any number of children
//   ("sport/#" matches "sport") [MQTT-4.7.1-2].
// - A filter starting with a wildcard never matches a topic starting with "$" [MQTT-4.7.2-1].
// - "$share/GROUP/FILTER" is a shared subscription to FILTER; matching uses FILTER.

extension Topic {
    /// Whether `topic` (a valid topic name) matches `filter` (a valid, non-shared topic filter).
    /// Walks both byte by byte without splitting them into levels: the broker asks it for every
    /// retained message a wildcard subscription might receive, and ACL patterns for every message.
    public static func matches(filter: String, topic: String) -> Bool {
        var filter = filter
        var topic = topic
        return filter.withUTF8 { filterBytes in
            topic.withUTF8 { topicBytes in matches(filter: filterBytes, topic: topicBytes) }
        }
    }

    private static func matches(filter: UnsafeBufferPointer<UInt8>, topic: UnsafeBufferPointer<UInt8>) -> Bool {
        let slash = UInt8(ascii: "/")
        let plus = UInt8(ascii: "+")
        let hash = UInt8(ascii: "#")
        /// The end of the level that starts at `start`: the next "/" or the end.
        func levelEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
            var end = start
            while end < bytes.count, bytes[end] != slash { end += 1 }
            return end
        }
        /// Whether the filter level `start..<end` is exactly the wildcard `byte`.
        func isWildcard(_ byte: UInt8, _ start: Int, _ end: Int) -> Bool {
            end == start + 1 && filter[start] == byte
        }
        var filterStart = 0
        var topicStart = 0
        let firstFilterEnd = levelEnd(filter, from: 0)
        if topic.first == UInt8(ascii: "$"), isWildcard(plus, 0, firstFilterEnd) || isWildcard(hash, 0, firstFilterEnd)
        {
            return false
        }
        var topicExhausted = false
        while true {
            let filterEnd = levelEnd(filter, from: filterStart)
            if isWildcard(hash, filterStart, filterEnd) { return true }
            if topicExhausted { return false }
            let topicEnd = levelEnd(topic, from: topicStart)
            if !isWildcard(plus, filterStart, filterEnd) {
                guard filterEnd - filterStart == topicEnd - topicStart else { return false }
                var offset = 0
                while filterStart + offset < filterEnd {
                    if filter[filterStart + offset] != topic[topicStart + offset] { return false }
                    offset += 1
                }
            }
            if topicEnd == topic.count { topicExhausted = true } else { topicStart = topicEnd + 1 }
            if filterEnd == filter.count { return topicExhausted }
            filterStart = filterEnd + 1
        }
    }

    /// Whether `topicOrFilter` has more than `limit` levels ("a/b" has two, "/" has two). Counts
    /// separators and stops at the first one past the limit, so a 65,535-level topic costs little.
    /// Inlinable: the broker checks every PUBLISH with it, and unspecialised it walks the generic view.
    @inlinable
    public static func exceedsLevels(_ topicOrFilter: some StringProtocol, limit: Int) -> Bool {
        // Fewer bytes than the limit cannot hold that many separators: a published topic is not walked.
        if topicOrFilter.utf8.count < limit { return false }
        func exceeds(_ bytes: some Sequence<UInt8>) -> Bool {
            var separators = 0
            for byte in bytes where byte == UInt8(ascii: "/") {
                separators += 1
                if separators >= limit { return true }
            }
            return false
        }
        // A native string's bytes as a buffer: the generic view's iterator costs several times more.
        return topicOrFilter.utf8.withContiguousStorageIfAvailable(exceeds) ?? exceeds(topicOrFilter.utf8)
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
