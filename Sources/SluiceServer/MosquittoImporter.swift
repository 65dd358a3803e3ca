import Logging
import SluiceBroker
import SluiceConfig
import SluiceStore

/// `sluice import-mosquitto-db`: writes the retained messages and persistent sessions of a
/// mosquitto.db into the gateway's store, as broker state records (see `Broker.importMosquitto`).
/// The caller holds the store lock, so no gateway runs on the store meanwhile.
public enum MosquittoImporter {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Imports `db` into the store at `storePath`. Without `merge`, a store that already holds
    /// sessions or retained messages is refused; with it, what the store has is kept and the
    /// file's sessions and retained topics with the same names are skipped.
    public static func run(
        _ db: MosquittoDB,
        storePath: String,
        config: GatewayConfig,
        merge: Bool,
        logger: Logger
    ) async throws(Failure) -> MosquittoImportReport {
        let store: Store
        do {
            store = try Store(path: storePath, maxMapSize: config.storeMapSizeMax)
        } catch {
            throw Failure(description: "cannot open the store \(storePath): \(error.message)")
        }
        defer { store.close() }
        var broker = Broker(settings: BrokerSettings(config))
        broker.tracksChanges = true
        let wallClock = Store.wallClockMilliseconds()
        // Broker time is the wall clock here (only wall-clock times are saved), so a session's
        // "offline since" before this run fits in it.
        let now = BrokerTime(wallClock)
        let offset: Int64 = 0
        do {
            let sessions = try store.scan(table: PersistenceTable.sessions.rawValue)
            let messages = try store.scan(table: PersistenceTable.sessionMessages.rawValue)
            let retained = try store.scan(table: PersistenceTable.retained.rawValue)
            if !(sessions.isEmpty && retained.isEmpty && messages.isEmpty) {
                guard merge else {
                    throw Failure(
                        description: "the store \(storePath) already holds \(sessions.count) session(s) and "
                            + "\(retained.count) retained message(s): pass --merge to add the file's to them "
                            + "(the store's own are kept)"
                    )
                }
                let problems = broker.restore(
                    sessions: sessions.map(\.value),
                    sessionMessages: messages,
                    retained: retained.map(\.value),
                    wallClockOffset: offset,
                    now: now
                )
                for problem in problems { logger.warning("store record not readable (left as is): \(problem)") }
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "cannot read the store \(storePath): \(error)")
        }
        var report = broker.importMosquitto(db, wallClockMilliseconds: wallClock, now: now)
        let writes = broker.takeChanges(wallClockOffset: offset).compactMap { write in
            let converted = BrokerHost.tableWrite(write, logger: logger)
            if converted == nil { report.skipped.append("a record whose key the store cannot hold (see above)") }
            return converted
        }
        do {
            try await store.apply(writes)
        } catch {
            throw Failure(description: "writing to the store \(storePath) failed: \(error.message)")
        }
        return report
    }
}
