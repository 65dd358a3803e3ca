import Foundation
import Logging

/// Logs to stderr, one line per event. Under systemd (JOURNAL_STREAM set) each line starts with a
/// syslog priority such as `<4>` and carries no timestamp, so journald files it at the right level;
/// otherwise lines look like Mosquitto's, with a timestamp.
struct GatewayLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    private let label: String
    private let journald: Bool

    init(label: String, level: Logger.Level, journald: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil) {
        self.label = label
        self.logLevel = level
        self.journald = journald
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = fields.isEmpty ? "\(event.message)" : "\(event.message) \(fields)"
        let line: String
        if journald {
            line = "<\(Self.syslogPriority(event.level))>\(text)\n"
        } else {
            let stamp = Date().formatted(.iso8601)
            line = "\(stamp) \(event.level): \(text)\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// sd-daemon(3) priorities.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
