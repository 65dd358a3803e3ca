#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A moment on the wall clock (CLOCK_REALTIME), what Sluice used Foundation's `Date` for: when a link went
/// down, when it last connected. Compare moments of one process with each other, durations with the
/// monotonic clock.
public struct WallInstant: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var timeIntervalSince1970: Double

    /// Now.
    public init() { timeIntervalSince1970 = WallClock.secondsSince1970() }

    public init(timeIntervalSince1970: Double) { self.timeIntervalSince1970 = timeIntervalSince1970 }

    /// Seconds from `other` to this moment (negative when `other` is later).
    public func timeIntervalSince(_ other: WallInstant) -> Double {
        timeIntervalSince1970 - other.timeIntervalSince1970
    }

    /// `2026-12-05T20:07:30Z`, the second rounded down: what `Date.formatted(.iso8601)` wrote.
    public var iso8601: String {
        let seconds = timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite else { return ISO8601Text.utc(0) }
        return ISO8601Text.utc(Int64(min(max(seconds, -1e18), 1e18)))  // utc(_:) clamps to years 1...9999
    }

    /// `2026-12-05 20:07:30 +0000`, the second rounded down: what `Date.description` wrote.
    public var description: String {
        let text = iso8601  // YYYY-MM-DDTHH:MM:SSZ
        return text.prefix(10) + " " + text.dropFirst(11).dropLast() + " +0000"
    }

    public static func < (lhs: WallInstant, rhs: WallInstant) -> Bool {
        lhs.timeIntervalSince1970 < rhs.timeIntervalSince1970
    }
}

public enum SystemInfo {
    /// This machine's name as gethostname(2) gives it (Mosquitto's bridge client ids use the same),
    /// "localhost" if it cannot be read.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// This process's environment (`environ`); of a name given twice, the first, as getenv(3) reads it.
    public static func environment() -> [String: String] {
        var variables: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                let name = String(text[..<equals])
                if variables[name] == nil { variables[name] = String(text[text.index(after: equals)...]) }
            }
            entry += 1
        }
        return variables
    }

    /// One environment variable, nil when unset.
    public static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
