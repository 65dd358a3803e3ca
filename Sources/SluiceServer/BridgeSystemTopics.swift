import NIOCore
import SluiceBridge
import SluiceBroker
import SluiceStore

/// `$SYS/broker/sluice/bridges/<name>/...`: each bridge's link and queue, published (retained) with the
/// other `$SYS` topics every `sys_interval`. A central that bridges `$SYS/#` home from every gateway
/// (the usual Mosquitto trick) then sees how far behind each site is.
///
///     state                 connected | disconnected | paused
///     queue/depth           messages in the durable queue
///     queue/bytes           bytes in the durable queue
///     queue/oldest_age      seconds the oldest queued message has waited (0 when empty)
///     messages/sent         queued messages the remote acknowledged, since start
///     messages/received     messages received from the remote on `in` rules, since start
///     rate/sent             messages per second acknowledged over the last interval ("%.2f")
///     rate/received         messages per second received over the last interval ("%.2f")
///     dead_letters          messages in the dead-letter table
struct BridgeSystemTopics {
    /// One bridge's figures at one moment.
    struct Figures: Sendable {
        var name: String
        var connected: Bool
        var paused: Bool
        var acknowledged: UInt64
        var received: UInt64
        var depth: UInt64?
        var bytes: UInt64?
        var oldestAgeSeconds: UInt64?
        var deadLetters: UInt64?
    }

    /// The counters at the previous call, by bridge, for the rates.
    private var previous: [String: (seconds: Double, acknowledged: UInt64, received: UInt64)] = [:]

    /// Topics below `$SYS/broker/` and their payloads, bridge by bridge in a fixed order. `seconds` is a
    /// monotonic clock; rates are 0 at the first call.
    mutating func topics(_ bridges: [Figures], seconds: Double) -> [(topic: String, value: String)] {
        var out: [(String, String)] = []
        for bridge in bridges {
            let base = "sluice/bridges/\(Self.topicLevel(bridge.name))/"
            var sentRate = 0.0
            var receivedRate = 0.0
            if let last = previous[bridge.name] {
                let rate = { (earlier: UInt64, later: UInt64) in
                    CounterRate.perSecond(from: earlier, to: later, seconds: seconds - last.seconds) ?? 0
                }
                sentRate = rate(last.acknowledged, bridge.acknowledged)
                receivedRate = rate(last.received, bridge.received)
            }
            if previous[bridge.name].map({ seconds > $0.seconds }) ?? true {
                previous[bridge.name] = (seconds, bridge.acknowledged, bridge.received)
            }
            out.append((base + "state", bridge.paused ? "paused" : bridge.connected ? "connected" : "disconnected"))
            if let depth = bridge.depth { out.append((base + "queue/depth", "\(depth)")) }
            if let bytes = bridge.bytes { out.append((base + "queue/bytes", "\(bytes)")) }
            if let age = bridge.oldestAgeSeconds { out.append((base + "queue/oldest_age", "\(age)")) }
            out.append((base + "messages/sent", "\(bridge.acknowledged)"))
            out.append((base + "messages/received", "\(bridge.received)"))
            out.append((base + "rate/sent", DecimalText.fixed(sentRate, digits: 2)))
            out.append((base + "rate/received", DecimalText.fixed(receivedRate, digits: 2)))
            if let dead = bridge.deadLetters { out.append((base + "dead_letters", "\(dead)")) }
        }
        return out
    }

    /// A bridge name as one topic level: `/`, `+`, `#` and NUL would change the topic's shape.
    static func topicLevel(_ name: String) -> String {
        let level = String(name.map { "/+#\u{0}".contains($0) ? "_" : $0 })
        return level.isEmpty ? "_" : level
    }
}

extension BridgeRunner {
    /// The link's figures with the queue's from the store (nil where the store cannot be read).
    func systemFigures(store: Store?) -> EventLoopFuture<BridgeSystemTopics.Figures> {
        snapshot().map { link in
            let stats = try? store?.bridgeStats(bridge: self.name)
            let now = Store.wallClockMilliseconds()
            return BridgeSystemTopics.Figures(
                name: self.name,
                connected: link.connected,
                paused: link.paused,
                acknowledged: link.acknowledged,
                received: link.received,
                depth: stats?.depth,
                bytes: stats?.bytes,
                oldestAgeSeconds: stats.map { stats in
                    stats.oldestEnqueuedAt.map { now > $0 ? (now - $0) / 1000 : 0 } ?? 0
                },
                deadLetters: (try? store?.bridgeDeadLetterCounts(bridge: self.name))?.current
            )
        }
    }
}
