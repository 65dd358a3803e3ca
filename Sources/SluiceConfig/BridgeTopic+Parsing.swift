// Note on `topic` lines (Mosquitto's rules):
//   topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX]
// Direction defaults to out, QoS to 0. `""` is an empty token (a prefix, or the pattern when
// both prefixes are given: the prefixes are then the full local and remote topics). Prefixes
// carry no wildcards, and prefix + pattern must be a valid filter (`gw` + `#` is not: write `gw/`).

extension BridgeTopic {
    init(parsing directive: Directive) throws(ConfigError) {
        let words = try Self.tokens(directive)
        func bad(_ message: String) -> ConfigError { directive.error(.badTopic, message) }
        switch words.count {
        case 0: throw directive.error(.missingValue, "a topic pattern is required")
        case 4: throw bad("a local prefix needs a remote prefix after it (write \"\" for none)")
        case 6...:
            throw directive.error(
                .tooManyValues,
                "expected at most 5 values (PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX), got \(words.count)"
            )
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
        if words.count == 5 {
            localPrefix = words[3]
            remotePrefix = words[4]
            for (which, prefix) in [("local", localPrefix), ("remote", remotePrefix)]
            where prefix.contains("+") || prefix.contains("#") {
                throw bad("the \(which) prefix must not contain '+' or '#', got '\(prefix)'")
            }
        }
        if pattern.isEmpty {
            guard !localPrefix.isEmpty, !remotePrefix.isEmpty else {
                throw bad("an empty pattern (\"\") needs a local and a remote prefix, which are then the full topics")
            }
        } else if let problem = TopicSyntax.filterProblem(pattern) {
            throw bad("'\(pattern)' is not a valid topic filter: \(problem)")
        }
        for (which, topic) in [("local", localTopic), ("remote", remoteTopic)] {
            if let problem = TopicSyntax.filterProblem(topic) {
                throw bad("the \(which) topic '\(topic)' (prefix + pattern) is not a valid topic filter: \(problem)")
            }
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
