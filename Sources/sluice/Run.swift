import ArgumentParser
import Logging
import ServiceLifecycle
import SluiceConfig
import SluicePOSIX
import SluiceServer

#if canImport(Glibc)
    import Glibc
#endif

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @Option(
        name: [.short, .customLong("config")],
        help: "Path to gateway.conf. Without one: a broker on 127.0.0.1:1883 only."
    )
    var config: String?

    @Option(
        name: .long,
        help: "Log level: trace, debug, info, notice, warning, error, critical (default: from log_type, else info)."
    )
    var logLevel: Logger.Level?

    func run() async throws {
        let gatewayConfig: GatewayConfig
        if let config {
            do {
                gatewayConfig = try GatewayConfig.load(path: config)
            } catch {
                throw failure("\(error)")
            }
        } else {
            gatewayConfig = .default
        }
        let level = logLevel ?? gatewayConfig.logLevel
        let outputs = LogOutputs(gatewayConfig.logDestinations)
        // `--log-level` overrides log_type's filter too: it asks for everything at that level and above.
        let types = logLevel == nil ? LogTypes(gatewayConfig.logTypes) : .all
        LoggingSystem.bootstrap { label in
            var handler = GatewayLogHandler(label: label, level: level, outputs: outputs)
            handler.types = types
            handler.timestamp = gatewayConfig.logTimestampStyle
            return handler
        }
        let logger = Logger(label: "sluice")
        logger.notice("\(StartupBanner.starting(configPath: config))")
        for failure in outputs.failures { logger.error("log_dest file \(failure): cannot write the log there") }
        if config == nil {
            logger.notice("no configuration file given: starting in local-only mode on 127.0.0.1:1883")
        }
        for notice in gatewayConfig.notices { logger.notice("\(notice)") }
        if let user = gatewayConfig.user, PrivilegeDrop.isNeeded(user: user) {
            do { _ = try PrivilegeDrop.account(user) } catch { throw failure(error.description) }
        }
        let pidFile = gatewayConfig.pidFile.flatMap { PIDFile(path: $0, logger: logger) }
        defer { pidFile?.remove() }
        let storeLock = try StoreGuard.prepare(gatewayConfig, logger: logger)
        let gateway = GatewayService(config: gatewayConfig, configPath: config, logger: logger)
        do {
            let group = ServiceGroup(
                configuration: .init(
                    services: try await gateway.services(),
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
        } catch {
            throw failure(NetworkErrorText.describe(error))  // one line, not a SwiftNIO dump
        }
        withExtendedLifetime(storeLock) {}  // held until the gateway has stopped
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension GatewayConfig {
    /// Mosquitto's `log_type` words as a swift-log level: the most verbose type asked for.
    var logLevel: Logger.Level {
        let types = Set(logTypes)
        if types.contains("all") || types.contains("debug") { return .debug }
        if types.contains("information") || types.contains("notice") || types.contains("subscribe")
            || types.contains("unsubscribe") || types.contains("websockets")
        {
            return .info
        }
        if types.contains("warning") { return .warning }
        if types.contains("error") { return .error }
        return types.contains("none") ? .critical : .info
    }
}

/// `pid_file`: this process's PID, written at start and removed at exit. A file that cannot be
/// written is logged and the gateway runs on (Debian's stock mosquitto.conf names
/// /run/mosquitto/mosquitto.pid, whose directory may not exist under Sluice's unit).
struct PIDFile {
    let path: String
    let pid = getpid()

    init?(path: String, logger: Logger) {
        self.path = path
        guard (try? FileSystem.writeFile(path, Array("\(pid)\n".utf8))) != nil else {
            logger.warning("pid_file: cannot write \(path); running without it")
            return nil
        }
    }

    /// Removes the file if it still holds this PID (another instance may have taken it over).
    func remove() {
        guard let text = try? FileSystem.readText(path),
            text.trimmingBlanksAndNewlines() == "\(pid)"
        else { return }
        try? FileSystem.removeFile(path)
    }
}
