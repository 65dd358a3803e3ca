import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SluiceAuth
import SluiceBridge
import SluiceBroker
import SluiceConfig
import SluicePOSIX
import SluiceStore
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// The whole gateway: builds its parts and hands them to `sluice run` as services for one
/// `ServiceGroup`, which turns SIGTERM/SIGINT into a graceful shutdown in reverse start-up order.
public final class GatewayService: Sendable {
    public let config: GatewayConfig
    /// Where `config` came from; SIGHUP reads it again.
    private let configPath: String?
    private let logger: Logger
    /// Store pressure, logged once per change and summed every few seconds.
    private let alarm: StoreAlarm
    /// Store events that may drop records a bridge holds in memory (see `StoreChangeSignal`).
    private let storeChanges = StoreChangeSignal()
    /// The listeners' `crlfile` lists, read again on SIGHUP.
    private let revocationLists = NIOLockedValueBox<[RevocationList]>([])

    public init(config: GatewayConfig, configPath: String?, logger: Logger) {
        self.config = config
        self.configPath = configPath
        self.logger = logger
        self.alarm = StoreAlarm(logger: logger)
    }

    /// The gateway's parts as services in dependency order: event loops, store, broker, one per
    /// bridge, LoRaWAN, one per listener, metrics, systemd notifier. The `ServiceGroup` that runs them
    /// starts each once the ones before it are ready and, on SIGTERM, stops them in reverse: clients
    /// hear DISCONNECT before the broker saves, and the store drains pending commits last.
    /// Reads the security files here, so a bad one fails before anything opens or binds.
    public func services() async throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
        // Trapped before anything binds: a SIGHUP sent as soon as the gateway answers (its default
        // action is to end the process) must not kill it; it waits for the reloader.
        let reloadSignals = await UnixSignalsSequence(trapping: .sighup)
        IdleTrim.fixHeapThresholds()  // before the broker allocates: memory freed after a burst goes back
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let hashingPool = HashingPool()  // its thread starts with the first password file
        let host = BrokerHost(loop: group.next(), settings: BrokerSettings(config), logger: logger)
        host.connectionMessages = config.connectionMessages
        do {
            try await installSecurity(on: host, hashingPool: hashingPool)
        } catch {
            await hashingPool.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        let opened = OpenedStore()
        let lorawan = config.lorawanUDPListener.map { _ in
            LoRaWANListener(
                host: host,
                region: config.lorawanRegion,
                gatewayTimeoutSeconds: config.lorawanGatewayTimeout,
                logger: logger
            )
        }
        var stages = [eventLoopsStage(group, hashingPool)]
        if !config.bridges.isEmpty || config.persistence {
            stages.append(storeStage(opened, host: host, group: group))
        }
        stages.append(brokerStage(host, opened: opened))
        stages += config.bridges.indices.map { index in
            ServiceStage("bridge \(config.bridges[index].name)") {
                let bridge = opened.bridges[index]
                bridge.start()
                return { try? await bridge.stop().get() }
            }
        }
        // Before the MQTT listeners, so a client that can connect finds the gateway events flowing;
        // stopped after them, publishing OFFLINE for its gateways while the bridges still run.
        if let lorawan, let address = config.lorawanUDPListener {
            stages.append(
                ServiceStage("LoRaWAN listener") {
                    _ = try await binding("lorawan_udp_listener", "\(address)") { try await lorawan.start(address) }
                    return { await lorawan.stop() }
                }
            )
        }
        stages += config.listeners.enumerated().map { index, listener in
            ServiceStage("listener \(listener.name)") {
                let channel = try await binding("listener", listener.name) {
                    try await self.bind(listener, index: index, host: host, group: group)
                }
                return { try? await channel.close() }
            }
        }
        if let address = config.metricsListener {
            stages.append(metricsStage(address, host: host, opened: opened, lorawan: lorawan, group: group))
        }
        stages.append(notifierStage(host: host, opened: opened, reloadSignals: reloadSignals))
        return StagedService.group(stages, logger: logger)
    }

