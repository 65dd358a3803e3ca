import ArgumentParser
import Logging
import ServiceLifecycle
import SluiceConfig
import SluiceServer

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @Option(name: [.short, .customLong("config")], help: "Path to gateway.conf. Without one: a broker on 127.0.0.1:1883 only.")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: from log_type, else info).")
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
        LoggingSystem.bootstrap { label in GatewayLogHandler(label: label, level: level) }
        let logger = Logger(label: "sluice")
        if config == nil {
            logger.notice("no configuration file given: starting in local-only mode on 127.0.0.1:1883")
        }
        let storeLock = try StoreGuard.prepare(gatewayConfig, logger: logger)
        let gateway = GatewayService(config: gatewayConfig, configPath: config, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: gateway)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
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
            || types.contains("unsubscribe")
        {
            return .info
        }
        if types.contains("warning") { return .warning }
        if types.contains("error") { return .error }
        return types.contains("none") ? .critical : .info
    }
}
