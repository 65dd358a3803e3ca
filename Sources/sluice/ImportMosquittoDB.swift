import ArgumentParser
import Logging
import SluiceBroker
import SluiceConfig
import SluicePOSIX
import SluiceServer
import SluiceStore

/// `sluice import-mosquitto-db FILE`: brings Mosquitto's retained messages and persistent sessions
/// over at the switch, so they do not vanish with the old broker.
struct ImportMosquittoDB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-mosquitto-db",
        abstract: "Import retained messages and persistent sessions from a mosquitto.db into the store.",
        discussion: """
            Reads a mosquitto.db of Mosquitto 1.6 or 2.0 (stop Mosquitto first: it writes the file at exit) \
            and writes its retained messages and persistent sessions (subscriptions, queued and in-flight \
            messages) into the store under persistence_location, for `sluice run` to load. Refuses to run \
            while a gateway uses the store, and to add to a store that already holds sessions or retained \
            messages unless --merge is given. Prints what was imported and each thing skipped, with why.
            """
    )

    @Argument(help: "The mosquitto.db to import.")
    var file: String

    @Option(
        name: [.short, .customLong("config")],
        help: "Path to gateway.conf (persistence true; the store lives under persistence_location)."
    )
    var config: String = "/etc/sluice/gateway.conf"

    @Flag(help: "Add to a store that already holds sessions or retained messages (the store's own are kept).")
    var merge = false

    func run() async throws {
        let gatewayConfig: GatewayConfig
        do {
            gatewayConfig = try GatewayConfig.load(path: config)
        } catch {
            throw failure("\(error)")
        }
        guard gatewayConfig.persistence else {
            throw failure(
                "\(config) has no `persistence true`: sluice run would not load imported sessions; set it first"
            )
        }
        guard let data = try? FileSystem.readBytes(file) else {
            let reason = FileSystem.exists(file) ? "cannot be read" : "does not exist"
            throw failure("\(file) \(reason)")
        }
        let db: MosquittoDB
        do {
            db = try MosquittoDB.decode(data)
        } catch {
            throw failure("\(file) is not a usable mosquitto.db: \(error)")
        }
        let directory = gatewayConfig.persistenceLocation
        do {
            try FileSystem.createDirectory(directory)
        } catch {
            throw failure("cannot create persistence_location \(directory): \(error)")
        }
        let lock: StoreLock
        do {
            lock = try StoreLock(directory: directory)
        } catch {
            throw failure(error.message)
        }
        let report: MosquittoImportReport
        do {
            report = try await MosquittoImporter.run(
                db,
                storePath: StoreFiles.path(gatewayConfig),
                config: gatewayConfig,
                merge: merge,
                logger: Logger(label: "sluice")
            )
        } catch {
            throw failure(error.description)
        }
        withExtendedLifetime(lock) {}
        print(
            "imported from \(file): retained \(report.retained), sessions \(report.sessions), "
                + "subscriptions \(report.subscriptions), queued messages \(report.queuedMessages), "
                + "in-flight messages \(report.inflightMessages)"
        )
        print("skipped: \(report.skipped.count)")
        for line in report.skipped { print("  skipped \(line)") }
    }
}
