// Value readers: each turns a directive's text into one typed value or throws an error that
// names the file, line and key and quotes what was written.

import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

extension Directive {
    /// The error for a Mosquitto key Sluice refuses; `why` ends with what to write instead, in parentheses.
    func unsupported(_ why: String) -> ConfigError {
        error(.unsupportedKey, "Mosquitto key '\(key)' is not supported by Sluice: \(why)")
    }

    /// For a boolean key Sluice honours only at Mosquitto's default: accepts `value`, refuses the other.
    func requireDefault(_ value: Bool, _ why: String) throws(ConfigError) {
        guard try bool() == value else { throw unsupported("only '\(key) \(value)' (Mosquitto's default) is; \(why)") }
    }

    /// The rest of the line as one string (paths, user names, passwords: blanks allowed, as in Mosquitto).
    func singleString() throws(ConfigError) -> String {
        guard !rest.isEmpty else { throw error(.missingValue, "a value is required") }
        return rest
    }

    /// Exactly one blank-free token.
    func singleToken() throws(ConfigError) -> String {
        guard let first = values.first else { throw error(.missingValue, "a value is required") }
        guard values.count == 1 else {
            throw error(.tooManyValues, "expected one value, got \(values.count): '\(rest)'")
        }
        return first
    }

    /// Between `min` and `max` blank-free tokens.
    func tokens(min: Int, max: Int) throws(ConfigError) -> [String] {
        guard values.count >= min else {
            throw error(.missingValue, values.isEmpty ? "a value is required" : "expected at least \(min) values")
        }
        guard values.count <= max else {
            throw error(.tooManyValues, "expected at most \(max) values, got \(values.count): '\(rest)'")
        }
        return values
    }

    func bool() throws(ConfigError) -> Bool {
        let word = try singleToken()
        switch word {
        case "true": return true
        case "false": return false
        default: throw error(.badValue, "expected true or false, got '\(word)'")
        }
    }

    func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        try Self.int(try singleToken(), range, self)
    }

    static func int(_ word: String, _ range: ClosedRange<Int>, _ directive: Directive) throws(ConfigError) -> Int {
        guard let value = Int(word), range.contains(value) else {
            let expected =
                range.upperBound == Int.max
                ? "a whole number of at least \(range.lowerBound)"
                : "a whole number from \(range.lowerBound) to \(range.upperBound)"
            throw directive.error(.badValue, "expected \(expected), got '\(word)'")
        }
        return value
    }

    /// One of `words` (keys of the table).
    func word<T>(_ words: KeyValuePairs<String, T>) throws(ConfigError) -> T {
        let word = try singleToken()
        guard let match = words.first(where: { $0.key == word }) else {
            throw error(.badValue, "expected one of \(words.map(\.key).joined(separator: ", ")), got '\(word)'")
        }
        return match.value
    }

    /// A byte count: a whole number with an optional unit B, KB, MB, GB (also K/M/G, KiB/MiB/GiB;
    /// any case). Units are 1024-based.
    func byteSize(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let word = try singleToken()
        let digits = word.prefix(while: \.isASCIIDigit)
        let unit = word.dropFirst(digits.count).lowercased()
        let multipliers: [String: Int] = [
            "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
            "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
        ]
        guard let number = Int(digits), let multiplier = multipliers[unit] else {
            throw error(.badValue, "expected a size in bytes such as 1048576, 512MB or 2GB, got '\(word)'")
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow, range.contains(bytes) else {
            throw error(
                .badValue,
                "expected a size from \(Self.sizeText(range.lowerBound)) to \(Self.sizeText(range.upperBound)), got '\(word)'"
            )
        }
        return bytes
    }

    private static func sizeText(_ bytes: Int) -> String {
        if bytes == Int.max { return "any" }
        for (unit, size) in [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] where bytes >= size && bytes % size == 0
        {
            return "\(bytes / size)\(unit)"
        }
        return "\(bytes) bytes"
    }

    /// Mosquitto's duration syntax: a whole number and a unit, `h` hours, `d` days, `w` weeks,
    /// `m` months (30 days), `y` years (365 days); Sluice also accepts `s` seconds and `min`
    /// minutes. With `zeroIsNone`, a plain `0` means "no bound" and returns nil.
    func duration(zeroIsNone: Bool = false) throws(ConfigError) -> Duration? {
        let word = try singleToken()
        if zeroIsNone && (word == "0" || word == "none") { return nil }
        let digits = word.prefix(while: \.isASCIIDigit)
        let unit = word.dropFirst(digits.count)
        let seconds: [Substring: Int64] = [
            "s": 1, "min": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "m": 30 * 86_400, "y": 365 * 86_400,
        ]
        guard let number = Int64(digits), number > 0, let scale = seconds[unit],
            number <= Int64.max / scale
        else {
            let zero = zeroIsNone ? " or 0 for none" : ""
            throw error(
                .badValue,
                "expected a duration such as 90s, 30min, 12h, 7d, 2w, 1m (30 days), 1y\(zero), got '\(word)'"
            )
        }
        return .seconds(number * scale)
    }

    /// `PORT [ADDRESS]` as in `metrics_listener`.
    func portAndAddress(defaultHost: String) throws(ConfigError) -> HostPort {
        let words = try tokens(min: 1, max: 2)
        let port = try Self.int(words[0], 1...65535, self)
        return HostPort(host: words.count == 2 ? words[1] : defaultHost, port: port)
    }

    /// `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address (two or more colons) takes the default port.
    func hostPort(_ word: String, defaultPort: Int) throws(ConfigError) -> HostPort {
        var host = Substring(word)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                throw error(.badValue, "'\(word)' opens '[' without ']' (write IPv6 as [::1]:1883)")
            }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw error(.badValue, "expected host[:port], got '\(word)'")
            }
            host = host[host.index(after: host.startIndex)..<close]
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw error(.badValue, "expected host[:port], got '\(word)'") }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw error(.badValue, "expected a port from 1 to 65535 in '\(word)'")
            }
            port = value
        }
        return HostPort(host: String(host), port: port)
    }

    /// A path that must name an existing file (or, with `directory`, an existing directory).
    func existingPath(directory: Bool = false) throws(ConfigError) -> String {
        let path = try singleString()
        guard let kind = FileSystem.kind(path), (kind == .directory) == directory else {
            throw error(.missingFile, "\(directory ? "directory" : "file") '\(path)' does not exist")
        }
        return path
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
