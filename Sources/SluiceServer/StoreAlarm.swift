import Logging
import NIOConcurrencyHelpers
import SluiceBroker
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

extension CommitOutcome {
    /// A failed store write as the broker sees it: out of space is a policy refusal (MQTT 5 0x97),
    /// anything else a failing device (0x80).
    init(_ error: StoreError) {
        self = error.code == .storeFull ? .refused(error.message) : .failed(error.message)
    }
}

extension FreeSpaceGuard {
    /// The store's free-space guard from `store_min_free`.
    init(_ minFree: StoreMinFree) {
        switch minFree {
        case .bytes(let bytes): self.init(bytes: UInt64(bytes))
        case .percent(let percent): self.init(percent: percent)
        case .standard: self.init(bytes: UInt64(StoreMinFree.standardBytes), percent: StoreMinFree.standardPercent)
        }
    }
}

/// What `sluice check` and start-up say about the store's filesystem: `store_max_size` larger than
/// what the filesystem can still give the store is the road to a full disk.
public enum StoreSpaceCheck {
    public static func warnings(_ config: GatewayConfig, configPath: String?) -> [String] {
        guard config.persistence || !config.bridges.isEmpty else { return [] }
        // The folder may not exist yet: ask the nearest one that does.
        var directory = FileSystem.canonicalPath(config.persistenceLocation)
        while !FileSystem.exists(directory), directory != "/" {
            directory = PathText.parent(of: directory)
        }
        guard let space = FilesystemSpace.of(directory) else { return [] }
        let storePath = PathText.appending("sluice.db", to: config.persistenceLocation)
        let used = PathText.fileSize(storePath) ?? 0
        let keep = FreeSpaceGuard(config.storeMinFree).threshold(total: space.total) ?? 0
        let room = space.available + used > keep ? space.available + used - keep : 0
        guard UInt64(config.storeMapSizeMax) > room else { return [] }
        let source = configPath.map { "\($0): " } ?? ""
        return [
            "\(source)store_max_size \(mebibytes(UInt64(config.storeMapSizeMax))) is more than the filesystem of "
                + "\(config.persistenceLocation) can give the store (\(mebibytes(space.available)) free, "
                + "\(mebibytes(used)) used by the store, \(mebibytes(keep)) kept free by store_min_free): the "
                + "filesystem fills first, and then queue_overflow applies; lower store_max_size to at most \(mebibytes(room))"
        ]
    }

    static func mebibytes(_ bytes: UInt64) -> String {
        DecimalText.fixed(Double(bytes) / 1_048_576, digits: 1) + " MiB"
    }
}

/// Turns the store's events into log lines a person can read: a change of state is said once, and
/// counts (drops, refusals, failed appends) are summed into one line every `interval`, never one line
/// per message (a full disk under load used to log hundreds of lines a second).
final class StoreAlarm: Sendable {
    private struct State {
        var dropped: [String: UInt64] = [:]
        var rejected: [String: UInt64] = [:]
        var failedAppends: [String: Int] = [:]
        var lastFailure: String?
    }
    private let state = NIOLockedValueBox(State())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// From the store's writer thread; must be quick.
    func event(_ event: StoreEvent) {
        switch event {
        case .dropped(let queue, let reason, let count):
            state.withLockedValue { $0.dropped["\(queue) \(reason)", default: 0] += count }
        case .rejected(let queue, let reason, let count):
            state.withLockedValue { $0.rejected["\(queue) \(reason)", default: 0] += count }
        case .mapGrew(let from, let to):
            logger.info("store grew from \(from) to \(to) bytes")
        case .lowSpace:
            break  // `.health` says it, with the reason
        case .quarantined(let queue, let count, let reason):
            // Once per commit that met damaged records: each leaves the queue when it is quarantined.
            logger.error(
                "damaged record(s) moved to the quarantine; the queue goes on (`sluice store quarantine` lists them)",
                metadata: ["bridge": "\(queue)", "count": "\(count)", "reason": "\(reason)"]
            )
        case .health(let health):
            switch health {
            case .writable: logger.notice("store is writable again")
            case .full(let why):
                logger.warning("store full, queue_overflow applies until there is room: \(why)")
            case .failing(let why):
                logger.error("store writes fail: nothing is acknowledged until they commit again: \(why)")
            }
        }
    }

    func appendFailed(bridge: String, count: Int, error: StoreError) {
        state.withLockedValue {
            $0.failedAppends[bridge, default: 0] += count
            $0.lastFailure = error.message
        }
    }

    /// One line with what happened since the last summary, if anything did.
    func summarize() {
        let taken = state.withLockedValue { state -> State in
            defer { state = State() }
            return state
        }
        var parts: [String] = []
        for (key, count) in taken.dropped.sorted(by: { $0.key < $1.key }) { parts.append("dropped \(count) (\(key))") }
        for (key, count) in taken.rejected.sorted(by: { $0.key < $1.key }) {
            parts.append("rejected \(count) (\(key))")
        }
        for (bridge, count) in taken.failedAppends.sorted(by: { $0.key < $1.key }) {
            parts.append("\(count) not queued for bridge \(bridge), publishers not acknowledged")
        }
        guard !parts.isEmpty else { return }
        var metadata: Logger.Metadata = [:]
        if let failure = taken.lastFailure { metadata["last_error"] = "\(failure)" }
        logger.warning(
            "store pressure in the last \(Int(Self.interval)) s: \(parts.joined(separator: ", "))",
            metadata: metadata
        )
    }

    /// Seconds between summaries.
    static let interval: Double = 10
}