    /// The LMDB store and the bridges whose queues it holds; on stop, pending commits (appends,
    /// acknowledged removals) finish before it closes.
    private func storeStage(
        _ opened: OpenedStore,
        host: BrokerHost,
        group: MultiThreadedEventLoopGroup
    ) -> ServiceStage {
        ServiceStage("store") {
            let store = try self.openStore()
            do {
                let bridges = try self.config.bridges.map {
                    try BridgeRunner(
                        config: $0,
                        loop: group.next(),
                        store: store,
                        host: host,
                        logger: self.logger,
                        storeChanges: self.storeChanges
                    )
                }
                self.connectDurableQueues(host: host, store: store, bridges: bridges)
                StartupBanner.restoredBacklog(self.config.bridges, store: store, logger: self.logger)
                opened.set(store: store, bridges: bridges)
            } catch {
                store.close()
                throw error
            }
            return { store.close() }
        }
    }

    /// First up, last down: everything else runs on these threads.
    private func eventLoopsStage(_ group: MultiThreadedEventLoopGroup, _ hashingPool: HashingPool) -> ServiceStage {
        let logger = self.logger
        return ServiceStage("event loops") {
            return {
                await hashingPool.shutdown()
                try? await group.shutdownGracefully()
                logger.info("stopped")
            }
        }
    }

