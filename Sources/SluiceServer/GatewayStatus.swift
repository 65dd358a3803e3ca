import NIOConcurrencyHelpers
import NIOCore
import SluiceConfig
import SluicePOSIX
import SluiceStore

/// Gathers the status snapshot from the running gateway (broker, bridges, store) and samples its
/// counters once a second for the rates and the last hour's graphs. Reading costs the publish path
/// nothing: a hop to the broker loop for the client count, one to each bridge's loop for its link, and
/// read transactions for the queue statistics.
final class GatewayStatus: Sendable {
    static let sampleInterval: TimeAmount = .seconds(1)

    private let host: BrokerHost
    private let bridges: [BridgeRunner]
    private let store: Store?
    private let config: GatewayConfig
    private let loop: any EventLoop
    private let startedAt = WallInstant()
    private let sampler = NIOLockedValueBox(StatusSampler())
    private let sampling = NIOLockedValueBox<RepeatedTask?>(nil)

    init(host: BrokerHost, bridges: [BridgeRunner], store: Store?, config: GatewayConfig, loop: any EventLoop) {
        self.host = host
        self.bridges = bridges
        self.store = store
        self.config = config
        self.loop = loop
    }

    func start() {
        // The async form: cancelling it waits for a sample in progress, so none reads a closed store.
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: Self.sampleInterval) { _ in
            self.read().map { live in self.sampler.withLockedValue { $0.record(live.reading) } }
        }
        sampling.withLockedValue { $0 = task }
    }

    /// Before the store closes; completes once no sample is in progress.
    func stop() -> EventLoopFuture<Void> {
        guard let task = sampling.withLockedValue({ $0 }) else { return loop.makeSucceededVoidFuture() }
        let promise = loop.makePromise(of: Void.self)
        task.cancel(promise: promise)
        return promise.futureResult
    }

    /// Everything read at one moment: the counters for the sampler, and the rest for the snapshot.
    private struct Live {
        var reading: StatusReading
        var links: [BridgeRunner.Snapshot]
        var queues: [QueueStats?]
    }

    private func read() -> EventLoopFuture<Live> {
        let clients = host.loop.submit { [host] in host.connectedClients }.hop(to: loop)
        let links = EventLoopFuture.whenAllSucceed(bridges.map { $0.snapshot() }, on: loop)
        return clients.and(links).map { clients, links in
            let queues = self.bridges.map { try? self.store?.bridgeStats(bridge: $0.name) }
            let readings = zip(links, queues).map { link, stats in
                BridgeReading(
                    acknowledged: link.acknowledged,
                    received: link.received,
                    appended: stats?.nextSeq ?? 0,
                    depth: stats?.depth ?? 0
                )
            }
            let reading = StatusReading(
                at: Double(NIODeadline.now().uptimeNanoseconds) / 1e9,
                wallClock: WallInstant().timeIntervalSince1970,
                clients: clients,
                bridges: readings
            )
            return Live(reading: reading, links: links, queues: queues)
        }
    }

    func snapshot() -> EventLoopFuture<GatewayStatusSnapshot> {
        read().map { live in
            let now = WallInstant()
            // When each link last changed, on the readings' monotonic clock.
            let linkChangedAt = live.links.map { live.reading.at - now.timeIntervalSince($0.stateSince) }
            let (rates, history) = self.sampler.withLockedValue {
                ($0.rates(at: live.reading, linkChangedAt: linkChangedAt), $0.points(now: live.reading))
            }
            let nowMilliseconds = Store.wallClockMilliseconds()
            var statuses: [BridgeStatus] = []
            for (index, bridge) in self.bridges.enumerated() {
                let link = live.links[index]
                let state: BridgeStatus.LinkState = link.connected ? .connected : .disconnected
                var status =
                    live.queues[index].map {
                        BridgeStatus(
                            name: bridge.name,
                            state: state,
                            stats: $0,
                            config: self.config.bridges.first { $0.name == bridge.name },
                            nowMilliseconds: nowMilliseconds
                        )
                    } ?? BridgeStatus(name: bridge.name, state: state)
                status.stateSince = link.stateSince.timeIntervalSince1970
                status.address = link.address?.description
                status.paused = link.paused
                status.sendRate = rates[index].sendRate
                status.receiveRate = rates[index].receiveRate
                status.queueRate = rates[index].queueRate
                status.drainRate = rates[index].drainRate
                status.drainSeconds = StatusArithmetic.timeToDrain(
                    depth: status.depth,
                    drainRate: rates[index].drainRate
                )
                status.deadLetters = (try? self.store?.bridgeDeadLetterCounts(bridge: bridge.name))?.current
                status.lastError = link.lastError
                status.lastErrorSince = link.failingSince?.timeIntervalSince1970
                statuses.append(status)
            }
            return GatewayStatusSnapshot(
                source: .gateway,
                version: GatewayService.version,
                generatedAt: now.timeIntervalSince1970,
                startedAt: self.startedAt.timeIntervalSince1970,
                listeners: self.listenerNames,
                clients: live.reading.clients,
                store: self.store.flatMap { StoreUsage(path: $0.path, config: self.config) },
                bridges: statuses,
                history: history
            )
        }
    }

    private var listenerNames: [String] {
        var names = config.listeners.map { listener in
            "\(listener.protocolKind.rawValue) \(listener.name)\(listener.tls == nil ? "" : " (TLS)")"
        }
        if let metrics = config.metricsListener { names.append("metrics http://\(metrics)/") }
        if let lorawan = config.lorawanUDPListener { names.append("lorawan udp \(lorawan)") }
        return names
    }
}
