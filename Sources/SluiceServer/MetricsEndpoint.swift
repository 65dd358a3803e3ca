import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceBridge
import SluiceBroker
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// The opt-in `metrics_listener`: Prometheus text at `/metrics` and a health check at `/healthz`.
/// Values are read when scraped (the broker's counters on its loop, queue statistics from the
/// store), so serving metrics costs the publish path nothing.
final class MetricsEndpoint: Sendable {
    private let host: BrokerHost
    private let bridges: [BridgeRunner]
    private let store: Store?
    private let lorawan: LoRaWANCounters?
    /// The status page at `/` and `/status.json`.
    private let status: GatewayStatus?

    init(
        host: BrokerHost,
        bridges: [BridgeRunner],
        store: Store?,
        lorawan: LoRaWANCounters? = nil,
        status: GatewayStatus? = nil
    ) {
        self.host = host
        self.bridges = bridges
        self.store = store
        self.lorawan = lorawan
        self.status = status
    }

    func bind(_ address: HostPort, group: any EventLoopGroup, logger: Logger) async throws -> any Channel {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(endpoint: self))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
        let bound = HostPort(host: address.host, port: channel.localAddress?.port ?? address.port)
        logger.info("metrics listening on \(bound) (HTTP: / status page, /metrics, /healthz)")
        return channel
    }

    /// Status and body for a request path.
    func respond(to path: String, on loop: any EventLoop) -> EventLoopFuture<(HTTPResponseStatus, String, String)> {
        if let status, path == "/" || path == "/status.json" {
            return status.snapshot().hop(to: loop).map { snapshot in
                guard path == "/status.json" else {
                    return (.ok, "text/html; charset=utf-8", StatusPage.html(snapshot))
                }
                do {
                    return (.ok, "application/json", String(decoding: try snapshot.jsonData(), as: UTF8.self))
                } catch {
                    return (.internalServerError, "text/plain", "status could not be encoded: \(error)\n")
                }
            }
        }
        switch path {
        case "/metrics":
            return page(on: loop).map { (.ok, "text/plain; version=0.0.4; charset=utf-8", $0.render()) }
        case "/healthz":
            return health(on: loop)
        default:
            return loop.makeSucceededFuture(
                (.notFound, "text/plain", "not found: try /, /status.json, /metrics or /healthz\n")
            )
        }
    }

    /// Reads every figure now and lays them out as one page (see `MetricsPage` for why not a registry).
    func page(on loop: any EventLoop) -> EventLoopFuture<MetricsPage> {
        let broker = host.loop.submit { [host] in
            (
                host.stats, host.connectedClients, host.sessionCount, host.retainedCount, host.subscriptionCount,
                host.authenticationFailures
            )
        }
        let traffic = host.traffic.totals
        let links = EventLoopFuture.whenAllSucceed(bridges.map { $0.snapshot() }, on: loop)
        return broker.hop(to: loop).and(links).map { brokerValues, linkValues in
            let (stats, connected, sessions, retained, subscriptions, authenticationFailures) = brokerValues
            var page = MetricsPage()
            page.gauge(
                "sluice_build_info",
                "Always 1; the version label says which build runs",
                1,
                labels: [("version", GatewayService.version)]
            )
            ProcessMetrics.current()?.report(into: &page)
            page.gauge("sluice_clients_connected", "Clients connected now", connected)
            page.gauge("sluice_sessions", "Sessions, connected or not", sessions)
            page.gauge("sluice_retained_messages", "Retained messages", retained)
            page.gauge("sluice_subscriptions", "Subscriptions", subscriptions)
            page.counter(
                "sluice_packets_received_total",
                "MQTT control packets received from clients, every type (CONNECT, PUBLISH, PUBACK, PINGREQ...)",
                stats.messagesReceived
            )
            page.counter(
                "sluice_packets_sent_total",
                "MQTT control packets sent to clients, every type",
                stats.messagesSent
            )
            page.counter("sluice_connections_total", "Client connections accepted", stats.connectionsTotal)
            page.counter("sluice_received_bytes_total", "Bytes received from clients (whole packets)", traffic.received)
            page.counter("sluice_sent_bytes_total", "Bytes sent to clients (whole packets)", traffic.sent)
            for qos in 0...2 {
                let labels = [("qos", "\(qos)")]
                page.counter(
                    "sluice_publish_received_total",
                    "PUBLISH packets received from clients (one per message sent to the broker, resends included), by QoS",
                    stats.publishReceivedByQoS[qos],
                    labels: labels
                )
                page.counter(
                    "sluice_publish_sent_total",
                    "PUBLISH packets sent to clients (one per message delivered, resends included), by QoS",
                    stats.publishSentByQoS[qos],
                    labels: labels
                )
            }
            page.counter(
                "sluice_publish_acks_held_total",
                "QoS 1/2 messages whose PUBACK/PUBREC waited for a subscriber they went to to drain its backlog (flow control)",
                stats.acknowledgementsHeld
            )
            for reason in ["bad_username_or_password", "not_authorized"] {
                page.counter(
                    "sluice_auth_failures_total",
                    "CONNECTs refused by authentication: wrong password or unknown user, or anonymous where not allowed",
                    authenticationFailures[reason, default: 0],
                    labels: [("reason", reason)]
                )
            }
            for reason in SluiceBroker.DropReason.allCases {
                page.counter(
                    "sluice_dropped_messages_total",
                    "Messages not delivered to some subscriber or queue, by reason",
                    stats.dropped[reason] ?? 0,
                    labels: [("reason", reason.rawValue)]
                )
            }
            if let lorawan = self.lorawan?.values { Self.report(lorawan, into: &page) }
            let notAcknowledged =
                "QoS 1/2 publishes answered without success: storage policy refused them (MQTT 5: 0x97) or the store failed (0x80); 3.1.1 publishers were disconnected to resend"
            page.counter(
                "sluice_publish_not_acknowledged_total",
                notAcknowledged,
                stats.publishRefused,
                labels: [("reason", "refused")]
            )
            page.counter(
                "sluice_publish_not_acknowledged_total",
                notAcknowledged,
                stats.publishFailed,
                labels: [("reason", "failed")]
            )
            if let store = self.store {
                Self.report(store, into: &page)
            }
            let now = Store.wallClockMilliseconds()
            for (bridge, link) in zip(self.bridges, linkValues) {
                let labels = [("bridge", bridge.name)]
                page.gauge(
                    "sluice_bridge_connected",
                    "1 while the bridge's link is up",
                    link.connected ? 1 : 0,
                    labels: labels
                )
                page.counter(
                    "sluice_bridge_forwarded_total",
                    "Queued messages the remote acknowledged (success PUBACK; QoS 0 once written)",
                    link.acknowledged,
                    labels: labels
                )
                page.counter(
                    "sluice_bridge_received_total",
                    "PUBLISH packets received from the remote on in rules",
                    link.received,
                    labels: labels
                )
                page.counter(
                    "sluice_bridge_connections_total",
                    "Successful connections to the remote (CONNACK accepted), the first included",
                    link.connections,
                    labels: labels
                )
                page.counter(
                    "sluice_bridge_reconnects_total",
                    "Successful connections to the remote after the first one",
                    link.connections > 0 ? link.connections - 1 : 0,
                    labels: labels
                )
                page.gauge(
                    "sluice_bridge_last_connect_timestamp_seconds",
                    "When the link last connected, seconds since the Unix epoch; 0 if it never did since start",
                    Int(link.lastConnectedAt?.timeIntervalSince1970 ?? 0),
                    labels: labels
                )
                page.gauge(
                    "sluice_bridge_last_error_timestamp_seconds",
                    "When the link last failed (connect or connection), seconds since the Unix epoch; 0 if it never did since start",
                    Int(link.lastErrorAt?.timeIntervalSince1970 ?? 0),
                    labels: labels
                )
                page.gauge(
                    "sluice_bridge_paused",
                    "1 while 'sluice queue pause' holds the bridge",
                    link.paused ? 1 : 0,
                    labels: labels
                )
                page.gauge(
                    "sluice_bridge_memory_records",
                    "Committed queue records held in memory to send without a store read (bounded; the store keeps them all)",
                    link.cacheRecords,
                    labels: labels
                )
                page.gauge(
                    "sluice_bridge_memory_bytes",
                    "Bytes of the committed queue records held in memory (at most 1 MiB per bridge)",
                    link.cacheBytes,
                    labels: labels
                )
                page.counter(
                    "sluice_bridge_sent_from_memory_total",
                    "Queued messages handed to the link from memory right after their commit, without a store read",
                    link.cacheServed,
                    labels: labels
                )
                let rejectedHelp = "PUBACKs refusing a queued message, by reason code (transient ones are retried)"
                page.declare("sluice_bridge_rejected_total", .counter, rejectedHelp)
                for (code, count) in link.rejectedByReason {
                    page.counter(
                        "sluice_bridge_rejected_total",
                        rejectedHelp,
                        count,
                        labels: labels + [("reason", DeadLetterCodes.label(code))]
                    )
                }
                let localDeniedHelp =
                    "Messages dropped because acl_file does not let the bridge's local_username write (in) or read (out) their topic"
                page.declare("sluice_bridge_local_acl_denied_total", .counter, localDeniedHelp)
                for (direction, count) in link.localDenied.sorted(by: { $0.key < $1.key }) {
                    page.counter(
                        "sluice_bridge_local_acl_denied_total",
                        localDeniedHelp,
                        count,
                        labels: labels + [("direction", direction)]
                    )
                }
                let connectFailuresHelp = "Failed connection attempts to the remote, by cause"
                page.declare("sluice_bridge_connect_failures_total", .counter, connectFailuresHelp)
                for (reason, count) in link.connectFailuresByReason {
                    page.counter(
                        "sluice_bridge_connect_failures_total",
                        connectFailuresHelp,
                        count,
                        labels: labels + [("reason", reason)]
                    )
                }
                let bridgeLimits = bridge.limits
                if bridgeLimits.maxMessages != .max {
                    page.gauge(
                        "sluice_bridge_queue_max_messages",
                        "queue_max_messages: the bound on queued messages (absent when unbounded)",
                        bridgeLimits.maxMessages,
                        labels: labels
                    )
                }
                if bridgeLimits.maxBytes != .max {
                    page.gauge(
                        "sluice_bridge_queue_max_bytes",
                        "queue_max_bytes: the bound on queued bytes (absent when unbounded)",
                        bridgeLimits.maxBytes,
                        labels: labels
                    )
                }
                if let maxAge = bridgeLimits.maxAge {
                    page.gauge(
                        "sluice_bridge_queue_max_age_seconds",
                        "queue_max_age: older messages are dropped (absent when unbounded)",
                        maxAge / 1000,
                        labels: labels
                    )
                }
                if let dead = try? self.store?.bridgeDeadLetterCounts(bridge: bridge.name) {
                    page.gauge(
                        "sluice_bridge_dead_letters",
                        "Messages in the bridge's dead-letter table",
                        dead.current,
                        labels: labels
                    )
                    let deadLetteredHelp = "Messages moved to the dead letters, by reason"
                    page.declare("sluice_bridge_dead_lettered_total", .counter, deadLetteredHelp)
                    for (code, count) in dead.byReason {
                        page.counter(
                            "sluice_bridge_dead_lettered_total",
                            deadLetteredHelp,
                            count,
                            labels: labels + [("reason", DeadLetterCodes.label(code))]
                        )
                    }
                }
                // The bridge as a whole (all its priority classes), then each class's depth.
                guard let stats = try? self.store?.bridgeStats(bridge: bridge.name) else { continue }
                for (priority, classStats) in (try? self.store?.classStats(bridge: bridge.name)) ?? [] {
                    page.gauge(
                        "sluice_bridge_queue_class_depth",
                        "Messages in the durable queue of one priority class (0 drains first)",
                        classStats.depth,
                        labels: labels + [("priority", "\(priority)")]
                    )
                }
                page.gauge("sluice_bridge_queue_depth", "Messages in the durable queue", stats.depth, labels: labels)
                page.gauge(
                    "sluice_bridge_queue_bytes",
                    "Bytes in the durable queue (encoded records)",
                    stats.bytes,
                    labels: labels
                )
                let age = stats.oldestEnqueuedAt.map { now > $0 ? Int((now - $0) / 1000) : 0 } ?? 0
                page.gauge(
                    "sluice_bridge_queue_oldest_age_seconds",
                    "Age of the oldest queued message; 0 when the queue is empty",
                    age,
                    labels: labels
                )
                // The same counters as `sluice queue stats`, reason by reason.
                for reason in SluiceStore.DropReason.allCases {
                    let byReason = labels + [("reason", "\(reason)")]
                    let dropped = stats.dropped.counts[Int(reason.rawValue)]
                    let rejected = stats.rejected.counts[Int(reason.rawValue)]
                    page.counter(
                        "sluice_bridge_queue_dropped_total",
                        "Messages removed from the queue without delivery, by reason",
                        dropped,
                        labels: byReason
                    )
                    page.counter(
                        "sluice_bridge_queue_rejected_total",
                        "Messages refused at append, by reason",
                        rejected,
                        labels: byReason
                    )
                }
                page.counter(
                    "sluice_store_quarantined_total",
                    "Damaged queue records moved to the quarantine (sluice store quarantine lists them)",
                    stats.quarantined,
                    labels: labels
                )
            }
            // Renamed in this release (README, "Monitoring"): the old names stay one release.
            page.alias("sluice_messages_received_total", of: "sluice_packets_received_total")
            page.alias("sluice_messages_sent_total", of: "sluice_packets_sent_total")
            page.alias("sluice_bytes_received_total", of: "sluice_received_bytes_total")
            page.alias("sluice_bytes_sent_total", of: "sluice_sent_bytes_total")
            page.alias("sluice_publish_received_by_qos_total", of: "sluice_publish_received_total")
            page.alias("sluice_publish_sent_by_qos_total", of: "sluice_publish_sent_total")
            page.alias("sluice_bridge_queue_dropped_by_reason_total", of: "sluice_bridge_queue_dropped_total")
            return page
        }
    }

    private static func report(_ store: Store, into page: inout MetricsPage) {
        page.gauge(
            "sluice_store_writable",
            "1 while store writes commit; 0 while it is full (queue_overflow applies) or failing",
            store.writeHealth.isWritable ? 1 : 0
        )
        if let usage = try? store.usage() {
            page.gauge(
                "sluice_store_used_bytes",
                "Bytes of the store's pages in use (LMDB's free pages excluded)",
                usage.usedBytes
            )
            page.gauge(
                "sluice_store_map_bytes",
                "The store's current map size (grows by doubling up to store_max_size)",
                usage.mapBytes
            )
            page.gauge("sluice_store_max_bytes", "store_max_size: the most the store may grow to", usage.maxBytes)
            if let filesystem = usage.filesystem {
                page.gauge(
                    "sluice_store_filesystem_avail_bytes",
                    "Bytes still free for the gateway on the store's filesystem",
                    filesystem.available
                )
                page.gauge("sluice_store_filesystem_size_bytes", "Size of the store's filesystem", filesystem.total)
            }
        }
        // Group commit at work: operations per transaction; each commit costs two fdatasyncs.
        page.counter("sluice_store_commits_total", "LMDB write transactions committed", store.transactionsCommitted)
        page.counter(
            "sluice_store_operations_total",
            "Store write operations committed (appends, removals, puts...)",
            store.operationsCommitted
        )
        // Flash wear: LMDB's default sync mode flushes twice per commit (fdatasync of the data pages,
        // then the meta page through its O_DSYNC descriptor); sluice-bench's flash rows count them.
        page.counter(
            "sluice_store_syncs_total",
            "Device flushes the store requested (two per LMDB commit)",
            store.transactionsCommitted * 2
        )
        if let written = processWriteBytes() {
            page.counter(
                "sluice_store_bytes_written_total",
                "Bytes the kernel wrote to storage for this process (/proc/self/io write_bytes): the store, and a log file if logging goes to one",
                written
            )
        }
    }

    private static func report(_ lorawan: LoRaWANCounters.Values, into page: inout MetricsPage) {
        page.gauge("sluice_lorawan_gateways_online", "LoRaWAN gateways online (PULL_DATA)", lorawan.gatewaysOnline)
        for (type, count) in lorawan.datagrams {
            page.counter(
                "sluice_lorawan_datagrams_total",
                "GWMP datagrams by packet type",
                count,
                labels: [("type", type)]
            )
        }
        for (reason, count) in lorawan.dropped {
            page.counter(
                "sluice_lorawan_dropped_total",
                "Malformed or unusable GWMP datagrams, rxpk and downlinks dropped, by reason",
                count,
                labels: [("reason", reason)]
            )
        }
        for (event, count) in lorawan.events {
            page.counter(
                "sluice_lorawan_events_total",
                "Gateway events published, by kind",
                count,
                labels: [("event", event)]
            )
        }
    }

    /// 200 when the listeners are up (this answers, so they are) and the store takes a write; 503
    /// with the reason while it is full (queue_overflow applies) or failing.
    private func health(on loop: any EventLoop) -> EventLoopFuture<(HTTPResponseStatus, String, String)> {
        let promise = loop.makePromise(of: String?.self)
        if let store {
            store.put(table: "health", key: Array("probe".utf8), value: Array("\(Store.wallClockMilliseconds())".utf8))
            {
                switch $0 {
                case .success:
                    let health = store.writeHealth
                    promise.succeed(health.isWritable ? nil : "\(health)")
                case .failure(let error):
                    let health = store.writeHealth
                    promise.succeed(health.isWritable ? "\(error)" : "\(health)")
                }
            }
        } else {
            promise.succeed(nil)
        }
        let links = EventLoopFuture.whenAllSucceed(bridges.map { $0.snapshot() }, on: loop)
        return promise.futureResult.and(links).map { problem, links in
            let writable = problem == nil
            let state = self.store == nil ? "not used" : problem.map { "NOT WRITABLE (\($0))" } ?? "writable"
            var body = "listeners: up\nstore: \(state)\n"
            for (bridge, link) in zip(self.bridges, links) {
                body +=
                    "bridge \(bridge.name): \(link.connected ? "connected" : "disconnected")\(link.paused ? " (paused)" : "")\n"
                if let error = link.lastError {
                    let since = link.failingSince.map { " since \($0.iso8601)" } ?? ""
                    body += "bridge \(bridge.name) last error\(since): \(error)\n"
                }
            }
            return (writable ? .ok : .serviceUnavailable, "text/plain", body)
        }
    }
}

