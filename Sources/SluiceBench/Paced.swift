import MQTTCore

/// The broker's cost per message at a steady, modest rate — the load a gateway carries most of the
/// time — rather than at saturation, where both brokers amortise wake-ups over large batches.
/// `rate` is the total of all publishers (each sends `rate / publishers` msg/s).
func pacedScenario(shape: Shape, qos: QoS, rate: Double, quick: Bool) -> Scenario {
    let seconds = quick ? 3.0 : 10.0
    let name = "paced-\(shape.rawValue)-q\(qos.rawValue)"
    return Scenario(
        name: name,
        description:
            "\(shape.label), QoS \(qos.rawValue), 64 B, paced at \(Int(rate)) msg/s in all for \(Int(seconds)) s;"
            + " broker CPU (utime+stime) per delivered message, latency from a timestamp in the payload",
        metrics: [
            MetricSpec(key: "cpu", label: "\(name) broker CPU/msg (µs)", unit: "µs", better: .lower),
            MetricSpec(key: "p50", label: "\(name) latency p50 (µs)", unit: "µs", better: .lower),
            MetricSpec(key: "p99", label: "\(name) latency p99 (µs)", unit: "µs", better: .lower),
            MetricSpec(key: "delivered", label: "\(name) delivered (msgs)", unit: "msgs", better: .info),
            MetricSpec(key: "rate", label: "\(name) delivered rate (msg/s)", unit: "msg/s", better: .info),
        ]
    ) { kind, ctx in
        try await withBroker(kind, ctx) { broker in
            let perPublisher = Int(rate * seconds) / shape.publishers
            var flow = FlowResult()
            let m = try await measured(broker) {
                flow = try await runFlow(
                    ctx: ctx,
                    port: broker.port,
                    publishers: shape.publishers,
                    subscribers: shape.subscribers,
                    qos: qos,
                    payload: 64,
                    perPublisher: perPublisher,
                    // As in the QoS 2 throughput rows: Mosquitto's max_inflight_messages 20.
                    window: qos == .exactlyOnce ? 20 : 100,
                    rate: rate / Double(shape.publishers),
                    recordLatency: true,
                    hardTimeout: seconds + 30
                )
            }
            var out = latencyOutcome(flow, measured: m, scale: 1e3)
            out.values["delivered"] = Double(flow.received)
            out.values["rate"] = flow.rate
            if let cpu = m.broker, flow.received > 0 { out.values["cpu"] = cpu / Double(flow.received) * 1e6 }
            // A broker that fell behind did less work per second than asked: its CPU figure is not comparable.
            if flow.rate < rate * 0.95 {
                out.note = String(format: "did not hold the rate: %.0f of %.0f msg/s", flow.rate, rate)
            }
            return out
        }
    }
}
