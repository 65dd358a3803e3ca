import MQTTCore
import SluiceBroker
import SluicePOSIX

// A note on Mosquitto's ACL file (`acl_file`), as Mosquitto 2.0 reads it (`src/security_default.c`):
//
// - `user NAME` starts NAME's section (the rest of the line, trimmed: names may contain spaces). A second
//   `user NAME` line for the same name adds to the same section.
// - `topic [read|write|readwrite|deny] TOPIC` adds to the current section; without an access word the
//   access is readwrite. With an access word the topic is the rest of the line, so it may contain spaces.
// - `topic` lines before the first `user` line apply to ANONYMOUS clients only (no username). A client with
//   a username gets its own section (if any) and the patterns; nothing else.
// - `pattern [read|write|readwrite|deny] TOPIC` applies to every client, with `%c` replaced by the client
//   id and `%u` by the username. A pattern containing `%u` never applies to anonymous clients. Patterns
//   never apply to a client whose username or client id contains `+` or `#` (it could widen the rule).
// - `#` at the start of a line is a comment; anything else unknown is an error naming the line.
// - Publishing (write) and receiving (read): the concrete topic must match the entry's topic taken as a
//   filter. A topic beginning with `$` only matches entries beginning with `$`: reading `$SYS/...` needs
//   an explicit `$SYS/...` rule; `#` alone does not grant it.
// - Deny: Mosquitto's docs say deny entries are handled before entries that grant access. Mosquitto 2.0
//   does that within the user's section and within the patterns, but checks the section first, so a
//   section allow beats a pattern deny. Sluice checks every applicable deny first (section and patterns),
//   which is the documented meaning and never grants more than Mosquitto.
// - Subscribing: Mosquitto 2.0.11's ACL check grants EVERY subscription (its code says "FIXME - implement
//   ACL subscription strings"; verified: `mosquitto_sub -t '#'` by a user limited to `sensors/#` gets
//   SUBACK 0) and only filters delivery by read access. Sluice by default checks the requested filter
//   against read entries the way Mosquitto 2.1's `mosquitto_sub_matches_acl` does: the filter must be
//   covered by an entry (`a/#` is covered by `a/#` or `#`, not by `a/b`; a `+` level needs `+` or `#` in
//   the entry). `SubscriptionCheck.deliveryOnly` restores 2.0's behaviour. Delivery is always checked.

/// Mosquitto's ACL file format, as an `AccessPolicy` for the broker.
///
/// With no ACL file there is no policy at all and everything is allowed; an empty ACL file allows nothing.
public struct AccessControlList: AccessPolicy, Sendable {
    /// What an entry grants.
    public enum Access: String, Sendable, Equatable {
        case read
        case write
        case readwrite
        case deny

        var allowsRead: Bool { self == .read || self == .readwrite }
        var allowsWrite: Bool { self == .write || self == .readwrite }
    }

    /// One `topic` or `pattern` line.
    public struct Entry: Sendable, Equatable {
        public var access: Access
        /// The topic filter as written (patterns still contain `%c` / `%u`).
        public var topic: String
        /// The line it came from.
        public var line: Int
    }

    /// How SUBSCRIBE requests are judged (delivery is always checked with read access).
    public enum SubscriptionCheck: Sendable, Equatable {
        /// The requested filter must be covered by a read/readwrite entry (Mosquitto 2.1's rule). Default.
        case covered
        /// Every subscription is granted and only delivery is filtered (Mosquitto 2.0's behaviour).
        case deliveryOnly
    }

    /// Entries before the first `user` line: anonymous clients.
    public private(set) var anonymous: [Entry]
    /// Each user's section.
    public private(set) var users: [String: [Entry]]
    /// `pattern` lines, for every client.
    public private(set) var patterns: [Entry]
    public var subscriptionCheck: SubscriptionCheck = .covered

    init(anonymous: [Entry], users: [String: [Entry]], patterns: [Entry]) {
        self.anonymous = anonymous
        self.users = users
        self.patterns = patterns
    }

    /// Reads and parses the ACL file at `path`.
    public static func load(path: String) throws(AuthError) -> AccessControlList {
        try parse(try readTextFile(path), fileName: path)
    }

    /// Parses ACL file text; `fileName` is used in error messages.
    public static func parse(_ text: String, fileName: String) throws(AuthError) -> AccessControlList {
        var anonymous: [Entry] = []
        var users: [String: [Entry]] = [:]
        var patterns: [Entry] = []
        var currentUser: String?
        for (number, raw) in numberedLines(text) {
            let line = raw.trimmingBlanks
            if line.isEmpty || line.first == "#" { continue }
            func fail(_ message: String) -> AuthError { AuthError(.badACLLine, file: fileName, line: number, message) }
            let (keyword, rest) = splitFirstWord(line)
            switch keyword {
            case "user":
                let name = rest.trimmingBlanks
                guard !name.isEmpty else { throw fail("'user' needs a username") }
                currentUser = String(name)
                if users[String(name)] == nil { users[String(name)] = [] }
            case "topic", "pattern":
                let (first, afterFirst) = splitFirstWord(rest)
                guard !first.isEmpty else { throw fail("'\(keyword)' needs a topic") }
                let access: Access
                let topic: Substring
                if afterFirst.trimmingBlanks.isEmpty {
                    access = .readwrite
                    topic = first
                } else {
                    guard let parsed = Access(rawValue: String(first)) else {
                        throw fail(
                            "'\(first)' is not an access type (read, write, readwrite or deny); a topic containing"
                                + " spaces needs one"
                        )
                    }
                    access = parsed
                    topic = afterFirst.trimmingBlanks
                }
                if let problem = Topic.filterProblem(String(topic)) {
                    throw fail("invalid topic '\(topic)': \(problem)")
                }
                let entry = Entry(access: access, topic: String(topic), line: number)
                if keyword == "pattern" {
                    patterns.append(entry)
                } else if let currentUser {
                    users[currentUser, default: []].append(entry)
                } else {
                    anonymous.append(entry)
                }
            default:
                throw fail("unknown keyword '\(keyword)' (expected user, topic or pattern)")
            }
        }
        return AccessControlList(anonymous: anonymous, users: users, patterns: patterns)
    }

