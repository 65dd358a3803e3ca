import Glibc
import SluiceBroker

/// Numbers, sizes, durations and times as `sluice status` and the status page write them.
public enum StatusFormat {
    /// `20,000`.
    public static func count(_ value: UInt64) -> String {
        let digits = String(value)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    /// `512 B`, `8.1 KiB`, `1.0 GiB`.
    public static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var scaled = Double(value)
        var unit = 0
        while scaled >= 1024, unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : "\(oneDecimal(scaled)) \(units[unit])"
    }

    /// `45 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`: two units at most.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-" }
        let total = Int(max(0, seconds).rounded())
        if total < 60 { return "\(total) s" }
        if total < 3600 { return "\(total / 60) min" + (total % 60 == 0 ? "" : " \(total % 60) s") }
        if total < 86400 { return "\(total / 3600) h" + (total % 3600 / 60 == 0 ? "" : " \(total % 3600 / 60) min") }
        return "\(total / 86400) d" + (total % 86400 / 3600 == 0 ? "" : " \(total % 86400 / 3600) h")
    }

    /// `1,234/s`, `2.5/s`, `0/s`.
    public static func rate(_ perSecond: Double?) -> String {
        guard let perSecond, perSecond.isFinite else { return "-" }
        return number(perSecond) + "/s"
    }

    /// `1,234`, `2.5`, `0`: one decimal below 100 unless whole; never negative.
    public static func number(_ value: Double) -> String {
        let value = value.isFinite ? max(0, value) : 0
        if value >= 100 || value == value.rounded() { return count(UInt64(min(value, 1e18).rounded())) }
        return oneDecimal(value)
    }

    /// `2.5 %`; `<0.1 %` rather than a zero that is not one.
    public static func percent(_ value: Double) -> String {
        value > 0 && value < 0.1 ? "<0.1 %" : oneDecimal(value) + " %"
    }

    /// `2026-12-05 17:03:09 UTC`: a gateway's operators may sit in other time zones.
    public static func time(_ unixSeconds: Double) -> String {
        var seconds = time_t(unixSeconds.rounded(.down))
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "\(unixSeconds)" }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
            + " \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }

    /// `since 2026-12-05 17:03:09 UTC (2 min 5 s)`.
    public static func since(_ unixSeconds: Double, now: Double) -> String {
        "since \(time(unixSeconds)) (\(duration(now - unixSeconds)))"
    }

    private static func oneDecimal(_ value: Double) -> String {
        DecimalText.fixed(value, digits: 1)
    }
}

extension BridgeStatus {
    /// `link up`, `link DOWN`, `link state unknown (gateway not answering)`; `, PAUSED (...)` after it
    /// while `sluice queue pause` holds sending.
    public var stateText: String {
        let link =
            switch state {
            case .connected: "link up"
            case .disconnected: "link DOWN"
            case .unknown: "link state unknown (gateway not answering)"
            }
        return paused ? link + ", PAUSED (sluice queue resume)" : link
    }

    /// `20,000 messages · 8.1 MiB · oldest 1 min 40 s`.
    public var queueText: String {
        "\(StatusFormat.count(depth)) messages · \(StatusFormat.bytes(bytes))"
            + (oldestAgeSeconds.map { " · oldest \(StatusFormat.duration($0))" } ?? "")
    }

    /// `queue_max_messages 2.0 % · queue_max_age 2.8 %`, or `none set`.
    public var boundsText: String {
        bounds.isEmpty
            ? "none set" : bounds.map { "\($0.key) \(StatusFormat.percent($0.percent))" }.joined(separator: " · ")
    }

    /// `sent 1,000/s · received 0/s · queued 12/s`.
    public var ratesText: String {
        "sent \(StatusFormat.rate(sendRate)) · received \(StatusFormat.rate(receiveRate)) · queued \(StatusFormat.rate(queueRate))"
    }

    /// `1,000/s · empty in 20 s`, `queue empty`, `not draining (growing 333/s)`.
    public var drainText: String {
        if depth == 0 { return "queue empty" }
        guard let drainRate else { return "not measured yet" }
        guard let drainSeconds, drainRate > 0 else {
            return drainRate < 0 ? "not draining (growing \(StatusFormat.rate(-drainRate)))" : "not draining"
        }
        return "\(StatusFormat.rate(drainRate)) · empty in \(StatusFormat.duration(drainSeconds))"
    }
}

extension GatewayStatusSnapshot {
    /// The first lines of `sluice status` and the page: version, uptime, clients (or why they are missing).
    public var summaryText: String {
        switch source {
        case .gateway:
            var parts = ["sluice \(version ?? "?")"]
            if let uptimeSeconds { parts.append("up \(StatusFormat.duration(uptimeSeconds))") }
            if let clients { parts.append("\(clients) client\(clients == 1 ? "" : "s") connected") }
            return parts.joined(separator: " · ")
        case .store:
            return "gateway not answering" + (gatewayUnreachable.map { " (\($0))" } ?? "")
                + ": showing the store, read-only; link state, rates and clients unknown"
        }
    }

    public var storeText: String? {
        store.map {
            "\($0.path): \(StatusFormat.bytes($0.fileBytes)) of \(StatusFormat.bytes($0.maxBytes)) (\(StatusFormat.percent($0.percent)))"
        }
    }

    /// What `sluice status` prints: one screen.
    public var text: String {
        var lines = [summaryText]
        if !listeners.isEmpty { lines.append("listeners: " + listeners.joined(separator: ", ")) }
        if let storeText { lines.append("store: " + storeText) }
        if bridges.isEmpty { lines.append("no bridges") }
        for bridge in bridges {
            lines.append("")
            var head = "bridge \(bridge.name): \(bridge.stateText)"
            if let since = bridge.stateSince { head += " " + StatusFormat.since(since, now: generatedAt) }
            if let address = bridge.address { head += " · \(address)" }
            lines.append(head)
            lines.append("  queue    " + bridge.queueText)
            lines.append("  bounds   " + bridge.boundsText)
            if source == .gateway {
                lines.append("  rates    " + bridge.ratesText + " (last minute)")
                lines.append("  drain    " + bridge.drainText)
            }
            lines.append(
                "  losses   \(bridge.deadLetters.map(StatusFormat.count) ?? "-") dead letters · \(StatusFormat.count(bridge.dropped)) dropped or refused at the bounds"
            )
            if let error = bridge.lastError {
                lines.append(
                    "  error    \(error)"
                        + (bridge.lastErrorSince.map { " (\(StatusFormat.since($0, now: generatedAt)))" } ?? "")
                )
            }
        }
        return lines.joined(separator: "\n")
    }
}
