import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SluiceBridge
import SluiceBroker
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// Drives one bridge: carries out what the pure `BridgeLink` asks (connect, send, fetch from the
/// durable queue, remove acknowledged messages, publish `in` messages locally, back off) and feeds
/// it what happens on the socket. All state lives on `loop`.
final class BridgeRunner: @unchecked Sendable {
    let name: String
    /// The `out` rules and their class queues at start, for the broker's routing table (DurableRouting.swift);
    /// the broker holds the ones in force.
    let initialOutbound: BridgeOutbound
    let limits: QueueLimits
    private let loop: any EventLoop
    private let addresses: [HostPort]
    /// `bridge_bind_address`: the local address the socket binds to before connecting.
    private let bindAddress: SocketAddress?
    private let store: Store
    private let host: BrokerHost
    private let logger: Logger
    /// For the link's and the drain's lines, which start with `bridge NAME` themselves.
    private let linkLogger: Logger
    private let localNotificationTopic: String?
    /// `local_username`: the ACL checks of the bridge's local side; nil when not set.
    private let localAccess: BridgeLocalAccess?
    private var link: BridgeLink<ContinuousClock.Instant>
    /// TLS towards the remote (`bridge_cafile`/`capath`...), and whether to check its hostname.
    private let tls: (context: NIOSSLContext, verifyHostname: Bool)?
    private var channel: (any Channel)?
    private var ticker: RepeatedTask?
    private var reconnect: Scheduled<Void>?
    private var stopped = false
    /// Messages acknowledged by the remote whose removal from the queue has not committed yet. They are not
    /// sent again on a new connection (a fetch skips them), and they count against the `ResendBound`.
    private var removing: Set<UInt64> = []
    /// Acknowledged or dead-lettered, not yet gone from the queue: after a crash they are sent again.
    private var unremoved: Int { removing.count + deadLettering.count }
    /// Acknowledged seqs not yet handed to the store: removals are submitted once per read batch
    /// from the remote (one store operation and one completion for a burst of PUBACKs).
    private var pendingRemovals: [UInt64] = []
    /// Between the first `channelRead` of a read batch and its `channelReadComplete`.
    private var inReadBatch = false
    /// Packets encoded by this `run` and not yet written.
    private var outbound: ByteBuffer?
    /// A `queueHasMore` hop to `loop` is already queued: appends committing meanwhile need no other.
    private let moreQueued = NIOLockedValueBox(false)
    /// Seqs handed to the store's dead letters whose move has not committed: fetches skip them.
    private var deadLettering: Set<UInt64> = []
    /// The control record's generation last seen (`sluice queue pause|resume|requeue|drop`).
    private var controlGeneration: UInt64?
    private var lastControlPoll = ContinuousClock.now
    /// The wall-clock time the current run of failures began (nil while healthy), for /healthz.
    private var failingSince: WallInstant?
    /// When the link last came up or went down (the start until it first does), and the address it
    /// uses or last tried: for `sluice status`.
    private var stateSince = WallInstant()
    private var lastAddress: HostPort?
    /// Wall-clock times of the last CONNACK and the last failure, for metrics and `$SYS`; the counts
    /// they were taken at tell a new event from the same one seen again.
    private var lastConnectedAt: (at: WallInstant, connections: UInt64)?
    private var lastErrorAt: (at: WallInstant, failures: UInt64, text: String)?
    private let tickInterval: TimeAmount
    /// The per-class queues (`topic … priority N ttl D`) the link is fed from.
    let queues: BridgeQueues
    /// Start, progress and end lines of a drain (see `DrainProgress`), sampled once a second.
    private var drain: DrainProgress<ContinuousClock.Instant>
    private var lastDrainSample = ContinuousClock.now

