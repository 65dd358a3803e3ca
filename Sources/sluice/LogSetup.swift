import Logging
import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// Logs to stderr, one line per event. Under systemd (JOURNAL_STREAM set) each line starts with a
/// syslog priority such as `<4>` and carries no timestamp, so journald files it at the right level;
/// otherwise lines look like Mosquitto's, with a timestamp.
struct GatewayLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    /// `log_type`: which kinds of line are written (the level only lets the most verbose through).
    var types = LogTypes.all
    /// `log_timestamp`/`log_timestamp_format`: the stamp before the level, where one is written.
    var timestamp = LogTimestamp.iso8601
    private let label: String
    private let journald: Bool
    private let outputs: LogOutputs

    init(
        label: String,
        level: Logger.Level,
        outputs: LogOutputs = .standardError,
        journald: Bool = SystemInfo.environment("JOURNAL_STREAM") != nil
    ) {
        self.label = label
        self.logLevel = level
        self.outputs = outputs
        self.journald = journald
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard types.admits(level: event.level, metadata: event.metadata) else { return }
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        merged[LogTypes.metadataKey] = nil  // a filter key, not part of the line
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = fields.isEmpty ? "\(event.message)" : "\(event.message) \(fields)"
        let stamped = "\(timestamp.prefix(at: time(nil)))\(event.level): \(text)\n"
        if outputs.standardError {
            let line = journald ? "<\(Self.syslogPriority(event.level))>\(text)\n" : stamped
            OutputFile.standardError.write(line)
        }
        if outputs.standardOutput { OutputFile.standardOutput.write(stamped) }
        for file in outputs.files { file.write(stamped) }
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

/// The `log_dest` lines, opened: files are opened once, for appending, at start.
struct LogOutputs: Sendable {
    var standardError = true
    var standardOutput = false
    var files: [OutputFile] = []
    /// Files that could not be opened, with the error, to be logged once logging is up.
    var failures: [String] = []

    static let standardError = LogOutputs()

    init() {}

    init(_ destinations: [LogDestination]) {
        // No honoured line: stderr, as Mosquitto. `none` alone: nothing.
        guard !destinations.isEmpty else { return }
        standardError = destinations.contains(.stderr)
        standardOutput = destinations.contains(.stdout)
        for case .file(let path) in destinations {
            // O_APPEND: every line lands at the end, also after logrotate's copytruncate.
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd >= 0 {
                files.append(OutputFile(descriptor: fd, owned: true))
            } else {
                failures.append("\(path): \(String(cString: strerror(errno)))")
            }
        }
        if !failures.isEmpty && files.isEmpty && !standardOutput { standardError = true }
    }
}
