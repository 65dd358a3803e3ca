#if canImport(Glibc)
    import Glibc
#endif

// Note on `$SYS/broker/load/...`: Mosquitto publishes, for each of its counters, three exponentially
// weighted moving averages of the rate per minute (1, 5 and 15 minutes), updated every `sys_interval`:
// `average = e·average + (1 − e)·rate`, with `e = exp(−Δt / window)` and `rate` the counter's growth over Δt
// scaled to a minute (mosquitto src/sys_tree.c, calc_load). The same formula here, so dashboards built on
// Mosquitto's figures read Sluice's the same way.

/// The counters `$SYS/broker/load/<name>/{1min,5min,15min}` average, by their topic names.
public struct SystemLoad: Sendable {
    public static let names = [
        "messages/received", "messages/sent", "publish/received", "publish/sent", "publish/dropped",
        "bytes/received", "bytes/sent", "sockets", "connections",
    ]
    static let windows: [(suffix: String, seconds: Double)] = [("1min", 60), ("5min", 300), ("15min", 900)]

    private var last: (time: Double, counters: [String: Int])?
    private var averages: [String: [Double]] = [:]

    public init() {}

    /// Folds in the counters as they stand at `seconds` (a monotonic clock); returns every load topic's value,
    /// formatted as Mosquitto does ("%.2f"), in a fixed order.
    public mutating func update(seconds: Double, counters: [String: Int]) -> [(topic: String, value: String)] {
        if let last, seconds > last.time {
            let elapsed = seconds - last.time
            for name in Self.names {
                let rate = Double(max(0, (counters[name] ?? 0) - (last.counters[name] ?? 0))) * 60 / elapsed
                var values = averages[name] ?? [0, 0, 0]
                for (index, window) in Self.windows.enumerated() {
                    let e = exp(-elapsed / window.seconds)
                    values[index] = e * values[index] + (1 - e) * rate
                }
                averages[name] = values
            }
        }
        if last == nil || seconds > last!.time { last = (seconds, counters) }
        var out: [(String, String)] = []
        for name in Self.names {
            let values = averages[name] ?? [0, 0, 0]
            for (index, window) in Self.windows.enumerated() {
                out.append(("load/\(name)/\(window.suffix)", DecimalText.fixed(values[index], digits: 2)))
            }
        }
        return out
    }
}

/// Fixed-point decimal text as C's `printf("%.Nf")` writes it (what `String(format:)` gave, without
/// linking Foundation's internationalization and ICU).
public enum DecimalText {
    public static func fixed(_ value: Double, digits: Int) -> String {
        withVaList([value]) { arguments in
            var buffer = [CChar](repeating: 0, count: 400)
            let written = vsnprintf(&buffer, buffer.count, "%.\(digits)f", arguments)
            guard written >= 0 else { return "\(value)" }
            return String(
                decoding: buffer.prefix(min(Int(written), buffer.count - 1)).map { UInt8(bitPattern: $0) },
                as: UTF8.self
            )
        }
    }
}