    init(
        config: BridgeConfig,
        loop: any EventLoop,
        store: Store,
        host: BrokerHost,
        logger: Logger,
        storeChanges: StoreChangeSignal
    ) throws {
        self.name = config.name
        self.loop = loop
        self.addresses = config.addresses
        self.bindAddress = try config.bindAddress.map { try SocketAddress(ipAddress: $0, port: 0) }
        self.store = store
        self.host = host
        self.linkLogger = logger
        var logger = logger
        logger[metadataKey: "bridge"] = "\(config.name)"
        self.logger = logger
        let rules = try Self.rules(from: config)
        self.initialOutbound = Self.outbound(rules: rules, config: config)
        self.limits = QueueLimits(
            maxMessages: config.queueMaxMessages == 0 ? .max : config.queueMaxMessages,
            maxBytes: config.queueMaxBytes == 0 ? .max : config.queueMaxBytes,
            maxAge: config.queueMaxAge.map { UInt64($0.components.seconds) * 1000 },
            policy: config.queueOverflow == .rejectNew ? .rejectNew : .dropOldest
        )
        let hostName = SystemInfo.hostName()
        self.localNotificationTopic = config.notifications ? config.effectiveNotificationTopic(hostName: hostName) : nil
        self.localAccess = config.localUsername.map {
            BridgeLocalAccess(username: $0, clientID: config.effectiveLocalClientID(hostName: hostName), logger: logger)
        }
        self.tls = config.usesTLS ? try TLSContexts.bridgeClient(config) : nil
        if config.bridgeInsecure {
            logger.warning("bridge_insecure is on: the remote's certificate hostname is NOT checked")
        }
        let version: ProtocolVersion =
            switch config.protocolVersion {
            case .v31: .v3_1
            case .v311: .v3_1_1
            case .v5: .v5
            }
        var configuration = BridgeLinkConfiguration(
            name: config.name,
            addressCount: config.addresses.count,
            roundRobin: config.roundRobin,
            protocolVersion: version,
            clientIdentifier: config.effectiveRemoteClientID(hostName: hostName),
            cleanSession: config.cleanSession,
            keepAliveSeconds: UInt16(clamping: config.keepaliveInterval),
            username: config.remoteUsername,
            password: config.remotePassword.map { Array($0.utf8) },
            notificationTopic: config.notifications ? config.effectiveNotificationTopic(hostName: hostName) : nil,
            tryPrivate: config.tryPrivate,
            maxInflight: config.maxInflight,
            rules: rules,
            maxPacketSize: config.maxPacketSize > 0 ? UInt32(config.maxPacketSize) : nil,
            restartBase: .seconds(config.restartTimeout.base),
            restartCap: .seconds(config.restartTimeout.cap),
            connectTimeout: .seconds(max(5, config.keepaliveInterval)),
            progressTimeout: .seconds(config.progressTimeout),
            maxAttempts: config.maxAttempts,
            maxRate: config.maxRate,
            maxByteRate: config.maxByteRate
        )
        configuration.addressLabels = config.addresses.map(\.description)
        configuration.outgoingRetain = config.outgoingRetain
        configuration.attemptUnsubscribe = config.attemptUnsubscribe
        configuration.startType =
            switch config.startType {
            case .automatic: .automatic
            case .lazy: .lazy(threshold: config.threshold, idleTimeout: .seconds(config.idleTimeout))
            case .once: .once
            }
        // Paced links tick faster: the token bucket refills at each tick and holds a twentieth of a second (plus
        // one token), so ticks running up to twice late on a loaded machine still lose no tokens.
        self.tickInterval = config.maxRate == nil ? .milliseconds(250) : .milliseconds(25)
        self.link = BridgeLink(configuration: configuration, random: SystemRandomNumberGenerator())
        self.drain = DrainProgress(name: config.name)
        // Last: it starts its reader thread, which only `stop()` ends.
        self.queues = BridgeQueues(config: config, store: store, loop: loop, logger: logger, storeChanges: storeChanges)
    }

    /// The queued form of a local message the broker routed to this bridge (`append`: topic already remapped,
    /// class queue chosen), or nil when `local_username`'s ACL keeps it from the bridge. On the broker loop.
    func queuedMessage(for message: SluiceBroker.Message, append: DurableAppend) -> QueuedMessage? {
        if let localAccess, !localAccess.allows(.outbound, topic: message.topic, policy: host.accessPolicy) {
            return nil
        }
        // No properties and no rule TTL: stored as no bytes (read back as none, by older builds too), so
        // neither the append nor the send encodes or parses an empty list.
        var stored: [UInt8] = []
        if !message.properties.isEmpty || append.queue.ttl != nil {
            var properties = message.properties
            // The queue's own age bound governs queued messages; a rule's `ttl` rides here (BridgeQueues).
            properties.messageExpiryInterval = append.queue.ttl
            stored = properties.storageBytes()
        }
        return QueuedMessage(
            topic: append.topic,
            payload: message.payload,  // the received slice: LMDB gets the only copy
            qos: append.qos.rawValue,
            retain: message.retain,
            properties: stored,
            enqueuedAt: Store.wallClockMilliseconds()
        )
    }

