import ArgumentParser
import Logging
import ServiceLifecycle
import SluiceConfig
import SluiceServer

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @Option(name: [.short, .customLong("config")], help: "Path to gateway.conf. Without one: a broker on 127.0.0.1:1883 only.")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

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
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "sluice")
        if config == nil {
            logger.notice("no configuration file given: starting in local-only mode on 127.0.0.1:1883")
        }
        let gateway = GatewayService(config: gatewayConfig, configPath: config, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: gateway)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
