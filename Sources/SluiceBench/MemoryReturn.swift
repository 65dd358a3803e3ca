import NIOCore

/// Memory that comes back (issue 17, item 7), both brokers in one run:
/// - subscription churn: `rounds` times, one clean-session client subscribes `filters` distinct filters
///   (new ones every round) and disconnects; broker RssAnon 6 s after each round. "kept" is the last
///   round's figure less the RssAnon before the first round (a tree that never frees nodes grows every round).
/// - after a burst: a fresh broker's RssAnon 1 s after start, then 10 QoS 1 publishers → 1 subscriber,
///   `burst` messages of 64 B, every client gone, RssAnon sampled 10 s later.
func memoryReturnScenario(quick: Bool) -> Scenario {
    let rounds = quick ? 3 : 6
    let filters = quick ? 10_000 : 50_000
    let burst = quick ? 50_000 : 200_000
    let perSubscribe = 500
    return Scenario(
        name: "memory-return",
        description:
            "subscription churn: \(rounds) × \(filters) distinct filters subscribed by one clean-session client that"
            + " then disconnects, broker RssAnon 6 s after each round; after a burst: \(burst) QoS 1 msgs of 64 B"
            + " (10 pubs → 1 sub), all clients gone, RssAnon 10 s later against RssAnon 1 s after start",
        metrics: [
            MetricSpec(key: "churnBefore", label: "churn: RssAnon before (MiB)", unit: "MiB", better: .lower),
            MetricSpec(
                key: "churnKept",
                label: "churn: RssAnon after \(rounds) rounds − before (MiB)",
                unit: "MiB",
                better: .lower
            ),
            MetricSpec(key: "idleAnon", label: "burst: idle RssAnon (MiB)", unit: "MiB", better: .lower),
            MetricSpec(key: "burstKept", label: "burst: RssAnon 10 s after − idle (MiB)", unit: "MiB", better: .lower),
        ]
    ) { kind, ctx in
        var out = try await withBroker(kind, ctx) { broker in
            var out = RunOutcome()
            var samples: [Double] = []
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let before = Double(broker.anonymousBytes() ?? 0) / 1_048_576
            let m = try await measured(broker) {
                for round in 0..<rounds {
                    let (channel, connection) = try await Net.connect(
                        group: ctx.group,
                        port: broker.port,
                        clientID: "churn-\(round)"
                    ).get()
                    var index = 0
                    while index < filters {
                        let batch = (index..<min(filters, index + perSubscribe)).map { "churn/r\(round)/f\($0)/+" }
                        try await connection.loop.flatSubmit { connection.subscribe(filters: batch, qos: .atLeastOnce) }
                            .get()
                        index += batch.count
                    }
                    try await connection.loop.submit { connection.disconnect() }.get()
                    try? await channel.closeFuture.get()
                    // Sluice trims its heap once quiet for 1 s and again 3 s later (IdleTrim): sample after both.
                    try await Task.sleep(nanoseconds: 6_000_000_000)
                    samples.append(Double(broker.anonymousBytes() ?? 0) / 1_048_576)
                }
            }
            out.values["churnBefore"] = before
            out.values["churnKept"] = (samples.last ?? before) - before
            out.note =
                "churn RssAnon per round (MiB): " + samples.map { String(Int($0.rounded())) }.joined(separator: " ")
            out.record(m)
            return out
        }
        let (idle, kept, flow) = try await withBroker(kind, ctx) { broker in
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let idle = Double(broker.anonymousBytes() ?? 0)
            let flow = try await runFlow(
                ctx: ctx,
                port: broker.port,
                publishers: 10,
                subscribers: 1,
                qos: .atLeastOnce,
                payload: 64,
                perPublisher: burst / 10,
                hardTimeout: 120
            )
            // runFlow closed every client on return.
            try await Task.sleep(nanoseconds: 10_000_000_000)
            return (idle, Double(broker.anonymousBytes() ?? 0), flow)
        }
        out.values["idleAnon"] = idle / 1_048_576
        out.values["burstKept"] = (kept - idle) / 1_048_576
        out.count(expected: flow.expected, received: flow.received)
        return out
    }
}
