import ArgumentParser
import MQTTCore
import SluiceConfig
import SluiceServer

/// Connection options shared by `pub` and `sub`, spelled as mosquitto_pub/mosquitto_sub spell them.
struct ClientOptions: ParsableArguments {
    @Option(name: .customShort("h"), help: "Broker host.")
    var host = "127.0.0.1"

    @Option(name: .customShort("p"), help: "Broker port.")
    var port = 1883

    @Option(name: .customShort("i"), help: "Client identifier (default: generated).")
    var id: String?

    @Option(name: .customShort("V"), help: "Protocol version: 31, 311 or 5.")
    var protocolVersion = "311"

    @Option(name: .customShort("k"), help: "Keep alive in seconds.")
    var keepAlive: UInt16 = 60

    @Option(name: .customShort("u"), help: "Username.")
    var username: String?

    @Option(name: .customShort("P"), help: "Password.")
    var password: String?

    @Option(name: .customShort("q"), help: "Quality of service: 0, 1 or 2.")
    var qos: UInt8 = 0

    func version() throws -> ProtocolVersion {
        switch protocolVersion {
        case "31", "mqttv31": return .v3_1
        case "311", "mqttv311": return .v3_1_1
        case "5", "mqttv5": return .v5
        default: throw failure("-V must be 31, 311 or 5, got '\(protocolVersion)'")
        }
    }

    func qualityOfService() throws -> QoS {
        guard let qos = QoS(rawValue: qos) else { throw failure("-q must be 0, 1 or 2, got \(qos)") }
        return qos
    }

    func connectPacket(prefix: String, cleanStart: Bool = true, sessionExpiry: UInt32? = nil) throws -> ConnectPacket {
        let version = try version()
        var properties = Properties()
        if version >= .v5 { properties.sessionExpiryInterval = sessionExpiry }
        return ConnectPacket(
            protocolVersion: version,
            clientIdentifier: id ?? "\(prefix)-\(UInt32.random(in: 0...UInt32.max))",
            cleanStart: cleanStart,
            keepAlive: keepAlive,
            username: username,
            password: password.map { Array($0.utf8) },
            properties: properties
        )
    }
}

extension ClientOptions {
    /// Runs `body`; any failure becomes one line on stderr (`sluice: cannot connect to 127.0.0.1:1883:
    /// connection refused`) and exit code 1, never a SwiftNIO error dump.
    func reportingFailures<R>(_ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch let error as MQTTClient.ClientError {
            throw failure(error.description)
        } catch let error as ExitCode {
            throw error
        } catch {
            throw failure("connection to \(HostPort(host: host, port: port)) lost: \(NetworkErrorText.describe(error))")
        }
    }
}
