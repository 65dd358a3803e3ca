import Foundation
import MQTTCore
import NIOCore
import NIOPosix

/// Which direction wins; `info` rows (CPU shares, commit counts) explain a figure and win nothing.
enum Better: String, Codable { case higher, lower, info }

struct MetricSpec {
    var key: String
    var label: String
    var unit: String
    var better: Better
}

/// What one run (one broker, one round) of a scenario measured.
struct RunOutcome {
    var values: [String: Double] = [:]
    var loss = 0
    var duplicates = 0
    var generatorCPU = 0.0  // seconds of this process's CPU during the measurement
    var wall = 0.0  // seconds of the measurement
    var brokerCPU: Double?  // seconds of the broker's CPU during the measurement
    var note: String?

    /// Loss and duplicates of a flow that should deliver `expected` messages.
    mutating func count(expected: Int, received: Int) {
        loss = max(0, expected - received)
        duplicates = max(0, received - expected)
    }

    mutating func record(_ m: Measured) {
        generatorCPU = m.gen
        brokerCPU = m.broker
        wall = m.wall
    }
}

/// CPU seconds of the generator and the broker, and wall seconds, around a measured body.
typealias Measured = (gen: Double, broker: Double?, wall: Double)

struct BenchContext: Sendable {
    var group: MultiThreadedEventLoopGroup
    var sluicePath: String
    var quick: Bool
    var fileLimit: Int
}

struct Scenario {
    var name: String
    var description: String
    var metrics: [MetricSpec]
    var run: @Sendable (BrokerKind, BenchContext) async throws -> RunOutcome
}

final class SharedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var _value = false
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
}

/// Measures CPU of generator and broker around `body`.
func measured(_ broker: BrokerProcess?, _ body: () async throws -> Void) async rethrows -> Measured {
    let g0 = generatorCPUSeconds()
    let b0 = broker?.cpuSeconds()
    let t0 = nowNanos()
    try await body()
    let wall = Double(nowNanos() - t0) / 1e9
    let g1 = generatorCPUSeconds()
    var b: Double? = nil
    if let b0, let b1 = broker?.cpuSeconds() { b = b1 - b0 }
    return (g1 - g0, b, wall)
}

// MARK: Pub/sub core

struct FlowResult {
    var expected = 0
    var received = 0
    var start: UInt64 = 0
    var end: UInt64 = 0
    var latencies: [UInt64] = []
    var rate: Double { end > start ? Double(received) / (Double(end - start) / 1e9) : 0 }
}

/// N publishers → M subscribers on one topic. Every subscriber receives every message.
/// `perPublisher` messages each; returns counts and the first-publish → last-receive span.
func runFlow(
    ctx: BenchContext,
    port: Int,
    subscriberPort: Int? = nil,
    publishers: Int,
    subscribers: Int,
    qos: QoS,
    payload: Int,
    perPublisher: Int,
    window: Int = 100,
    rate: Double = 0,
    recordLatency: Bool = false,
    stallTimeout: Double = 5,
    hardTimeout: Double
) async throws -> FlowResult {
    let group = ctx.group
    var channels: [Channel] = []
    defer { for ch in channels { ch.close(promise: nil) } }
    let tag = UInt32.random(in: 0...UInt32.max)
    let topic = "bench/t\(tag)"
    var subs: [BenchConnection] = []
    for i in 0..<subscribers {
        let (ch, conn) = try await Net.connect(group: group, port: subscriberPort ?? port, clientID: "bs\(tag)-\(i)")
            .get()
        channels.append(ch)
        try await conn.loop.flatSubmit { conn.subscribe(topic, qos: qos) }.get()
        subs.append(conn)
    }
    var pubs: [BenchConnection] = []
    for i in 0..<publishers {
        let (ch, conn) = try await Net.connect(group: group, port: port, clientID: "bp\(tag)-\(i)").get()
        channels.append(ch)
        pubs.append(conn)
    }
    let expectedPerSub = perPublisher * publishers
    for s in subs {
        try await s.loop.submit {
            s.expected = expectedPerSub
            s.recordLatency = recordLatency
        }.get()
    }
    var result = FlowResult(expected: expectedPerSub * subscribers)
    let pubsDone = SharedFlag()
    let pubFailed = SharedFlag()
    result.start = nowNanos()
    let futures = pubs.map { p in
        p.loop.flatSubmit {
            p.startPublishing(
                topic: topic,
                qos: qos,
                payloadSize: payload,
                count: perPublisher,
                window: window,
                rate: rate
            )
        }
    }
    EventLoopFuture.whenAllComplete(futures, on: group.next()).whenSuccess { results in
        for r in results { if case .failure = r { pubFailed.value = true } }
        pubsDone.value = true
    }
    var lastTotal = -1
    var lastProgress = nowNanos()
    let hardDeadline = nowNanos() + UInt64(hardTimeout * 1e9)
    while true {
        try await Task.sleep(nanoseconds: 20_000_000)
        var total = 0
        for s in subs { total += try await s.loop.submit { s.received }.get() }
        let now = nowNanos()
        if total >= result.expected && pubsDone.value { break }
        if total != lastTotal {
            lastTotal = total
            lastProgress = now
        } else if Double(now - lastProgress) / 1e9 > stallTimeout {
            break
        }
        if now > hardDeadline { break }
    }
    var end: UInt64 = 0
    var received = 0
    for s in subs {
        let (r, last, lat) = try await s.loop.submit { (s.received, s.lastReceive, recordLatency ? s.latencies : []) }
            .get()
        received += r
        end = max(end, last)
        result.latencies += lat
    }
    result.received = received
    result.end = end
    // Disconnect cleanly.
    for c in pubs + subs { c.loop.execute { c.disconnect() } }
    return result
}

