import Logging

/// Mosquitto's `log_type` as a filter: each line has a type, and only the types listed are written.
/// A line's type is its `log_type` metadata (`subscribe`, `unsubscribe`, `websockets`), else its level:
/// debug → debug, info → information, notice → notice, warning → warning, error and critical → error.
/// So `log_type error` + `log_type subscribe` writes errors and subscriptions and nothing else, as in Mosquitto.
struct LogTypes: Sendable, Equatable {
    /// The types written; nil: every type (`all`, or `--log-level` given on the command line).
    var allowed: Set<String>?

    static let all = LogTypes(allowed: nil)

    init(allowed: Set<String>?) {
        self.allowed = allowed
    }

    /// From the `log_type` lines: `all` admits everything, `none` nothing.
    init(_ types: [String]) {
        let set = Set(types)
        if set.contains("all") {
            allowed = nil
        } else {
            allowed = set.subtracting(["none"])
        }
    }

    /// The metadata key that gives a line a type other than its level's.
    static let metadataKey = "log_type"

    static func type(of level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "debug"
        case .info: "information"
        case .notice: "notice"
        case .warning: "warning"
        case .error, .critical: "error"
        }
    }

    func admits(level: Logger.Level, metadata: Logger.Metadata?) -> Bool {
        guard let allowed else { return true }
        if case .string(let type)? = metadata?[Self.metadataKey] { return allowed.contains(type) }
        return allowed.contains(Self.type(of: level))
    }
}
