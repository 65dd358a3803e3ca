import SluiceBridge
import SluiceConfig
import SluiceJSON
import SluicePOSIX
import SluiceStore

// Note on the status snapshot (`sluice status`, `/status.json`, the page at `/`):
// - One value answers "is the link up, how much is waiting, when will it be delivered" for the whole
//   gateway. The running gateway builds it from live counters and its `StatusSampler`; `sluice status`
//   builds the same shape from the store alone when the gateway does not answer (`source` says which).
// - Rates are per second over the last minute (or what the sampler holds of it). The drain rate is the
//   depth's fall per second over the last ten seconds, so a drain that just began is not averaged with
//   the outage before it; the time to drain is the depth at that rate (nil while the queue is not falling).
// - JSON keys are snake_case; times are Unix seconds; nil fields are left out.

/// The whole gateway at one moment.
public struct GatewayStatusSnapshot: Codable, Sendable, Equatable {
    /// Where the facts come from: the running gateway, or the store read by `sluice status` while the
    /// gateway does not answer (no link state, rates, clients or uptime then).
    public enum Source: String, Codable, Sendable {
        case gateway
        case store
    }

    public var source: Source
    public var version: String?
    /// Unix seconds when the snapshot was taken.
    public var generatedAt: Double
    public var startedAt: Double?
    public var uptimeSeconds: Double?
    /// `mqtt 127.0.0.1:1883`, `websockets all interfaces:8080 (TLS)`, `metrics 127.0.0.1:9100`...
    public var listeners: [String]
    public var clients: Int?
    public var store: StoreUsage?
    public var bridges: [BridgeStatus]
    /// The last hour, oldest first (empty from the store). The first point has no send rates (nothing
    /// before it to measure them against).
    public var history: [HistoryPoint]
    /// Why the gateway's own view is missing (fallback only), e.g. "connection refused".
    public var gatewayUnreachable: String?

    public init(
        source: Source,
        version: String? = nil,
        generatedAt: Double,
        startedAt: Double? = nil,
        listeners: [String] = [],
        clients: Int? = nil,
        store: StoreUsage? = nil,
        bridges: [BridgeStatus] = [],
        history: [HistoryPoint] = [],
        gatewayUnreachable: String? = nil
    ) {
        self.source = source
        self.version = version
        self.generatedAt = generatedAt
        self.startedAt = startedAt
        self.uptimeSeconds = startedAt.map { max(0, generatedAt - $0) }
        self.listeners = listeners
        self.clients = clients
        self.store = store
        self.bridges = bridges
        self.history = history
        self.gatewayUnreachable = gatewayUnreachable
    }
}

/// The store file against `store_max_size`.
public struct StoreUsage: Codable, Sendable, Equatable {
    public var path: String
    /// The file's size: LMDB's high-water mark (pages freed inside it are reused before it grows).
    public var fileBytes: UInt64
    public var maxBytes: UInt64
    public var percent: Double

    public init(path: String, fileBytes: UInt64, maxBytes: UInt64) {
        self.path = path
        self.fileBytes = fileBytes
        self.maxBytes = maxBytes
        self.percent = StatusArithmetic.percent(Double(fileBytes), of: Double(maxBytes)) ?? 0
    }
}

/// One bridge: its link, its queue against its bounds, and how fast it moves.
public struct BridgeStatus: Codable, Sendable, Equatable {
    public enum LinkState: String, Codable, Sendable {
        case connected
        case disconnected
        /// From the store: the gateway did not answer.
        case unknown
    }

