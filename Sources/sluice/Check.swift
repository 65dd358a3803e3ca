import ArgumentParser
import SluiceConfig
import SluiceServer

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file without starting.")

    @Option(name: [.short, .customLong("config")], help: "Path to gateway.conf.")
    var config: String

    func run() throws {
        do {
            let parsed = try GatewayConfig.load(path: config)
            print("\(config): OK (\(parsed.listeners.count) listener(s), \(parsed.bridges.count) bridge(s))")
            for warning in StoreSpaceCheck.warnings(parsed, configPath: config) { print("warning: \(warning)") }
        } catch {
            throw failure("\(error)")
        }
    }
}