/// One request, one response; anything but GET is refused.
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: MetricsEndpoint
    private var path: String?
    /// HTTP/1.0 without keep-alive, or `Connection: close`: close after the response.
    private var keepAlive = true

    init(endpoint: MetricsEndpoint) { self.endpoint = endpoint }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.method == .GET ? String(head.uri.split(separator: "?").first ?? "") : nil
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let response: EventLoopFuture<(HTTPResponseStatus, String, String)> =
                path.map { endpoint.respond(to: $0, on: context.eventLoop) }
                ?? context.eventLoop.makeSucceededFuture((.methodNotAllowed, "text/plain", "GET only\n"))
            let keepAlive = self.keepAlive
            response.whenSuccess { status, contentType, body in
                let context = loopBound.value
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: contentType)
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                if !keepAlive { headers.add(name: "Connection", value: "close") }
                context.write(
                    Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                    promise: nil
                )
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                let sent = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
                if !keepAlive { sent.whenComplete { _ in loopBound.value.close(promise: nil) } }
            }
        }
    }
}

@available(*, unavailable)
extension MetricsHTTPHandler: Sendable {}

/// `write_bytes` of /proc/self/io: what this process made the kernel write to storage (not the page cache).
private func processWriteBytes() -> Int? {
    guard let text = try? FileSystem.readText("/proc/self/io") else { return nil }
    let line = text.split(separator: "\n").first { $0.hasPrefix("write_bytes:") }
    return line.flatMap { Int($0.dropFirst("write_bytes:".count).trimmingBlanks()) }
}
