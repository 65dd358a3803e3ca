import SluiceBroker

/// The status page at `/` on the metrics listener: the snapshot as HTML with inline SVG graphs of the
/// last hour. No script, no external asset, a meta refresh: it renders with JavaScript off, in a few KB.
public enum StatusPage {
    public static let refreshSeconds = 10

    public static func html(_ snapshot: GatewayStatusSnapshot) -> String {
        var body = "<h1>\(escape(snapshot.summaryText))</h1>\n"
        if !snapshot.listeners.isEmpty {
            body += "<p>listeners: \(escape(snapshot.listeners.joined(separator: ", ")))</p>\n"
        }
        if let store = snapshot.storeText { body += "<p>store: \(escape(store))</p>\n" }
        let history = snapshot.history
        if let first = history.first, let last = history.last, last.at > first.at {
            body +=
                "<p>graphs: the last \(escape(StatusFormat.duration(last.at - first.at))), newest on the right</p>\n"
        }
        for (index, bridge) in snapshot.bridges.enumerated() {
            body += bridgeSection(bridge, index: index, history: history, now: snapshot.generatedAt)
        }
        if snapshot.bridges.isEmpty { body += "<p>no bridges</p>\n" }
        body += "<section><h2>clients</h2>\n"
        body += graph(
            id: "clients-graph",
            title: "clients connected",
            values: history.map { Double($0.clients) },
            unit: ""
        )
        body += "</section>\n"
        body += "<footer>\(escape(StatusFormat.time(snapshot.generatedAt))) · refreshes every \(refreshSeconds) s · "
        body +=
            "<a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a> · <a href=\"/healthz\">healthz</a></footer>\n"
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="refresh" content="\(refreshSeconds)">
            <meta name="viewport" content="width=device-width">
            <title>sluice status</title>
            <style>
            body{font:14px/1.4 sans-serif;margin:1em;color:#222}h1{font-size:1.3em}h2{font-size:1.1em;margin:.2em 0}
            section{border:1px solid #ccc;border-radius:4px;padding:.5em;margin:.8em 0}
            th{text-align:left;padding-right:1em;font-weight:normal;color:#666}
            .up{color:#080}.down{color:#c00;font-weight:bold}.unknown{color:#a60}
            figure{display:inline-block;margin:.3em 1em .3em 0}figcaption{color:#666;font-size:.9em}
            svg{background:#f7f7f7;border:1px solid #ddd}footer{color:#666;font-size:.9em}
            </style></head><body>
            \(body)</body></html>

            """
    }

    private static func bridgeSection(_ bridge: BridgeStatus, index: Int, history: [HistoryPoint], now: Double)
        -> String
    {
        let stateClass =
            switch bridge.state {
            case .connected: "up"
            case .disconnected: "down"
            case .unknown: "unknown"
            }
        var head = "<span class=\"\(stateClass)\">\(escape(bridge.stateText))</span>"
        if let since = bridge.stateSince { head += " " + escape(StatusFormat.since(since, now: now)) }
        var rows: [(String, String)] = []
        if let address = bridge.address { rows.append(("address", address)) }
        rows.append(("queue", bridge.queueText))
        rows.append(("bounds", bridge.boundsText))
        rows.append(("rates, last minute", bridge.ratesText))
        rows.append(("drain", bridge.drainText))
        rows.append(("dead letters", bridge.deadLetters.map(StatusFormat.count) ?? "-"))
        rows.append(("dropped or refused", StatusFormat.count(bridge.dropped)))
        if let error = bridge.lastError {
            rows.append(
                ("last error", error + (bridge.lastErrorSince.map { " (\(StatusFormat.since($0, now: now)))" } ?? ""))
            )
        }
        let id = "bridge-\(index)"
        var html = "<section id=\"\(id)\" data-bridge=\"\(escape(bridge.name))\" data-depth=\"\(bridge.depth)\">\n"
        html += "<h2>bridge \(escape(bridge.name)): \(head)</h2>\n<table>\n"
        for (label, value) in rows {
            let cell = label == "queue" ? "<td class=\"depth\">" : "<td>"
            html += "<tr><th>\(escape(label))</th>\(cell)\(escape(value))</td></tr>\n"
        }
        html += "</table>\n"
        html += graph(
            id: "\(id)-depth",
            title: "queue depth, messages",
            values: history.map { index < $0.depths.count ? Double($0.depths[index]) : 0 },
            unit: ""
        )
        html += graph(
            id: "\(id)-drain",
            title: "drain rate, sent per second",
            values: history.compactMap { index < $0.sendRates.count ? $0.sendRates[index] : nil },
            unit: "/s"
        )
        return html + "</section>\n"
    }

    static let graphWidth = 300.0
    static let graphHeight = 60.0

    /// Points drawn per graph at most: an hour of samples is thinned to this, keeping the page small.
    static let graphPoints = 60

    /// A line graph of `values` (oldest first) scaled to its largest value, with that value as its label.
    static func graph(id: String, title: String, values: [Double], unit: String) -> String {
        let finite = downsample(values.map { $0.isFinite ? max(0, $0) : 0 }, to: graphPoints)
        let top = max(1, finite.max() ?? 0)
        let label = finite.count >= 2 ? "\(title): max \(StatusFormat.number(finite.max() ?? 0))\(unit)" : title
        var svg = "<figure><svg id=\"\(id)\" width=\"\(Int(graphWidth))\" height=\"\(Int(graphHeight))\" "
        svg += "viewBox=\"0 0 \(Int(graphWidth)) \(Int(graphHeight))\" role=\"img\" aria-label=\"\(escape(title))\">"
        if finite.count >= 2 {
            svg +=
                "<polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"\(polyline(finite, top: top))\"/>"
        } else {
            svg += "<text x=\"8\" y=\"34\" font-size=\"12\" fill=\"#888\">collecting samples…</text>"
        }
        svg += "</svg><figcaption>\(escape(label))</figcaption></figure>\n"
        return svg
    }

    /// At most `limit` values, each the largest of its run of neighbours, so a short peak stays visible.
    static func downsample(_ values: [Double], to limit: Int) -> [Double] {
        guard values.count > limit, limit > 0 else { return values }
        return (0..<limit).map { bucket in
            let start = bucket * values.count / limit
            let end = max(start + 1, (bucket + 1) * values.count / limit)
            return values[start..<end].max() ?? 0
        }
    }

    /// `x,y x,y …` in the graph's box: time left to right, zero at the bottom.
    static func polyline(_ values: [Double], top: Double) -> String {
        let step = values.count > 1 ? graphWidth / Double(values.count - 1) : 0
        return values.enumerated().map { index, value in
            let x = Double(index) * step
            let y = graphHeight - 2 - (value / top) * (graphHeight - 4)
            return "\(rounded(x)),\(rounded(y))"
        }.joined(separator: " ")
    }

    private static func rounded(_ value: Double) -> String {
        DecimalText.fixed(value, digits: 1)
    }

    /// Text into HTML text or a quoted attribute.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