    // MARK: - AccessPolicy

    public func mayPublish(clientID: String, username: String?, topic: String) -> Bool {
        decide(clientID: clientID, username: username, allows: \.allowsWrite) { Self.filter($0, matches: topic) }
    }

    public func mayReceive(clientID: String, username: String?, topic: String) -> Bool {
        decide(clientID: clientID, username: username, allows: \.allowsRead) { Self.filter($0, matches: topic) }
    }

    public func maySubscribe(clientID: String, username: String?, filter: String) -> Bool {
        if subscriptionCheck == .deliveryOnly { return true }
        let requested = Self.stripSharePrefix(filter)
        return decide(clientID: clientID, username: username, allows: \.allowsRead) {
            Self.filter($0, covers: requested)
        }
    }

    // MARK: - Decision

    /// Deny entries first (the client's section and the patterns), then any entry granting the access.
    private func decide(
        clientID: String,
        username: String?,
        allows: KeyPath<Access, Bool>,
        matches: (Substring) -> Bool
    ) -> Bool {
        let section: [Entry]
        if let username { section = users[username] ?? [] } else { section = anonymous }
        let expanded = expandedPatterns(clientID: clientID, username: username)
        for entry in section where entry.access == .deny && matches(entry.topic[...]) { return false }
        for (access, topic) in expanded where access == .deny && matches(topic[...]) { return false }
        for entry in section where entry.access[keyPath: allows] && matches(entry.topic[...]) { return true }
        for (access, topic) in expanded where access[keyPath: allows] && matches(topic[...]) { return true }
        return false
    }

    /// The patterns that apply to this client, with `%c` and `%u` substituted.
    private func expandedPatterns(clientID: String, username: String?) -> [(Access, String)] {
        if patterns.isEmpty { return [] }
        // Mosquitto 2.0: a username or client id with a wildcard would widen every pattern; no patterns apply.
        let dangerous = { (value: String) in value.contains { $0 == "+" || $0 == "#" } }
        if dangerous(clientID) || (username.map(dangerous) ?? false) { return [] }
        var result: [(Access, String)] = []
        for entry in patterns {
            if username == nil && entry.topic.containsText("%u") { continue }
            result.append((entry.access, Self.substitute(entry.topic, clientID: clientID, username: username ?? "")))
        }
        return result
    }

    /// Replaces `%c` and `%u` left to right, as Mosquitto does (a `%` before anything else stays).
    static func substitute(_ pattern: String, clientID: String, username: String) -> String {
        var out = ""
        var chars = pattern[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            if c == "%", let next = chars.first, next == "c" || next == "u" {
                out += next == "c" ? clientID : username
                chars = chars.dropFirst()
            } else {
                out.append(c)
            }
        }
        return out
    }

    // MARK: - Topic matching

    /// Whether the concrete `topic` matches `filter` (MQTT wildcards; `$` topics only match `$` filters).
    static func filter(_ filter: Substring, matches topic: String) -> Bool {
        if topic.hasPrefix("$") != filter.hasPrefix("$") { return false }
        let f = filter.split(separator: "/", omittingEmptySubsequences: false)
        let t = topic.split(separator: "/", omittingEmptySubsequences: false)
        var i = 0
        while i < f.count {
            if f[i] == "#" { return true }  // matches the parent level too: `a/#` matches `a`
            if i >= t.count { return false }
            if f[i] != "+" && f[i] != t[i] { return false }
            i += 1
        }
        return i == t.count
    }

    /// Whether every topic the subscription `requested` can match is matched by `acl`
    /// (Mosquitto 2.1's `mosquitto_sub_matches_acl`).
    static func filter(_ acl: Substring, covers requested: Substring) -> Bool {
        if requested.hasPrefix("$") != acl.hasPrefix("$") { return false }
        let a = acl.split(separator: "/", omittingEmptySubsequences: false)
        let s = requested.split(separator: "/", omittingEmptySubsequences: false)
        var i = 0
        while i < a.count {
            if a[i] == "#" { return true }
            if i >= s.count { return false }
            if s[i] == "#" { return false }  // only `#` covers `#`
            if a[i] != "+" && a[i] != s[i] { return false }  // a literal never covers `+`
            i += 1
        }
        return i == s.count
    }

    /// `$share/GROUP/FILTER` → `FILTER`: a shared subscription is judged by its filter.
    static func stripSharePrefix(_ filter: String) -> Substring {
        guard filter.hasPrefix("$share/") else { return filter[...] }
        let afterShare = filter.dropFirst("$share/".count)
        guard let slash = afterShare.firstIndex(of: "/") else { return filter[...] }
        return afterShare[afterShare.index(after: slash)...]
    }
}

/// Splits at the first run of blanks: `("topic", "read a/b")`.
private func splitFirstWord(_ text: Substring) -> (Substring, Substring) {
    let trimmed = text.trimmingBlanks
    guard let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return (trimmed, "") }
    return (trimmed[..<space], trimmed[space...].trimmingBlanks)
}