    static func rules(from config: BridgeConfig) throws -> BridgeRules {
        BridgeRules(
            try config.topics.map { topic in
                try TopicRule(
                    pattern: topic.pattern,
                    direction: BridgeDirection(topic.direction),
                    qos: QoS(rawValue: UInt8(topic.qos)) ?? .atMostOnce,
                    localPrefix: topic.localPrefix,
                    remotePrefix: topic.remotePrefix
                )
            }
        )
    }

    /// SIGHUP: new topic rules (and their classes); remote subscriptions follow while connected. The broker's
    /// routing table gets the `out` side separately, in one step for every bridge (`BrokerHost.replaceBridgeOutbound`).
    func updateRules(_ rules: BridgeRules, classes: [RuleClass]) {
        queues.updateRules(classes)
        loop.execute { self.run(self.link.updateRules(rules)) }
    }

    // MARK: Lifecycle (any thread)

    func start() {
        loop.execute {
            self.ticker = self.loop.scheduleRepeatedTask(initialDelay: self.tickInterval, delay: self.tickInterval) {
                _ in
                self.run(self.link.tick(now: .now))
                self.expireOldMessages()
                self.queues.reportExpired()
                self.pollControl()
                self.sampleDrain()
                self.localAccess?.flushWarnings()
            }
            // A bridge paused by `sluice queue pause` stays paused from its first connection.
            self.pollControl(force: true) {
                guard !self.stopped else { return }
                self.run(self.link.tick(now: .now))  // the link's time before its first connection
                if self.link.awaitsThreshold { self.checkThreshold() } else { self.run(self.link.start()) }
            }
        }
    }

    /// New messages were committed to this bridge's queue (any thread).
    func queueHasMore() {
        let alreadyQueued = moreQueued.withLockedValue { queued in
            defer { queued = true }
            return queued
        }
        guard !alreadyQueued else { return }
        loop.execute {
            // Cleared before the link looks: a commit after this point queues a new hop.
            self.moreQueued.withLockedValue { $0 = false }
            self.queues.takeCommitted()  // the commits' records, for the fetch this may start
            if self.link.awaitsThreshold { self.checkThreshold() } else { self.run(self.link.queueHasMore()) }
        }
    }

    /// `start_type lazy`: the queue's depth decides whether the idle link connects.
    private func checkThreshold() {
        let (store, name) = (self.store, self.name)
        queues.readOffLoop({ Int(clamping: try store.bridgeStats(bridge: name).depth) }) { result in
            switch result {
            case .success(let depth): self.run(self.link.queued(count: depth))
            case .failure(let error):
                if !self.stopped { self.logger.error("cannot count the queue for start_type lazy: \(error)") }
            }
        }
    }

    func stop() -> EventLoopFuture<Void> {
        loop.submit {
            self.stopped = true
            self.ticker?.cancel()
            self.reconnect?.cancel()
            self.run(self.link.stop())
            self.channel?.close(promise: nil)
        }.flatMap { self.queues.shutdown() }
    }

    /// The link's state and counters, for metrics.
    struct Snapshot: Sendable {
        var connected: Bool
        var paused: Bool
        var acknowledged: UInt64
        var received: UInt64
        var connections: UInt64
        var rejectedByReason: [UInt8: UInt64]
        var connectFailuresByReason: [String: UInt64]
        var lastError: String?
        var failingSince: WallInstant?
        var stateSince: WallInstant
        var address: HostPort?
        var lastConnectedAt: WallInstant?
        var lastErrorAt: WallInstant?
        /// `local_username`: messages the ACL kept from the local side, by direction ("in", "out").
        var localDenied: [String: UInt64] = [:]
        /// The committed-record cache (BridgeQueues): records and bytes held, records sent from memory.
        var cacheRecords = 0
        var cacheBytes = 0
        var cacheServed: UInt64 = 0
    }