    /// Saved broker state loaded, the broker's timers running; on stop, clients told DISCONNECT.
    private func brokerStage(_ host: BrokerHost, opened: OpenedStore) -> ServiceStage {
        ServiceStage("broker") {
            let store = opened.store
            if self.config.persistence, let store {
                try await host.loop.submit { try host.enablePersistence(store) }.get()
            }
            let tick = TimeAmount.milliseconds(250)
            let ticker = host.loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in host.tick() }
            let sysTicker =
                self.config.sysInterval > 0
                ? self.scheduleSystemTopics(host: host, bridges: opened.bridges, store: store) : nil
            let alarm = self.alarm
            let pressureSummary = host.loop.scheduleRepeatedTask(
                initialDelay: .seconds(Int64(StoreAlarm.interval)),
                delay: .seconds(Int64(StoreAlarm.interval))
            ) { _ in alarm.summarize() }
            return {
                ticker.cancel()
                sysTicker?.cancel()
                pressureSummary.cancel()
                await host.disconnectClients(within: .seconds(2))  // also saves the last changes
                await host.stopPersistence()
            }
        }
    }

    private func metricsStage(
        _ address: HostPort,
        host: BrokerHost,
        opened: OpenedStore,
        lorawan: LoRaWANListener?,
        group: MultiThreadedEventLoopGroup
    ) -> ServiceStage {
        let config = self.config
        let logger = self.logger
        return ServiceStage("metrics listener") {
            let (store, bridges) = (opened.store, opened.bridges)
            let status = GatewayStatus(host: host, bridges: bridges, store: store, config: config, loop: group.next())
            let metrics = MetricsEndpoint(
                host: host,
                bridges: bridges,
                store: store,
                lorawan: lorawan?.counters,
                status: status
            )
            let channel = try await binding("metrics_listener", "\(address)") {
                try await metrics.bind(address, group: group, logger: logger)
            }
            status.start()
            return {
                try? await channel.close()
                try? await status.stop().get()  // no sample reads the store after it closed
            }
        }
    }

    /// Last up, first down: drops privileges once everything is bound and open, says READY (log
    /// banner and sd_notify), pings the watchdog and answers SIGHUP; on stop, says STOPPING.
    private func notifierStage(
        host: BrokerHost,
        opened: OpenedStore,
        reloadSignals: UnixSignalsSequence
    ) -> ServiceStage {
        ServiceStage("systemd notifier") {
            let config = self.config
            let bridges = opened.bridges
            if let user = config.user, PrivilegeDrop.isNeeded(user: user) {
                let reread =
                    [self.configPath, config.passwordFile, config.aclFile] + config.listeners.map(\.passwordFile)
                try PrivilegeDrop.drop(to: user, logger: self.logger, rereadOnReload: reread.compactMap { $0 })
            }
            self.logger.notice("\(StartupBanner.ready(config))")
            _ = SystemdNotifier.notify("READY=1")
            let watchdog = SystemdNotifier.watchdogInterval.map { interval in
                // Pinged from the broker's own loop, so a stuck broker stops the pings.
                let half = TimeAmount.nanoseconds(Int64(interval.components.seconds) * 500_000_000)
                return host.loop.scheduleRepeatedTask(initialDelay: .zero, delay: half) { _ in
                    _ = SystemdNotifier.notify("WATCHDOG=1")
                }
            }
            let reloader = Task {
                for await _ in reloadSignals { self.reload(host: host, bridges: bridges) }
            }
            // Start-up code never runs again: RSS shows the working set.
            WorkingSet.releaseStartupCode(logger: self.logger)
            return {
                self.logger.info("shutting down")
                _ = SystemdNotifier.notify("STOPPING=1")
                reloader.cancel()
                watchdog?.cancel()
            }
        }
    }

    /// SIGHUP: read the configuration again and apply what can change without dropping clients
    /// (bridge topic rules). A broken file keeps the running configuration and says why.
    private func reload(host: BrokerHost, bridges: [BridgeRunner]) {
        guard let configPath else {
            logger.notice("SIGHUP: running without a configuration file, nothing to reload")
            return
        }
        _ = SystemdNotifier.notify("RELOADING=1")
        defer { _ = SystemdNotifier.notify("READY=1") }
        do {
            let fresh = try GatewayConfig.load(path: configPath)
            // Each running listener's file as the reloaded configuration names it (listeners change at restart).
            let security = try Self.loadSecurity(fresh, listeners: SecurityFiles.ownListeners(config), logger: logger)
            let files = security.listenerPasswords
            host.authenticator?.replacePasswords(security.passwords)
            if !files.isEmpty {
                host.loop.execute { [files] in
                    for (index, file) in files { host.listenerAuthenticators[index]?.replacePasswords(file) }
                }
            }
            host.loop.execute { host.setAccessPolicy(security.acl) }
            for list in revocationLists.withLockedValue({ $0 }) {
                do {
                    try list.reload()
                } catch {
                    logger.error("crlfile not reloaded, the lists read before stay in force: \(error)")
                }
            }
            var rules: [(BridgeRunner, BridgeRules, [RuleClass])] = []
            var outbound: [Int: BridgeOutbound] = [:]
            for (index, bridge) in bridges.enumerated() {
                guard let section = fresh.bridges.first(where: { $0.name == bridge.name }) else { continue }
                let newRules = try BridgeRunner.rules(from: section)
                rules.append((bridge, newRules, RuleClass.all(from: section)))
                outbound[index] = BridgeRunner.outbound(rules: newRules, config: section)
            }
            // The bridges first (their feeds learn new classes), then the broker's one routing table in one step.
            for (bridge, newRules, classes) in rules { bridge.updateRules(newRules, classes: classes) }
            host.loop.execute { [outbound] in host.replaceBridgeOutbound(outbound) }
            let report = ReloadReport(running: config, fresh: fresh).lines
            logger.notice("\(report.applied)")
            if let restart = report.needsRestart { logger.warning("\(restart)") }
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
        }
    }

    /// Reads the password and ACL files (errors name the file and line) and gives them to the broker.
    private func installSecurity(on host: BrokerHost, hashingPool: HashingPool) async throws {
        let security = try Self.loadSecurity(config, listeners: SecurityFiles.ownListeners(config), logger: logger)
        let authenticator = Authenticator(
            passwords: security.passwords,
            allowAnonymous: config.effectiveAllowAnonymous,
            pool: hashingPool
        )
        var listenerAuthenticators: [Int: Authenticator] = [:]
        if config.perListenerSettings {
            for index in config.listeners.indices {
                let own = config.authentication(forListener: index)
                logger.notice(
                    "per_listener_settings: listener \(config.listeners[index].name): anonymous clients \(own.allowAnonymous ? "allowed" : "refused"), password file \(own.passwordFile ?? "none")"
                )
                listenerAuthenticators[index] = Authenticator(
                    passwords: security.listenerPasswords[index] ?? nil,
                    allowAnonymous: own.allowAnonymous,
                    pool: hashingPool
                )
            }
        }
        try await host.loop.submit { [listenerAuthenticators] in
            host.authenticator = authenticator
            host.listenerAuthenticators = listenerAuthenticators
            host.setAccessPolicy(security.acl)
        }.get()
        if !config.perListenerSettings && !config.effectiveAllowAnonymous && config.allowAnonymous == nil {
            logger.notice("a listener is bound beyond loopback: anonymous clients are refused (allow_anonymous false)")
        }
    }

    /// `SecurityFiles` with the warnings about bridges' `local_password` logged.
    private static func loadSecurity(
        _ config: GatewayConfig,
        listeners: Range<Int>,
        logger: Logger
    ) throws -> SecurityFiles {
        let security = try SecurityFiles(loading: config, listeners: listeners)
        for warning in BridgeLocalCredentials.warnings(config, passwords: security.passwords) {
            logger.warning("\(warning)")
        }
        return security
    }

    private func scheduleSystemTopics(host: BrokerHost, bridges: [BridgeRunner], store: Store?) -> RepeatedTask {
        let bridgeTopics = NIOLockedValueBox(BridgeSystemTopics())
        let started = ContinuousClock.now
        return host.loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: .seconds(Int64(config.sysInterval))) {
            _ in
            let figures = bridges.map { $0.systemFigures(store: store) }
            return EventLoopFuture.whenAllSucceed(figures, on: host.loop).map { figures in
                let elapsed = (ContinuousClock.now - started) / .milliseconds(1) / 1000
                host.publishSystemTopics(
                    version: GatewayService.version,
                    bridges: figures.map { (name: $0.name, connected: $0.connected) },
                    more: bridgeTopics.withLockedValue { $0.topics(figures, seconds: elapsed) }
                )
            }
        }
    }

    /// The version `sluice version` and `$SYS/broker/version` report.
    public static let version = "0.1.0"

    /// The LMDB store under `persistence_location`, created if missing.
    private func openStore() throws -> Store {
        let directory = config.persistenceLocation
        try FileSystem.createDirectory(directory)
        let path = PathText.appending("sluice.db", to: directory)
        for warning in StoreSpaceCheck.warnings(config, configPath: configPath) { logger.warning("\(warning)") }
        let alarm = self.alarm
        let store = try Store(
            path: path,
            maxMapSize: config.storeMapSizeMax,
            commitWindow: config.queueCommitWindow.fixedWindow,
            freeSpaceGuard: FreeSpaceGuard(config.storeMinFree),
            onEvent: { [storeChanges] in
                storeChanges.note($0)
                alarm.event($0)
            }
        )
        if store.startedFromEmptyFile {
            logger.warning(
                "the store file was empty (zero bytes): started a new, empty store",
                metadata: ["path": "\(path)"]
            )
        }
        logger.info("store \(path) opened")
        return store
    }

    /// Local messages matching a bridge's `out` rules go to that bridge's queue; the publisher's
    /// PUBACK waits until every queue holding the message has committed it (see `DurableBatcher`).
    private func connectDurableQueues(host: BrokerHost, store: Store, bridges: [BridgeRunner]) {
        host.setBridgeOutbound(bridges.map(\.initialOutbound))
        let pacing = config.queueCommitWindow == .auto ? CommitPacing() : nil
        let batcher = DurableBatcher(host: host, store: store, bridges: bridges, alarm: alarm, pacing: pacing)
        host.durableSink = { token, message, appends in batcher.add(token: token, message: message, appends: appends) }
    }

    private func bind(_ listener: Listener, index: Int, host: BrokerHost, group: MultiThreadedEventLoopGroup)
        async throws -> any Channel
    {
        let maximumPacketSize = BrokerSettings(config).maximumPacketSize
        let connectTimeout = TimeAmount.seconds(Int64(config.connectTimeout))
        let logger = self.logger
        let tls =
            try listener.tls.map { settings in
                ListenerTLS(
                    context: try TLSContexts.server(settings),
                    revocation: try settings.crlFile.map {
                        let list = try RevocationList(path: $0, caFile: settings.caFile, caPath: settings.caPath)
                        revocationLists.withLockedValue { $0.append(list) }
                        return list
                    },
                    logger: logger
                )
            }
            ?? listener.pskHint.map { hint in
                ListenerTLS(
                    context: try TLSContexts.pskServer(hint: hint, keysFile: config.pskFile),
                    revocation: nil,
                    logger: logger
                )
            }
        let useIdentity = listener.tls?.useIdentityAsUsername ?? false
        let useSubject = listener.tls?.useSubjectAsUsername ?? false
        let shared = MQTTListenerContext(
            host: host,
            listener: index,
            useIdentityAsUsername: useIdentity,
            useSubjectAsUsername: useSubject,
            maximumPacketSize: maximumPacketSize,
            connectTimeout: connectTimeout,
            logger: logger
        )
        // A function, not a value: the dual-stack attempt sets an IPv6-only option, so the IPv4
        // fallback needs a fresh bootstrap.
        // Every client connection lives on the broker's loop, as in Mosquitto's one thread: a packet reaches the
        // broker core, and a delivery its subscriber's socket, without a cross-thread hand-off and wake-up. The
        // other loops run the bridges, the metrics and status endpoints. Measured against connections spread over
        // every loop (BENCHMARKS.md, "Client connections on the broker's loop"): broker CPU per message at paced
        // fan-in QoS 1 20.4 -> 11.5 µs, and closed-loop fan-in QoS 1 102k -> 132k msg/s.
        @Sendable func bootstrap() -> ServerBootstrap {
            ServerBootstrap(group: group, childGroup: host.loop)
                .serverChannelInitializer { BindInterface.apply(listener.bindInterface, to: $0) }
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                // Past the high-water mark a subscriber's messages wait in its bounded session queue
                // (the kernel's socket buffer is already full by then): 256 KiB keeps a stalled
                // subscriber's cost small (it was ~1.2 MiB each with a 1 MiB mark).
                .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 << 10, high: 256 << 10))
                .childChannelOption(.recvAllocator, value: MQTTConnectionHandler.receiveBuffers)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let makeMQTTHandler: @Sendable () -> MQTTConnectionHandler = { MQTTConnectionHandler(shared) }
                        switch listener.protocolKind {
                        case .mqtt:
                            if let tls {
                                try channel.pipeline.syncOperations.addHandler(TLSAlertRecorder())
                                try channel.pipeline.syncOperations.addHandler(
                                    tls.serverHandler(remote: channel.remoteAddress.map { "\($0)" } ?? "?")
                                )
                            }
                            try channel.pipeline.syncOperations.addHandler(makeMQTTHandler())
                        case .websockets:
                            try WebSocketListener.configure(
                                channel,
                                tls: tls,
                                maximumPacketSize: maximumPacketSize,
                                connectTimeout: connectTimeout,
                                logger: logger,
                                makeMQTTHandler: makeMQTTHandler
                            )
                        }
                    }
                }
        }
        let address: String
        let channel: any Channel
        let v6Only = ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only)
        if let written = listener.address {
            address = written
            channel = try await bootstrap().bind(host: written, port: listener.port).get()
        } else if listener.socketDomain == .ipv4 {
            address = "0.0.0.0"
            channel = try await bootstrap().bind(host: address, port: listener.port).get()
        } else if listener.socketDomain == .ipv6 {
            address = "::"
            channel = try await bootstrap().serverChannelOption(v6Only, value: 1).bind(
                host: address,
                port: listener.port
            ).get()
        } else {
            // No address: every interface, IPv4 and IPv6, as Mosquitto opens both. One IPv6 socket
            // with IPV6_V6ONLY off takes both families (IPv4 clients appear as ::ffff:a.b.c.d); a
            // host without IPv6 gets 0.0.0.0.
            do {
                channel = try await bootstrap()
                    .serverChannelOption(v6Only, value: 0)
                    .bind(host: "::", port: listener.port).get()
                address = "::"
            } catch let error as IOError where [EAFNOSUPPORT, EADDRNOTAVAIL].contains(error.errnoCode) {
                logger.notice(
                    "IPv6 is not available (\(NetworkErrorText.describe(error))): port \(listener.port) listens on IPv4 only"
                )
                channel = try await bootstrap().bind(host: "0.0.0.0", port: listener.port).get()
                address = "0.0.0.0"
            }
        }
        let bound = HostPort(host: address, port: channel.localAddress?.port ?? listener.port)
        logger.info("listening on \(bound) (\(listener.protocolKind.rawValue)\(tls != nil ? " over TLS" : ", plain"))")
        return channel
    }
}