    public var name: String
    public var state: LinkState
    /// Unix seconds of the last change of `state` (the gateway's start if it never changed).
    public var stateSince: Double?
    /// The remote address in use while connected, the one last tried otherwise.
    public var address: String?
    /// `sluice queue pause` holds sending (the queue still fills).
    public var paused: Bool
    public var depth: UInt64
    public var bytes: UInt64
    public var oldestAgeSeconds: Double?
    /// `queue_max_messages`, `queue_max_bytes`, `queue_max_age` that are set.
    public var bounds: [BoundUsage]
    /// Messages per second acknowledged by the remote, over the last minute.
    public var sendRate: Double?
    /// Messages per second received from the remote (`in` rules), over the last minute.
    public var receiveRate: Double?
    /// Messages per second appended to the queue by local publishers, over the last minute.
    public var queueRate: Double?
    /// Fall of the depth per second over the last ten seconds (negative while the queue grows).
    public var drainRate: Double?
    /// Seconds until the queue is empty at `drainRate`; 0 when empty; nil while it is not falling.
    public var drainSeconds: Double?
    public var deadLetters: UInt64?
    /// Messages dropped or refused at the queue's bounds, ever.
    public var dropped: UInt64
    public var lastError: String?
    public var lastErrorSince: Double?

    public init(
        name: String,
        state: LinkState,
        stateSince: Double? = nil,
        address: String? = nil,
        paused: Bool = false,
        depth: UInt64 = 0,
        bytes: UInt64 = 0,
        oldestAgeSeconds: Double? = nil,
        bounds: [BoundUsage] = [],
        deadLetters: UInt64? = nil,
        dropped: UInt64 = 0,
        lastError: String? = nil,
        lastErrorSince: Double? = nil
    ) {
        self.name = name
        self.state = state
        self.stateSince = stateSince
        self.address = address
        self.paused = paused
        self.depth = depth
        self.bytes = bytes
        self.oldestAgeSeconds = oldestAgeSeconds
        self.bounds = bounds
        self.deadLetters = deadLetters
        self.dropped = dropped
        self.lastError = lastError
        self.lastErrorSince = lastErrorSince
    }
}

/// How much of one configured bound is used.
public struct BoundUsage: Codable, Sendable, Equatable {
    /// The config key: `queue_max_messages`, `queue_max_bytes`, `queue_max_age`.
    public var key: String
    public var used: Double
    public var limit: Double
    public var percent: Double

    public init(key: String, used: Double, limit: Double) {
        self.key = key
        self.used = used
        self.limit = limit
        self.percent = StatusArithmetic.percent(used, of: limit) ?? 0
    }
}

/// One point of the last hour's graphs.
public struct HistoryPoint: Codable, Sendable, Equatable {
    /// Unix seconds.
    public var at: Double
    public var clients: Int
    /// Per bridge, in the order of `bridges`.
    public var depths: [UInt64]
    /// Per bridge: messages acknowledged by the remote per second since the previous point.
    public var sendRates: [Double]

    public init(at: Double, clients: Int, depths: [UInt64], sendRates: [Double]) {
        self.at = at
        self.clients = clients
        self.depths = depths
        self.sendRates = sendRates
    }
}

/// The arithmetic behind the snapshot, kept apart so it is tested without a gateway.
public enum StatusArithmetic {
    /// `used` as a percentage of `limit`, nil for no limit (0, negative or not finite).
    public static func percent(_ used: Double, of limit: Double) -> Double? {
        guard limit > 0, limit.isFinite, used.isFinite else { return nil }
        return max(0, used) / limit * 100
    }

    /// Per second between two readings of a counter that only goes up; nil without a usable interval.
    public static func rate(from earlier: UInt64, to later: UInt64, seconds: Double) -> Double? {
        guard seconds >= 0.5 else { return nil }
        return CounterRate.perSecond(from: earlier, to: later, seconds: seconds)
    }

    /// Seconds until `depth` reaches zero falling at `drainRate` per second: 0 when already empty, nil
    /// while it is not falling (or the rate is unknown).
    public static func timeToDrain(depth: UInt64, drainRate: Double?) -> Double? {
        if depth == 0 { return 0 }
        guard let drainRate, drainRate > 0, drainRate.isFinite else { return nil }
        return Double(depth) / drainRate
    }