    func snapshot() -> EventLoopFuture<Snapshot> {
        loop.submit {
            let statistics = self.link.statistics
            let cache = self.queues.cacheStatus
            return Snapshot(
                connected: self.link.isConnected,
                paused: self.link.paused,
                acknowledged: statistics.acknowledged,
                received: statistics.received,
                connections: statistics.connections,
                rejectedByReason: statistics.rejectedByReason,
                connectFailuresByReason: statistics.connectFailuresByReason,
                lastError: statistics.lastError,
                failingSince: statistics.lastError == nil ? nil : self.failingSince,
                stateSince: self.stateSince,
                address: self.lastAddress,
                lastConnectedAt: self.lastConnectedAt?.at,
                lastErrorAt: self.lastErrorAt?.at,
                localDenied: self.localAccess?.denied ?? [:],
                cacheRecords: cache.records,
                cacheBytes: cache.bytes,
                cacheServed: cache.counters.served
            )
        }
    }

    /// Picks up `sluice queue pause|resume|requeue|drop` from another process: they bump the bridge's
    /// control generation in the store; a read transaction a second (off the loop) notices it. `then` runs
    /// on the loop once it is applied.
    private func pollControl(force: Bool = false, then: (@Sendable () -> Void)? = nil) {
        guard force || ContinuousClock.now - lastControlPoll >= .seconds(1) else { return }
        lastControlPoll = .now
        let (store, name) = (self.store, self.name)
        queues.readOffLoop({ try store.bridgeControl(queue: name) }) { result in
            switch result {
            case .success(let control) where control.generation != self.controlGeneration:
                self.controlGeneration = control.generation
                self.queues.takeCommitted(invalidate: true)  // another process changed the queue (requeue, drop, purge)
                self.run(self.link.setPaused(control.paused))
                self.run(self.link.queueHasMore())  // a requeue appended messages
            case .success: break
            case .failure(let error):
                if !self.stopped { self.logger.error("reading the bridge control record failed: \(error)") }
            }
            then?()
        }
    }

    /// `force`: at the link's connect, so a drain starts with the whole backlog and counts from the first send.
    private func sampleDrain(force: Bool = false) {
        let now = ContinuousClock.now
        guard force || now - lastDrainSample >= .seconds(1) else { return }
        lastDrainSample = now
        guard link.isConnected || drain.isDraining else {
            _ = drain.update(now: now, depth: 0, delivered: 0, connected: false)  // link down: nothing to read
            return
        }
        let (store, name) = (self.store, self.name)
        queues.readOffLoop({ try store.bridgeStats(bridge: name).depth }) { result in
            guard case .success(let depth) = result else { return }
            let statistics = self.link.statistics
            let delivered = statistics.acknowledged + statistics.sentAtMostOnce + statistics.deadLettered
            // Delivered messages whose removal has not committed yet are not left to send.
            let left = max(0, Int(depth) - self.unremoved)
            let connected = self.link.isConnected
            if let line = self.drain.update(now: now, depth: left, delivered: delivered, connected: connected) {
                self.linkLogger.info("\(line)")
            }
        }
    }

    private var lastExpiry = ContinuousClock.now

    /// Applies `queue_max_age` even when nothing new is appended (appends apply it too).
    private func expireOldMessages() {
        guard let maxAge = limits.maxAge, ContinuousClock.now - lastExpiry > .seconds(10) else { return }
        lastExpiry = .now
        queues.expire(maxAge: maxAge)
    }

    // MARK: Actions (on `loop`)

