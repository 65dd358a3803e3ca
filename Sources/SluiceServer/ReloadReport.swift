import SluiceConfig
import SluicePOSIX

/// What a SIGHUP does with a reloaded configuration, in words: what took effect at once (password and
/// ACL files, bridge topic rules) and what only a restart applies (new or removed bridges, listeners,
/// the metrics listener, other settings) — which before was silently not started.
struct ReloadReport: Equatable {
    var applied: [String] = ["password file", "ACL file"]
    var needsRestart: [String] = []

    init(running: GatewayConfig, fresh: GatewayConfig) {
        // The running listeners' lists are read again from the same paths (a new path needs a restart).
        if running.listeners.contains(where: { $0.tls?.crlFile != nil }) { applied.append("crlfile") }
        for bridge in fresh.bridges {
            guard let old = running.bridges.first(where: { $0.name == bridge.name }) else {
                needsRestart.append("new bridge \(bridge.name) (not started)")
                continue
            }
            if old.topics != bridge.topics { applied.append("bridge \(bridge.name) topic rules") }
            var others = old
            others.topics = bridge.topics
            if others != bridge { needsRestart.append("bridge \(bridge.name) settings other than its topic rules") }
        }
        for bridge in running.bridges where !fresh.bridges.contains(where: { $0.name == bridge.name }) {
            needsRestart.append("removed bridge \(bridge.name) (still running)")
        }
        for listener in fresh.listeners where !running.listeners.contains(listener) {
            needsRestart.append("listener \(listener.name) (\(listener.protocolKind.rawValue)) (not opened)")
        }
        for listener in running.listeners where !fresh.listeners.contains(listener) {
            needsRestart.append("removed or changed listener \(listener.name) (still open as before)")
        }
        if running.metricsListener != fresh.metricsListener {
            needsRestart.append(
                "metrics_listener \(fresh.metricsListener.map { "\($0)" } ?? "none") (the running one is \(running.metricsListener.map { "\($0)" } ?? "none"))"
            )
        }
        if running.lorawanUDPListener != fresh.lorawanUDPListener {
            needsRestart.append("lorawan_udp_listener \(fresh.lorawanUDPListener.map { "\($0)" } ?? "none")")
        }
        let others = Self.changedSettings(running, fresh)
        if !others.isEmpty { needsRestart.append(others.joined(separator: ", ")) }
    }

    /// Settings outside the ones above that differ, named as gateway.conf spells most of them.
    static func changedSettings(_ running: GatewayConfig, _ fresh: GatewayConfig) -> [String] {
        let reported: Set<String> = [
            "bridges", "listeners", "metricsListener", "lorawanUDPListener", "passwordFile", "aclFile", "notices",
        ]
        let old = Dictionary(
            Mirror(reflecting: running).children.compactMap { child in child.label.map { ($0, "\(child.value)") } }
        ) { a, _ in a }
        return Mirror(reflecting: fresh).children.compactMap { child in
            guard let label = child.label, !reported.contains(label), old[label] != "\(child.value)" else { return nil }
            return snakeCase(label)
        }
    }

    /// `maxConnections` → `max_connections`, `upgradeOutgoingQoS` → `upgrade_outgoing_qos`.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name.replacingText("QoS", with: "Qos") {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }

    /// The SIGHUP log lines: one notice, and a warning when something waits for a restart.
    var lines: (applied: String, needsRestart: String?) {
        (
            "configuration reloaded: applied \(applied.joined(separator: ", "))",
            needsRestart.isEmpty
                ? nil : "configuration reloaded, but these need a restart: \(needsRestart.joined(separator: "; "))"
        )
    }
}