// MARK: Scenario list

enum Shape: String {
    case fanIn = "fanin", fanOut = "fanout", oneToOne = "1to1"
    var publishers: Int { self == .fanIn ? 10 : 1 }
    var subscribers: Int { self == .fanOut ? 10 : 1 }
    var label: String {
        switch self {
        case .fanIn: "10 pub → 1 sub"
        case .fanOut: "1 pub → 10 sub"
        case .oneToOne: "1 pub → 1 sub"
        }
    }
}

func withBroker<T>(
    _ kind: BrokerKind,
    _ ctx: BenchContext,
    _ body: (BrokerProcess) async throws -> T
) async throws -> T {
    let broker = try await BrokerProcess.start(kind: kind, sluicePath: ctx.sluicePath, group: ctx.group)
    do {
        let r = try await body(broker)
        broker.stop()
        return r
    } catch {
        let tail = broker.logTail()
        broker.stop()
        throw BenchError("\(error)\n\(kind.rawValue) log tail:\n\(tail)")
    }
}

func throughputScenario(shape: Shape, qos: QoS, payload: Int, quick: Bool) -> Scenario {
    let delivered = quick ? 20_000 : 100_000
    let name = "tput-\(shape.rawValue)-q\(qos.rawValue)-\(payload)B"
    return Scenario(
        name: name,
        description: "\(shape.label), QoS \(qos.rawValue), \(payload) B, \(delivered) msgs delivered",
        metrics: [MetricSpec(key: "rate", label: "\(name) (msg/s)", unit: "msg/s", better: .higher)]
    ) { kind, ctx in
        try await withBroker(kind, ctx) { broker in
            var out = RunOutcome()
            var flow = FlowResult()
            // Fan-out: each of the 10 subscribers gets delivered/10; others: delivered total.
            let perPublisher = shape == .fanOut ? delivered / 10 : delivered / shape.publishers
            let m = try await measured(broker) {
                flow = try await runFlow(
                    ctx: ctx,
                    port: broker.port,
                    publishers: shape.publishers,
                    subscribers: shape.subscribers,
                    qos: qos,
                    payload: payload,
                    perPublisher: perPublisher,
                    // QoS 2: Mosquitto counts unreleased incoming QoS 2 messages against
                    // max_inflight_messages (20 by default on both brokers) and disconnects a
                    // client that exceeds it, so the publisher window is 20 there.
                    window: qos == .exactlyOnce ? 20 : 100,
                    hardTimeout: quick ? 30 : 45
                )
            }
            out.values["rate"] = flow.rate
            out.count(expected: flow.expected, received: flow.received)
            out.record(m)
            return out
        }
    }
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let i = min(sorted.count - 1, Int((p * Double(sorted.count - 1)).rounded()))
    return Double(sorted[i])
}