    private func run(_ actions: [BridgeAction]) {
        var pending: [BridgeAction] = actions[...].reversed()
        var wrote = false
        while let action = pending.popLast() {
            var next: [BridgeAction] = []
            switch action {
            case .connect(let index):
                lastAddress = addresses[index % addresses.count]
                open(addresses[index % addresses.count])
            case .sendConnect(let connect):
                write(.connect(connect))
                wrote = true
            case .send(let packet):
                write(packet)
                wrote = true
            case .fetch(let after, let limit):
                // Acknowledged messages whose removal has not committed yet are sent again after a crash: with
                // those in flight they stay within `ResendBound`. (`limit` may be smaller than the room, e.g. a
                // rate limit's allowance.)
                let room = ResendBound(window: link.window).room(inflight: link.inflightCount, unremoved: unremoved)
                next = fetch(after: after, limit: max(0, min(limit, room)))
            case .remove(let seqs):
                removing.formUnion(seqs)
                pendingRemovals += seqs
            case .deadLetter(let seqs, let reason):
                deadLettering.formUnion(seqs)
                queues.deadLetter(seqs, code: reason.code) { [logger] result in
                    if case .failure(let error) = result {
                        logger.error("moving messages to the dead letters failed: \(error)")
                    }
                    self.loop.execute {
                        self.deadLettering.subtract(seqs)
                        self.run(self.link.queueHasMore())
                    }
                }
            case .publishLocally(let publish, let delivery):
                let message = SluiceBroker.Message(
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    properties: publish.properties
                )
                let host = self.host
                let localAccess = self.localAccess
                guard let delivery else {
                    host.loop.execute {
                        if localAccess?.allows(.inbound, topic: message.topic, policy: host.accessPolicy) ?? true {
                            host.publish(message)
                        }
                    }
                    break
                }
                host.loop.execute {
                    guard localAccess?.allows(.inbound, topic: message.topic, policy: host.accessPolicy) ?? true else {
                        // As Mosquitto does with a message its ACL drops: acknowledged, so the central
                        // does not resend it.
                        self.loop.execute { self.run(self.link.publishedLocally(delivery)) }
                        return
                    }
                    host.publish(message) { outcome in
                        self.loop.execute {
                            // Acknowledged to the central only once kept (design: durability);
                            // otherwise the link is closed and the central sends it again.
                            guard outcome.isCommitted else {
                                // Like a dropped link: the central resends what it did not get a PUBACK for.
                                // Said once per link: a closed link has nothing left to close.
                                guard let channel = self.channel, channel.isActive else { return }
                                self.logger.warning(
                                    "closing bridge connection: an in message could not be kept: \(outcome)"
                                )
                                channel.close(promise: nil)
                                return
                            }
                            self.run(self.link.publishedLocally(delivery))
                        }
                    }
                }
            case .close(let reason):
                logger.debug("closing bridge connection: \(reason)")  // the link's retry line says why
                if reason == .idle {
                    flushOutbound()  // a lazy bridge's clean end: the notification "0" and DISCONNECT go out
                } else {
                    outbound = nil  // as before batching: unflushed writes die with the channel
                }
                channel?.close(promise: nil)
            case .scheduleReconnect(let delay):
                guard !stopped else { break }
                let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
                logger.debug("reconnecting in \((seconds * 10).rounded() / 10) s")  // said by the link's retry line
                reconnect = loop.scheduleTask(
                    in: .nanoseconds(
                        Int64(delay.components.seconds) * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
                    )
                ) {
                    self.run(self.link.reconnectTimerFired())
                }
            case .stateChanged(let connected):
                stateSince = WallInstant()
                logger.debug(connected ? "bridge link up" : "bridge link down")  // the link's own lines say why
                if connected { sampleDrain(force: true) }
                if let topic = localNotificationTopic {
                    let message = SluiceBroker.Message(
                        topic: topic,
                        payload: ByteBuffer(string: connected ? "1" : "0"),
                        qos: .atLeastOnce,
                        retain: true
                    )
                    let host = self.host
                    host.loop.execute { host.publish(message) }
                }
            case .log(let level, let text):
                switch level {
                case .debug: linkLogger.debug("\(text)")
                case .info: linkLogger.info("\(text)")
                case .warning: linkLogger.warning("\(text)")
                case .error: linkLogger.error("\(text)")
                }
            }
            pending.append(contentsOf: next.reversed())
        }
        if wrote { flushOutbound() }
        if !inReadBatch { submitRemovals() }
        if link.statistics.lastError == nil {
            failingSince = nil
        } else if failingSince == nil {
            failingSince = WallInstant()
        }
        let statistics = link.statistics
        if statistics.connections > 0, statistics.connections != lastConnectedAt?.connections {
            lastConnectedAt = (WallInstant(), statistics.connections)
        }
        if let text = statistics.lastError,
            statistics.failedAttempts != lastErrorAt?.failures || text != lastErrorAt?.text
        {
            lastErrorAt = (WallInstant(), statistics.failedAttempts, text)
        }
    }