extension BrokerSettings {
    /// The broker's limits from gateway.conf, with Mosquitto's meaning.
    init(_ config: GatewayConfig) {
        self.init()
        maxKeepalive = config.maxKeepalive
        maxInflightMessages = config.maxInflightMessages
        maxInflightBytes = config.maxInflightBytes
        maxQueuedMessages = config.maxQueuedMessages
        maxQueuedBytes = config.maxQueuedBytes
        maxTopicLevels = config.maxTopicLevels
        if config.maxPacketSize > 0 { maximumPacketSize = config.maxPacketSize }
        if config.messageSizeLimit > 0 { messageSizeLimit = config.messageSizeLimit }
        maxConnections = config.maxConnections < 0 ? nil : config.maxConnections
        for (index, listener) in config.listeners.enumerated() {
            if let limit = listener.maxConnections, limit >= 0 { listenerConnectionLimits[index] = limit }
            if let mount = listener.mountPoint { listenerMountPoints[index] = mount }
            if listener.useUsernameAsClientID { listenersUsingUsernameAsClientID.insert(index) }
        }
        retainAvailable = config.retainAvailable
        topicAliasMaximum = UInt16(clamping: config.maxTopicAlias)
        queueQoS0Messages = config.queueQoS0Messages
        allowZeroLengthClientID = config.allowZeroLengthClientID
        autoIDPrefix = config.autoIDPrefix
        maxQoS = UInt8(config.maxQoS)
        upgradeOutgoingQoS = config.upgradeOutgoingQoS
        checkRetainSource = config.checkRetainSource
    }
}