    /// The bounds a bridge's configuration sets, with how much of each its queue uses.
    public static func bounds(
        depth: UInt64,
        bytes: UInt64,
        oldestAgeSeconds: Double?,
        maxMessages: Int,
        maxBytes: Int,
        maxAgeSeconds: Double?
    ) -> [BoundUsage] {
        var bounds: [BoundUsage] = []
        if maxMessages > 0 {
            bounds.append(BoundUsage(key: "queue_max_messages", used: Double(depth), limit: Double(maxMessages)))
        }
        if maxBytes > 0 {
            bounds.append(BoundUsage(key: "queue_max_bytes", used: Double(bytes), limit: Double(maxBytes)))
        }
        if let maxAgeSeconds, maxAgeSeconds > 0 {
            bounds.append(BoundUsage(key: "queue_max_age", used: oldestAgeSeconds ?? 0, limit: maxAgeSeconds))
        }
        return bounds
    }

    /// Age in seconds of a message enqueued at `enqueuedAt` (Unix milliseconds) at `now` (the same).
    public static func ageSeconds(enqueuedAt: UInt64?, now: UInt64) -> Double? {
        enqueuedAt.map { now > $0 ? Double(now - $0) / 1000 : 0 }
    }
}

extension BridgeStatus {
    /// The queue facts every source has: depth, bytes, age, bounds and drops, from the store's statistics.
    public init(name: String, state: LinkState, stats: QueueStats, config: BridgeConfig?, nowMilliseconds: UInt64) {
        let age = StatusArithmetic.ageSeconds(enqueuedAt: stats.oldestEnqueuedAt, now: nowMilliseconds)
        self.init(
            name: name,
            state: state,
            depth: stats.depth,
            bytes: stats.bytes,
            oldestAgeSeconds: age,
            bounds: StatusArithmetic.bounds(
                depth: stats.depth,
                bytes: stats.bytes,
                oldestAgeSeconds: age,
                maxMessages: config?.queueMaxMessages ?? 0,
                maxBytes: config?.queueMaxBytes ?? 0,
                maxAgeSeconds: config?.queueMaxAge.map { Double($0.components.seconds) }
            ),
            dropped: stats.dropped.total + stats.rejected.total
        )
    }
}

extension GatewayStatusSnapshot {
    /// snake_case keys, sorted, so scripts and diffs see a stable document. Byte for byte what Foundation's
    /// JSONEncoder (`.convertToSnakeCase`, `.sortedKeys`, slashes escaped) wrote before.
    public func jsonData(pretty: Bool = false) throws -> [UInt8] {
        let tree = try JSONValueEncoder(sortingKeys: true, snakeCaseKeys: true).encode(self)
        let text = try pretty ? tree.prettySerialized(escapingSlashes: true) : tree.serialized(escapingSlashes: true)
        return Array(text.utf8)
    }

    public init(json: some Collection<UInt8>) throws {
        self = try JSONValueDecoder(snakeCaseKeys: true).decode(Self.self, from: json)
    }

    /// What `sluice status` shows when the gateway does not answer: the store's queues, read-only.
    public static func fromStore(
        _ store: Store,
        config: GatewayConfig,
        unreachable: String?,
        now: Double = WallClock.secondsSince1970()
    ) throws(StoreError) -> GatewayStatusSnapshot {
        let nowMilliseconds = UInt64(max(0, now * 1000))
        var names = config.bridges.map(\.name)
        for name in try store.bridgeNames() where !names.contains(name) { names.append(name) }
        var bridges: [BridgeStatus] = []
        for name in names {
            var status = BridgeStatus(
                name: name,
                state: .unknown,
                stats: try store.bridgeStats(bridge: name),
                config: config.bridges.first { $0.name == name },
                nowMilliseconds: nowMilliseconds
            )
            status.deadLetters = (try? store.bridgeDeadLetterCounts(bridge: name)).map(\.current)
            status.paused = (try? store.bridgeControl(queue: name))?.paused ?? false
            bridges.append(status)
        }
        return GatewayStatusSnapshot(
            source: .store,
            generatedAt: now,
            store: StoreUsage(path: store.path, config: config),
            bridges: bridges,
            gatewayUnreachable: unreachable
        )
    }
}

extension StoreUsage {
    /// The store file at `path` against the configuration's `store_max_size`; nil if it cannot be read.
    init?(path: String, config: GatewayConfig) {
        guard let size = PathText.fileSize(path) else { return nil }
        self.init(path: path, fileBytes: size, maxBytes: UInt64(max(0, config.storeMapSizeMax)))
    }
}
