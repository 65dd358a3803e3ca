import Logging
import SluiceBridge
import SluiceConfig
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// The start-up banner: what a person checks first in a gateway's log — which version runs with which
/// configuration, where the store is and what backlog it brought back, what listens where.
/// (`sluice run` logs the first line; the listeners log their own `listening on` lines as they bind.)
public enum StartupBanner {
    /// `sluice 0.1.0 starting: config /etc/sluice/gateway.conf, pid 1234`.
    public static func starting(configPath: String?) -> String {
        "sluice \(GatewayService.version) starting: config \(configPath ?? "none (local-only mode)"), pid \(getpid())"
    }

    /// One line per bridge: its addresses and the backlog restored from the store.
    static func restoredBacklog(_ bridges: [BridgeConfig], store: Store, logger: Logger) {
        let now = Store.wallClockMilliseconds()
        for bridge in bridges {
            let addresses = bridge.addresses.map(\.description).joined(separator: ", ")
            let backlog: String
            do {
                let stats = try store.bridgeStats(bridge: bridge.name)
                if stats.depth == 0 {
                    backlog = "queue empty"
                } else {
                    let age = stats.oldestEnqueuedAt.map { now > $0 ? now - $0 : 0 } ?? 0
                    let oldest = Duration.milliseconds(Int64(clamping: age)).logText
                    backlog = "\(stats.depth) queued messages restored (\(bytes(stats.bytes)), oldest \(oldest) old)"
                }
            } catch {
                backlog = "queue unreadable: \(error)"
            }
            logger.info("bridge \(bridge.name) to \(addresses): \(backlog)")
        }
    }

    /// `ready: 2 listeners, 1 bridge, metrics on 127.0.0.1:9100`.
    static func ready(_ config: GatewayConfig) -> String {
        var parts = [count(config.listeners.count, "listener"), count(config.bridges.count, "bridge")]
        if let metrics = config.metricsListener { parts.append("metrics on \(metrics)") }
        if let lorawan = config.lorawanUDPListener { parts.append("LoRaWAN UDP on \(lorawan)") }
        return "sluice \(GatewayService.version) ready: \(parts.joined(separator: ", "))"
    }

    private static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    /// `1.9 MB`, `512 B`.
    static func bytes(_ count: UInt64) -> String {
        count < 1024
            ? "\(count) B"
            : count < 1 << 20 ? "\(count / 1024) KB" : "\(count / 1_048_576).\(count % 1_048_576 * 10 / 1_048_576) MB"
    }
}