/// Gathers the durable messages of one broker-loop turn and appends them to each bridge's queue as one
/// store operation: one completion, one `queueHasMore` and one hop back to the broker loop per turn
/// instead of per message (the store's group commit already shared the fdatasync; this removes the
/// per-message closures, locks and cross-thread wake-ups around it).
///
/// The contract is unchanged: a token is reported (and its publisher acknowledged) only from the
/// completion of the append that holds it, which runs after the commit, and it is accepted only if
/// every bridge queue it went to stored it. Order is kept: a turn's batch is submitted before the
/// next turn's, in arrival order, and the store's writer applies operations in submission order.
///
/// State lives on the broker loop (`add` and `flush`); completions run on the store's writer thread
/// and share only the per-batch `DurableBatch`.
final class DurableBatcher: @unchecked Sendable {
    private let host: BrokerHost
    private let store: Store
    private let bridges: [BridgeRunner]
    private let alarm: StoreAlarm
    /// The turn's tokens, each with the number of bridge queues it goes to.
    private var tokens: [UInt64] = []
    private var targets: [Int] = []
    /// Per bridge: the turn's queued messages and, for each, the index of its token.
    private var messages: [[QueuedMessage]]
    private var owners: [[Int]]
    /// Per bridge: each queued message's class queue (BridgeQueues).
    private var queueNames: [[String]]
    private var flushScheduled = false
    /// `queue_commit_window auto`: the hold each append gets.
    private let pacing: CommitPacing?