func latencyScenario(quick: Bool) -> Scenario {
    let rate = 5000.0
    let seconds = quick ? 3.0 : 10.0
    return Scenario(
        name: "latency",
        description:
            "1 pub → 1 sub, QoS 1, 64 B, paced at \(Int(rate)) msg/s for \(Int(seconds)) s; timestamp in payload",
        metrics: [
            MetricSpec(key: "p50", label: "latency p50 (ms)", unit: "ms", better: .lower),
            MetricSpec(key: "p99", label: "latency p99 (ms)", unit: "ms", better: .lower),
            MetricSpec(key: "max", label: "latency max (ms)", unit: "ms", better: .lower),
        ]
    ) { kind, ctx in
        try await withBroker(kind, ctx) { broker in
            var flow = FlowResult()
            let m = try await measured(broker) {
                flow = try await runFlow(
                    ctx: ctx,
                    port: broker.port,
                    publishers: 1,
                    subscribers: 1,
                    qos: .atLeastOnce,
                    payload: 64,
                    perPublisher: Int(rate * seconds),
                    rate: rate,
                    recordLatency: true,
                    hardTimeout: seconds + 30
                )
            }
            var out = latencyOutcome(flow, measured: m, scale: 1e6)
            out.note = String(format: "achieved %.0f msg/s", flow.rate)
            return out
        }
    }
}

/// p50, p99 and max of receive time − payload timestamp (nanoseconds / `scale`: 1e6 for ms, 1e3 for
/// µs), with loss, duplicates and the CPU and wall time `measured` took.
func latencyOutcome(
    _ flow: FlowResult,
    measured m: Measured,
    scale: Double
) -> RunOutcome {
    var out = RunOutcome()
    let sorted = flow.latencies.sorted()
    out.values["p50"] = percentile(sorted, 0.50) / scale
    out.values["p99"] = percentile(sorted, 0.99) / scale
    out.values["max"] = Double(sorted.last ?? 0) / scale
    out.count(expected: flow.expected, received: flow.received)
    out.record(m)
    return out
}

/// Opens `count` connections, `concurrency` at a time; returns the channels.
func openIdle(ctx: BenchContext, port: Int, count: Int, concurrency: Int, prefix: String) async throws -> [Channel] {
    var channels: [Channel] = []
    channels.reserveCapacity(count)
    var i = 0
    while i < count {
        let n = min(concurrency, count - i)
        let futures = (0..<n).map { j in
            Net.connect(group: ctx.group, port: port, clientID: "\(prefix)-\(i + j)", keepAlive: 0)
        }
        for f in futures {
            let (ch, _) = try await f.get()
            channels.append(ch)
        }
        i += n
    }
    return channels
}

func memoryScenario(quick: Bool, fileLimit: Int) -> Scenario {
    let big = !quick && fileLimit >= 10_000 + 500  // each process (bench, broker) needs ~10k descriptors
    let burst = 10_000
    var metrics = [
        MetricSpec(key: "idle", label: "memory idle RSS (MiB)", unit: "MiB", better: .lower),
        MetricSpec(key: "traffic", label: "memory RSS after traffic (MiB)", unit: "MiB", better: .lower),
        MetricSpec(key: "rss1k", label: "memory RSS 1k conns (MiB)", unit: "MiB", better: .lower),
        MetricSpec(key: "per1k", label: "memory per conn @1k (KiB)", unit: "KiB", better: .lower),
    ]
    if big {
        metrics += [
            MetricSpec(key: "rss10k", label: "memory RSS 10k conns (MiB)", unit: "MiB", better: .lower),
            MetricSpec(key: "per10k", label: "memory per conn @10k (KiB)", unit: "KiB", better: .lower),
        ]
    }
    return Scenario(
        name: "memory",
        description: "broker VmRSS idle and with 1,000\(big ? " and 10,000" : "") idle MQTT connections (keepalive 0);"
            + " a fresh broker's VmRSS after \(burst) QoS 1 msgs 1 → 1",
        metrics: metrics
    ) { kind, ctx in
        var out = try await withBroker(kind, ctx) { broker in
            var out = RunOutcome()
            var channels: [Channel] = []
            let m = try await measured(broker) {
                try await Task.sleep(nanoseconds: 1_000_000_000)
                let idle = Double(broker.rssBytes() ?? 0)
                channels = try await openIdle(ctx: ctx, port: broker.port, count: 1000, concurrency: 100, prefix: "m")
                try await Task.sleep(nanoseconds: 1_000_000_000)
                let rss1k = Double(broker.rssBytes() ?? 0)
                out.values["idle"] = idle / 1_048_576
                out.values["rss1k"] = rss1k / 1_048_576
                out.values["per1k"] = (rss1k - idle) / 1000 / 1024
                if big {
                    channels += try await openIdle(
                        ctx: ctx,
                        port: broker.port,
                        count: 9000,
                        concurrency: 100,
                        prefix: "m2"
                    )
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    let rss10k = Double(broker.rssBytes() ?? 0)
                    out.values["rss10k"] = rss10k / 1_048_576
                    out.values["per10k"] = (rss10k - idle) / 10000 / 1024
                }
            }
            await Net.closeAll(channels)
            out.record(m)
            return out
        }
        // Idle RSS right after start-up is not the running working set (Sluice releases its
        // start-up code pages; code used later faults back in), so a second, fresh broker also
        // carries a short burst of real traffic and is sampled once its clients have gone. A fresh
        // one, so the burst's leftovers do not change what the connection figures above mean.
        let (traffic, flow) = try await withBroker(kind, ctx) { broker in
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let flow = try await runFlow(
                ctx: ctx,
                port: broker.port,
                publishers: 1,
                subscribers: 1,
                qos: .atLeastOnce,
                payload: 64,
                perPublisher: burst,
                hardTimeout: 30
            )
            try await Task.sleep(nanoseconds: 1_000_000_000)
            return (Double(broker.rssBytes() ?? 0), flow)
        }
        out.values["traffic"] = traffic / 1_048_576
        out.count(expected: flow.expected, received: flow.received)
        return out
    }
}

