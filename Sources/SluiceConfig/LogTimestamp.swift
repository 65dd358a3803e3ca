// The time stamp at the start of a log line: Sluice's ISO 8601 UTC stamp by default, none with
// `log_timestamp false`, or Mosquitto's strftime(3) stamp in local time with `log_timestamp_format`.

import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

public enum LogTimestamp: Sendable, Equatable {
    /// `2026-12-05T20:07:30Z info: text` (Sluice's default line).
    case iso8601
    /// `info: text` (`log_timestamp false`).
    case none
    /// `FORMATTED: info: text`: strftime(3) in local time and ": ", as Mosquitto writes it.
    case strftime(String)

    /// The longest stamp a format may give; a longer one is a configuration error.
    public static let maximumLength = 200

    /// The prefix of a line written at `time` (seconds since the epoch).
    public func prefix(at time: time_t) -> String {
        switch self {
        case .none: return ""
        case .iso8601: return ISO8601Text.utc(Int64(time)) + " "
        case .strftime(let format): return (Self.format(format, at: time) ?? "Time error") + ": "
        }
    }

    /// strftime(3) of `time` in local time; nil when the result is empty or longer than `maximumLength`.
    public static func format(_ format: String, at time: time_t) -> String? {
        var seconds = time
        var parts = tm()
        guard localtime_r(&seconds, &parts) != nil else { return nil }
        var buffer = [CChar](repeating: 0, count: maximumLength + 1)
        let count = Glibc.strftime(&buffer, buffer.count, format, &parts)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension GatewayConfig {
    /// The stamp `log_timestamp` and `log_timestamp_format` ask for.
    public var logTimestampStyle: LogTimestamp {
        guard logTimestamp else { return .none }
        return logTimestampFormat.map(LogTimestamp.strftime) ?? .iso8601
    }
}
