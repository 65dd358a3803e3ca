import MQTTCore

// Note on `topic` lines (Mosquitto's rules):
//   topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX]
// Direction defaults to out, QoS to 0. `""` is an empty token (a prefix, or the pattern when
// both prefixes are given: the prefixes are then the full local and remote topics). Prefixes
// carry no wildcards, and prefix + pattern must be a valid filter (`gw` + `#` is not: write `gw/`).
// Sluice's additions come only after all five fields, as `WORD VALUE` pairs, so a pattern or prefix
// that happens to read "priority" is never mistaken for one:
//   topic alarms/# out 1 "" site1/ priority 0 ttl 1h
// `priority` (0 first … 9, default 9) and `ttl` apply to the out direction, so an `in` rule refuses them.

extension BridgeTopic {
    init(parsing directive: Directive) throws(ConfigError) {
        let words = try Self.tokens(directive)
        // `topic a/# out 1 priority 0` would read `priority` as a prefix: say where the options go.
        let optionHint =
            words.prefix(5).dropFirst().contains { $0 == "priority" || $0 == "ttl" }
            ? " ('priority' and 'ttl' come after all five fields: PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX, \"\" for an empty prefix)"
            : ""
        func bad(_ message: String) -> ConfigError { directive.error(.badTopic, message + optionHint) }
        switch words.count {
        case 0: throw directive.error(.missingValue, "a topic pattern is required")
        case 4: throw bad("a local prefix needs a remote prefix after it (write \"\" for none)")
        default: break
        }
        self.init(pattern: words[0])
        if words.count >= 2 {
            guard let direction = Direction(rawValue: words[1]) else {
                throw bad("expected direction in, out or both, got '\(words[1])'")
            }
            self.direction = direction
        }
        if words.count >= 3 {
            guard let qos = Int(words[2]), (0...2).contains(qos) else {
                throw bad("expected QoS 0, 1 or 2, got '\(words[2])'")
            }
            self.qos = qos
        }
        if words.count >= 5 {
            localPrefix = words[3]
            remotePrefix = words[4]
            for (which, prefix) in [("local", localPrefix), ("remote", remotePrefix)]
            where Topic.hasWildcard(prefix) {
                throw bad("the \(which) prefix must not contain '+' or '#', got '\(prefix)'")
            }
        }
        if pattern.isEmpty {
            guard !localPrefix.isEmpty, !remotePrefix.isEmpty else {
                throw bad("an empty pattern (\"\") needs a local and a remote prefix, which are then the full topics")
            }
        } else if let problem = Topic.filterProblem(pattern) {
            throw bad("'\(pattern)' is not a valid topic filter: \(problem)")
        }
        for (which, topic) in [("local", localTopic), ("remote", remoteTopic)] {
            if let problem = Topic.filterProblem(topic) {
                throw bad("the \(which) topic '\(topic)' (prefix + pattern) is not a valid topic filter: \(problem)")
            }
        }
        if words.count > 5 { try parseOptions(Array(words[5...]), directive) }
    }

    /// `priority N` and `ttl DURATION` pairs after the five Mosquitto fields.
    private mutating func parseOptions(_ words: [String], _ directive: Directive) throws(ConfigError) {
        func bad(_ message: String) -> ConfigError { directive.error(.badTopic, message) }
        var index = 0
        while index < words.count {
            let option = words[index]
            guard option == "priority" || option == "ttl" else {
                throw directive.error(
                    .tooManyValues,
                    "expected at most 5 values (PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX), then only 'priority N' or 'ttl DURATION', got '\(option)'"
                )
            }
            guard index + 1 < words.count else { throw bad("'\(option)' needs a value after it") }
            let value = words[index + 1]
            index += 2
            if option == "priority" {
                guard priority == nil else { throw bad("'priority' is given twice") }
                guard value.allSatisfy(\.isASCIIDigit), let number = Int(value), Self.priorities.contains(number) else {
                    throw bad("expected priority 0 (first) to 9 (last), got '\(value)'")
                }
                priority = number
            } else {
                guard ttl == nil else { throw bad("'ttl' is given twice") }
                var valueDirective = directive
                valueDirective.rest = value
                valueDirective.values = [value]
                do {
                    ttl = try valueDirective.duration()
                } catch {
                    throw bad("ttl: \(error.message)")
                }
            }
        }
        if direction == .in {
            throw bad("'priority' and 'ttl' order and age out messages going out: an 'in' rule takes neither")
        }
    }

    /// Splits on blanks; a double-quoted stretch is part of a token and `""` is an empty token.
    private static func tokens(_ directive: Directive) throws(ConfigError) -> [String] {
        var words: [String] = []
        var current = ""
        var inToken = false
        var quoted = false
        for character in directive.rest {
            if character == "\"" {
                quoted.toggle()
                inToken = true
            } else if !quoted && (character == " " || character == "\t") {
                if inToken { words.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(character)
                inToken = true
            }
        }
        if quoted { throw directive.error(.badTopic, "a double quote is not closed") }
        if inToken { words.append(current) }
        return words
    }
}