func connectionRateScenario(quick: Bool) -> Scenario {
    let total = 2000
    let concurrency = 20
    return Scenario(
        name: "connrate",
        description: "CONNECT/CONNACK/DISCONNECT, \(total) connections, \(concurrency) at a time",
        metrics: [MetricSpec(key: "rate", label: "connections/s", unit: "conn/s", better: .higher)]
    ) { kind, ctx in
        try await withBroker(kind, ctx) { broker in
            var out = RunOutcome()
            let failures = SharedFlag()
            let port = broker.port
            let m = try await measured(broker) {
                try await withThrowingTaskGroup(of: Void.self) { tg in
                    for w in 0..<concurrency {
                        tg.addTask {
                            for i in 0..<(total / concurrency) {
                                do {
                                    let (ch, conn) = try await Net.connect(
                                        group: ctx.group,
                                        port: port,
                                        clientID: "c\(w)-\(i)"
                                    ).get()
                                    conn.loop.execute { conn.disconnect() }
                                    try await ch.closeFuture.get()
                                } catch {
                                    failures.value = true
                                }
                            }
                        }
                    }
                    try await tg.waitForAll()
                }
            }
            out.values["rate"] = Double(total) / m.wall
            out.record(m)
            if failures.value { out.note = "some connections failed" }
            return out
        }
    }
}

func allScenarios(quick: Bool, fileLimit: Int, bridge: Bool) -> [Scenario] {
    var list: [Scenario] = []
    let shapes: [Shape] = [.fanIn, .fanOut, .oneToOne]
    let qoses: [QoS] = quick ? [.atMostOnce, .atLeastOnce] : [.atMostOnce, .atLeastOnce, .exactlyOnce]
    let payloads = quick ? [64] : [64, 1024]
    for payload in payloads {
        for qos in qoses {
            for shape in shapes {
                list.append(throughputScenario(shape: shape, qos: qos, payload: payload, quick: quick))
            }
        }
    }
    list.append(latencyScenario(quick: quick))
    list.append(pacedScenario(shape: .fanIn, qos: .atLeastOnce, rate: 20_000, quick: quick))
    list.append(pacedScenario(shape: .fanIn, qos: .atMostOnce, rate: 20_000, quick: quick))
    list.append(pacedScenario(shape: .oneToOne, qos: .exactlyOnce, rate: 10_000, quick: quick))
    list.append(memoryScenario(quick: quick, fileLimit: fileLimit))
    list.append(memoryReturnScenario(quick: quick))
    list.append(connectionRateScenario(quick: quick))
    list += bridgeScenarios(quick: quick, enabled: bridge)
    return list
}
