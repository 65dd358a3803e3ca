import ArgumentParser
import Logging
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// What `sluice run` does about its store before the gateway opens it: one process per store, and a
/// damaged file refused with a message instead of a signal.
enum StoreGuard {
    /// Takes the store lock, checks the file's meta pages and walks every record in a child process.
    /// Returns the lock (hold it while the gateway runs); nil when the configuration uses no store.
    static func prepare(_ config: GatewayConfig, logger: Logger) throws -> StoreLock? {
        guard !config.bridges.isEmpty || config.persistence else { return nil }
        let directory = config.persistenceLocation
        let path = StoreFiles.path(config)
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
        let verdict: StoreFileCheck.Verdict
        do {
            verdict = try StoreFileCheck.inspect(path: path)
        } catch {
            throw failure(error.message)
        }
        guard case .valid = verdict else { return lock }  // missing or empty: the gateway starts a new store
        // LMDB checks page kinds and page numbers, not every offset inside a page: a broken page could crash
        // the gateway in the middle of a drain. Checking every page once (plain reads, in a child process
        // so that even a bug there cannot take this one down) turns that into a refusal here. Records are
        // not decoded here: a damaged record is quarantined when its queue reaches it. Cost: see
        // RELIABILITY.md section 9.
        let started = ContinuousClock.now
        let outcome = try StoreWalkChild.run(path: path, pagesOnly: true)
        switch outcome.status {
        case .signalled(let signal):
            throw failure(
                "the store \(path) is damaged: reading it crashed a checker process (signal \(signal)). "
                    + "Restore it from a backup, or copy what can be read into a new store with "
                    + "`sluice store salvage --to NEWDIR` and point persistence_location there"
            )
        case .exited(StoreWalkChild.brokenPages):
            throw failure(
                "the store \(path) is damaged: broken pages that LMDB cannot read safely:\n"
                    + outcome.output.trimmingBlanksAndNewlines()
            )
        case .exited(0):
            logger.info("store checked", metadata: ["path": "\(path)", "took": "\(ContinuousClock.now - started)"])
        case .exited:
            throw failure(
                outcome.errors.isEmpty
                    ? "cannot open the store \(path)"
                    : outcome.errors.replacingText("sluice: ", with: "").trimmingBlanksAndNewlines()
            )
        }
        return lock
    }
}