    init(host: BrokerHost, store: Store, bridges: [BridgeRunner], alarm: StoreAlarm, pacing: CommitPacing?) {
        self.pacing = pacing
        self.host = host
        self.store = store
        self.bridges = bridges
        self.alarm = alarm
        self.messages = Array(repeating: [], count: bridges.count)
        self.owners = Array(repeating: [], count: bridges.count)
        self.queueNames = Array(repeating: [], count: bridges.count)
    }

    /// On the broker loop: queue `message` on every bridge its routing found (`appends`, one per bridge).
    func add(token: UInt64, message: SluiceBroker.Message, appends: [DurableAppend]) {
        let index = tokens.count
        var count = 0
        for append in appends where bridges.indices.contains(append.bridge) {
            let position = append.bridge
            guard let queued = bridges[position].queuedMessage(for: message, append: append) else { continue }
            messages[position].append(queued)
            queueNames[position].append(append.queue.queue)
            owners[position].append(index)
            count += 1
        }
        let host = self.host
        guard count > 0 else {
            host.loop.execute { host.persisted(CollectionOfOne((token: token, outcome: CommitOutcome.committed))) }
            return
        }
        tokens.append(token)
        targets.append(count)
        pacing?.arrived(token: token, message: message)
        if !flushScheduled {
            flushScheduled = true
            host.loop.execute { self.flush() }  // after the rest of this loop turn's reads
        }
    }

