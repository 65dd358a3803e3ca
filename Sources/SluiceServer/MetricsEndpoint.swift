#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import SluiceBroker
import SluiceConfig
import SluiceBridge
import SluiceStore

/// The opt-in `metrics_listener`: Prometheus text at `/metrics` and a health check at `/healthz`.
/// Values are read when scraped (the broker's counters on its loop, queue statistics from the
/// store), so serving metrics costs the publish path nothing.
final class MetricsEndpoint: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let host: BrokerHost
    private let bridges: [BridgeRunner]
    private let store: Store?
    private let lorawan: LoRaWANCounters?
    /// Counters only go up: remember what was reported, add the difference.
    private let reported = NIOLockedValueBox<[String: Int64]>([:])

    init(host: BrokerHost, bridges: [BridgeRunner], store: Store?, lorawan: LoRaWANCounters? = nil) {
        self.host = host
        self.bridges = bridges
        self.store = store
        self.lorawan = lorawan
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
        logger.info("metrics listening", metadata: ["address": "\(address.host)", "port": "\(channel.localAddress?.port ?? address.port)"])
        return channel
    }

    /// Status and body for a request path.
    func respond(to path: String, on loop: any EventLoop) -> EventLoopFuture<(HTTPResponseStatus, String, String)> {
        switch path {
        case "/metrics":
            return refresh(on: loop).map {
                (.ok, "text/plain; version=0.0.4", String(decoding: self.registry.emitToBuffer(), as: UTF8.self))
            }
        case "/healthz":
            return health(on: loop)
        default:
            return loop.makeSucceededFuture((.notFound, "text/plain", "not found: try /metrics or /healthz\n"))
        }
    }

    private func refresh(on loop: any EventLoop) -> EventLoopFuture<Void> {
        let broker = host.loop.submit { [host] in
            (host.stats, host.connectedClients, host.sessionCount, host.retainedCount, host.subscriptionCount)
        }
        let traffic = host.traffic.totals
        let links = EventLoopFuture.whenAllSucceed(bridges.map { $0.snapshot() }, on: loop)
        return broker.hop(to: loop).and(links).map { brokerValues, linkValues in
            let (stats, connected, sessions, retained, subscriptions) = brokerValues
            self.gauge("sluice_clients_connected", "Clients connected now", connected)
            self.gauge("sluice_sessions", "Sessions, connected or not", sessions)
            self.gauge("sluice_retained_messages", "Retained messages", retained)
            self.gauge("sluice_subscriptions", "Subscriptions", subscriptions)
            self.counter("sluice_messages_received_total", "MQTT packets received", stats.messagesReceived)
            self.counter("sluice_messages_sent_total", "MQTT packets sent", stats.messagesSent)
            self.counter("sluice_publish_received_total", "PUBLISH packets received", stats.publishReceived)
            self.counter("sluice_publish_sent_total", "PUBLISH packets sent", stats.publishSent)
            self.counter("sluice_connections_total", "Connections accepted", stats.connectionsTotal)
            self.counter("sluice_bytes_received_total", "Bytes received from clients", traffic.received)
            self.counter("sluice_bytes_sent_total", "Bytes sent to clients", traffic.sent)
            for qos in 0...2 {
                let labels = [("qos", "\(qos)")]
                self.counter(
                    "sluice_publish_received_by_qos_total",
                    "PUBLISH packets received, by QoS",
                    stats.publishReceivedByQoS[qos],
                    labels: labels
                )
                self.counter("sluice_publish_sent_by_qos_total", "PUBLISH packets sent, by QoS", stats.publishSentByQoS[qos], labels: labels)
            }
            for reason in SluiceBroker.DropReason.allCases {
                self.counter(
                    "sluice_dropped_messages_total",
                    "Messages not delivered somewhere, by reason",
                    stats.dropped[reason] ?? 0,
                    labels: [("reason", reason.rawValue)]
                )
            }
            if let lorawan = self.lorawan?.values { self.report(lorawan) }
            self.counter(
                "sluice_publish_not_acknowledged_total",
                "QoS 1/2 publishes answered without success: storage policy refused them (MQTT 5: 0x97) or the store failed (0x80); 3.1.1 publishers were disconnected to resend",
                stats.publishRefused,
                labels: [("reason", "refused")]
            )
            self.counter(
                "sluice_publish_not_acknowledged_total",
                "QoS 1/2 publishes answered without success: storage policy refused them (MQTT 5: 0x97) or the store failed (0x80); 3.1.1 publishers were disconnected to resend",
                stats.publishFailed,
                labels: [("reason", "failed")]
            )
            if let store = self.store {
                self.gauge("sluice_store_writable", "1 while store writes commit; 0 while it is full (queue_overflow applies) or failing", store.writeHealth.isWritable ? 1 : 0)
                // Group commit at work: operations per transaction; each commit costs two fdatasyncs.
                self.counter(
                    "sluice_store_commits_total",
                    "LMDB write transactions committed",
                    store.transactionsCommitted
                )
                self.counter(
                    "sluice_store_operations_total",
                    "Store write operations committed (appends, removals, puts...)",
                    store.operationsCommitted
                )
                // Flash wear: LMDB's default sync mode flushes twice per commit (fdatasync of the data pages,
                // then the meta page through its O_DSYNC descriptor); sluice-bench's flash rows count them.
                self.counter(
                    "sluice_store_syncs_total",
                    "Device flushes the store requested (two per LMDB commit)",
                    store.transactionsCommitted * 2
                )
                if let written = processWriteBytes() {
                    self.counter(
                        "sluice_store_bytes_written_total",
                        "Bytes the kernel wrote to storage for this process (/proc/self/io write_bytes): the store, and a log file if logging goes to one",
                        written
                    )
                }
            }
            let now = Store.wallClockMilliseconds()
            for (bridge, link) in zip(self.bridges, linkValues) {
                let labels = [("bridge", bridge.name)]
                self.gauge("sluice_bridge_connected", "1 while the bridge's link is up", link.connected ? 1 : 0, labels: labels)
                self.counter("sluice_bridge_forwarded_total", "Messages acknowledged by the remote", Int(link.acknowledged), labels: labels)
                self.counter("sluice_bridge_received_total", "Messages received from the remote (in rules)", Int(link.received), labels: labels)
                self.counter("sluice_bridge_reconnects_total", "Connections made to the remote", Int(link.connections), labels: labels)
                self.gauge("sluice_bridge_paused", "1 while 'sluice queue pause' holds the bridge", link.paused ? 1 : 0, labels: labels)
                for (code, count) in link.rejectedByReason {
                    self.counter(
                        "sluice_bridge_rejected_total",
                        "PUBACKs refusing a queued message, by reason code (transient ones are retried)",
                        Int(count),
                        labels: labels + [("reason", DeadLetterCodes.label(code))]
                    )
                }
                for (reason, count) in link.connectFailuresByReason {
                    self.counter(
                        "sluice_bridge_connect_failures_total",
                        "Failed connection attempts to the remote, by cause",
                        Int(count),
                        labels: labels + [("reason", reason)]
                    )
                }
                if let dead = try? self.store?.deadLetterCounts(queue: bridge.name) {
                    self.gauge("sluice_bridge_dead_letters", "Messages in the bridge's dead-letter table", Int(dead.current), labels: labels)
                    for (code, count) in dead.byReason {
                        self.counter(
                            "sluice_bridge_dead_lettered_total",
                            "Messages moved to the dead letters, by reason",
                            Int(count),
                            labels: labels + [("reason", DeadLetterCodes.label(code))]
                        )
                    }
                }
                guard let stats = try? self.store?.stats(queue: bridge.name) else { continue }
                self.gauge("sluice_bridge_queue_depth", "Messages in the durable queue", Int(stats.depth), labels: labels)
                self.gauge("sluice_bridge_queue_bytes", "Bytes in the durable queue", Int(stats.bytes), labels: labels)
                let age = stats.oldestEnqueuedAt.map { now > $0 ? Int((now - $0) / 1000) : 0 } ?? 0
                self.gauge("sluice_bridge_queue_oldest_age_seconds", "Age of the oldest queued message", age, labels: labels)
                self.counter(
                    "sluice_bridge_queue_dropped_total",
                    "Messages dropped or rejected at the queue bound",
                    Int(stats.dropped.total + stats.rejected.total),
                    labels: labels
                )
                // The same counters as `sluice queue stats`, reason by reason.
                for reason in SluiceStore.DropReason.allCases {
                    let byReason = labels + [("reason", "\(reason)")]
                    let dropped = stats.dropped.counts[Int(reason.rawValue)]
                    let rejected = stats.rejected.counts[Int(reason.rawValue)]
                    self.counter("sluice_bridge_queue_dropped_by_reason_total", "Messages removed from the queue without delivery, by reason", Int(dropped), labels: byReason)
                    self.counter("sluice_bridge_queue_rejected_total", "Messages refused at append, by reason", Int(rejected), labels: byReason)
                }
                self.counter(
                    "sluice_store_quarantined_total",
                    "Damaged queue records moved to the quarantine (sluice store quarantine lists them)",
                    Int(stats.quarantined),
                    labels: [("queue", bridge.name)]
                )
            }
        }
    }

    private func report(_ lorawan: LoRaWANCounters.Values) {
        gauge("sluice_lorawan_gateways_online", "LoRaWAN gateways online (PULL_DATA)", lorawan.gatewaysOnline)
        for (type, count) in lorawan.datagrams {
            let labels = [("type", type)]
            counter("sluice_lorawan_datagrams_total", "GWMP datagrams by packet type", Int(count), labels: labels)
        }
        for (reason, count) in lorawan.dropped {
            counter(
                "sluice_lorawan_dropped_total",
                "Malformed or unusable GWMP datagrams, rxpk and downlinks dropped, by reason",
                Int(count),
                labels: [("reason", reason)]
            )
        }
        for (event, count) in lorawan.events {
            let labels = [("event", event)]
            counter("sluice_lorawan_events_total", "Gateway events published, by kind", Int(count), labels: labels)
        }
    }

    /// 200 when the listeners are up (this answers, so they are) and the store takes a write; 503
    /// with the reason while it is full (queue_overflow applies) or failing.
    private func health(on loop: any EventLoop) -> EventLoopFuture<(HTTPResponseStatus, String, String)> {
        let promise = loop.makePromise(of: String?.self)
        if let store {
            store.put(table: "health", key: Array("probe".utf8), value: Array("\(Store.wallClockMilliseconds())".utf8)) {
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
                body += "bridge \(bridge.name): \(link.connected ? "connected" : "disconnected")\(link.paused ? " (paused)" : "")\n"
                if let error = link.lastError {
                    let since = link.failingSince.map { " since \($0.formatted(.iso8601))" } ?? ""
                    body += "bridge \(bridge.name) last error\(since): \(error)\n"
                }
            }
            return (writable ? .ok : .serviceUnavailable, "text/plain", body)
        }
    }

    private func gauge(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        registry.makeGauge(name: name, labels: labels, help: help).set(Double(value))
    }

    private func counter(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let delta = reported.withLockedValue { reported -> Int64 in
            let delta = Int64(value) - reported[key, default: 0]
            reported[key] = Int64(value)
            return max(0, delta)
        }
        registry.makeCounter(name: name, labels: labels, help: help).increment(by: delta)
    }
}

/// One request, one response; anything but GET is refused.
private final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
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
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                let sent = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
                if !keepAlive { sent.whenComplete { _ in loopBound.value.close(promise: nil) } }
            }
        }
    }
}

/// `write_bytes` of /proc/self/io: what this process made the kernel write to storage (not the page cache).
private func processWriteBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return nil }
    let line = text.split(separator: "\n").first { $0.hasPrefix("write_bytes:") }
    return line.flatMap { Int($0.dropFirst("write_bytes:".count).trimmingBlanks()) }
}