    /// Hands the acknowledged seqs gathered so far to the store in one operation. Until it commits
    /// they count against the `ResendBound` (`unremoved`), so duplicates after a crash stay within it.
    private func submitRemovals() {
        guard !pendingRemovals.isEmpty else { return }
        let seqs = pendingRemovals
        pendingRemovals = []
        // Lazy (riding the next append's commit: one commit per message instead of two) unless sending waits
        // on these removals: the bound reached, or half of it held back in a drain.
        let lazily = ResendBound(window: link.window).removesLazily(inflight: link.inflightCount, unremoved: unremoved)
        queues.remove(seqs, lazily: lazily) { [logger] result in
            if case .failure(let error) = result { logger.error("removing acknowledged messages failed: \(error)") }
            self.loop.execute {
                self.removing.subtract(seqs)
                self.run(self.link.queueHasMore())
            }
        }
    }

    /// Answers from the records just committed when they are what comes next, else reads off the loop
    /// (BridgeQueues) and answers the link when the read is back; nothing to read is answered at once.
    private func fetch(after: UInt64?, limit: Int) -> [BridgeAction] {
        guard limit > 0 else { return link.fetched([]) }
        // Seqs acknowledged or dead-lettered whose removal has not committed are skipped (a new connection
        // fetches from the head, and the remote has them already).
        let fromMemory = queues.fetch(after: after, limit: limit, skip: removing.union(deadLettering)) { items in
            self.run(self.link.fetched(items))
        }
        return fromMemory.map { link.fetched($0) } ?? []
    }

    /// Encodes `packet` into `outbound`; `run` writes and flushes it once at the end, so a burst of
    /// PUBLISHes is one buffer and one write.
    private func write(_ packet: Packet) {
        guard let channel else { return }
        if outbound == nil { outbound = channel.allocator.buffer(capacity: 4096) }
        MQTTCodec.encode(packet, version: link.configuration.protocolVersion, into: &outbound!)
    }

    private func flushOutbound() {
        guard let buffer = outbound else { return }
        outbound = nil
        guard let channel, buffer.readableBytes > 0 else { return }
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func open(_ address: HostPort) {
        logger.debug("connecting to \(address)")
        let version = link.configuration.protocolVersion
        let tls = self.tls
        var bootstrap = ClientBootstrap(group: loop)
        if let bindAddress { bootstrap = bootstrap.bind(to: bindAddress) }
        bootstrap
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(
                                context: tls.context,
                                serverHostname: tls.verifyHostname
                                    ? TLSContexts.serverHostname(forBridgeHost: address.host) : nil
                            )
                        )
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(MQTTPacketDecoder(version: version))
                    )
                    // Made here, on the channel's loop (the runner's), so the handler never crosses threads.
                    try channel.pipeline.syncOperations.addHandler(
                        BridgeInboundHandler(runner: self, host: address.host)
                    )
                }
            }
            .connect(host: address.host, port: address.port)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.channel = channel
                    self.run(self.link.connected())
                case .failure(let error):
                    let described = BridgeBindAddress.explain(error, bindAddress: self.bindAddress)
                    self.run(self.link.connectionClosed(error: described))  // the link logs why
                }
            }
    }

    fileprivate func received(_ packet: Packet) {
        inReadBatch = true
        run(link.received(packet))
    }

    fileprivate func readComplete() {
        inReadBatch = false
        submitRemovals()
    }

    fileprivate func closed(_ channel: any Channel, error: (any Error)?) {
        if inReadBatch { readComplete() }
        guard channel === self.channel else { return }
        self.channel = nil
        run(link.connectionClosed(error: error.map(DescribedNetworkError.init)))
    }
}

/// Hands what the remote broker sends (framed and decoded by `MQTTPacketDecoder`) to the runner.
private final class BridgeInboundHandler: ChannelInboundHandler {
    typealias InboundIn = Packet

    private let runner: BridgeRunner
    /// The remote's host as configured, to explain a certificate that does not name it.
    private let host: String
    private var error: (any Error)?

    init(runner: BridgeRunner, host: String) {
        self.runner = runner
        self.host = host
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        runner.received(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        runner.readComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        runner.closed(context.channel, error: error)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.error = TLSContexts.explainBridgeFailure(error, host: host)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension BridgeInboundHandler: Sendable {}

extension BridgeDirection {
    init(_ direction: BridgeTopic.Direction) {
        switch direction {
        case .in: self = .in
        case .out: self = .out
        case .both: self = .both
        }
    }
}