    private func flush() {
        flushScheduled = false
        // One append per class queue that got messages this turn, in arrival order within it.
        var appends: [(bridge: BridgeRunner, queue: String, messages: [QueuedMessage], owners: [Int])] = []
        for position in bridges.indices where !messages[position].isEmpty {
            var byQueue: [String: Int] = [:]
            for (offset, queue) in queueNames[position].enumerated() {
                let slot =
                    byQueue[queue]
                    ?? {
                        byQueue[queue] = appends.count
                        appends.append((bridges[position], queue, [], []))
                        return appends.count - 1
                    }()
                appends[slot].messages.append(messages[position][offset])
                appends[slot].owners.append(owners[position][offset])
            }
            messages[position].removeAll(keepingCapacity: true)
            owners[position].removeAll(keepingCapacity: true)
            queueNames[position].removeAll(keepingCapacity: true)
        }
        let batch = DurableBatch(tokens: tokens, appends: appends.count)
        tokens.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        let host = self.host
        let alarm = self.alarm
        let hold = pacing?.hold()
        for (bridge, queue, batchMessages, owners) in appends {
            store.append(queue: queue, messages: batchMessages, limits: bridge.limits, hold: hold) { result in
                var outcomes = [CommitOutcome](repeating: .committed, count: owners.count)
                switch result {
                case .success(let results):
                    for (offset, appended) in results.prefix(owners.count).enumerated() {
                        if case .rejected(let reason) = appended {
                            outcomes[offset] = .refused("bridge \(bridge.name): queue refused the message (\(reason))")
                        }
                    }
                    // Rides the notification's hop below: the bridge sends these from memory.
                    bridge.queues.committed(queue: queue, messages: batchMessages, results: results)
                case .failure(let error):
                    outcomes = Array(repeating: CommitOutcome(error), count: owners.count)
                    alarm.appendFailed(bridge: bridge.name, count: owners.count, error: error)
                    bridge.queues.appendFailed()
                }
                if outcomes.contains(.committed) { bridge.queueHasMore() }
                guard let outcome = batch.finish(owners: owners, outcomes: outcomes) else { return }
                host.loop.execute {
                    self.pacing?.completed(outcome.lazy.map(\.token))
                    host.persisted(outcome)
                }
            }
        }
    }
}

/// One turn's tokens and how each one's appends ended; finished when all the turn's appends have
/// completed. A token is committed only if every bridge queue it went to stored it.
private final class DurableBatch: @unchecked Sendable {
    private let lock = NIOLock()
    private let tokens: [UInt64]
    private var outcomes: [CommitOutcome]
    private var outstanding: Int

    init(tokens: [UInt64], appends: Int) {
        self.tokens = tokens
        self.outcomes = Array(repeating: .committed, count: tokens.count)
        self.outstanding = appends
    }

    /// Records one append's results; returns every token's outcome once the last append is in.
    func finish(owners: [Int], outcomes appended: [CommitOutcome]) -> [(token: UInt64, outcome: CommitOutcome)]? {
        lock.withLock {
            for (owner, outcome) in zip(owners, appended) { outcomes[owner] = outcomes[owner].combined(with: outcome) }
            outstanding -= 1
            guard outstanding == 0 else { return nil }
            return zip(tokens, outcomes).map { (token: $0, outcome: $1) }
        }
    }
}
