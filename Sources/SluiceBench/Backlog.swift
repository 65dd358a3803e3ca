import Foundation
import MQTTCore
import NIOCore
import NIOPosix

/// Backlog scenarios (with `--bridge`): durable enqueue with the central down, start-up with a
/// full queue, and broker memory with a large backlog for an offline persistent session.
///
/// Sizes: enqueue 100,000 (20,000 quick); start-up and memory 1,000,000 (50,000 quick, which
/// says so in the scenario description).
func backlogScenarios(quick: Bool) -> [Scenario] {
    [
        bridgeEnqueueScenario(quick: quick),
        bridgeStartupScenario(quick: quick),
        backlogMemoryScenario(quick: quick),
    ]
}

/// What `publishBacklog` achieved.
struct BacklogResult {
    var acknowledged = 0
    var seconds = 0.0
    var rate: Double { seconds > 0 ? Double(acknowledged) / seconds : .nan }
}

/// `publishers` QoS 1 publishers (window 100 each) send `total` messages of 64 B to `topic` and
/// wait for every PUBACK; bounded by 5 s without progress and `hardTimeout`.
func publishBacklog(
    _ ctx: BenchContext,
    port: Int,
    topic: String,
    publishers: Int,
    total: Int,
    hardTimeout: Double
) async throws -> BacklogResult {
    var channels: [Channel] = []
    defer { for ch in channels { ch.close(promise: nil) } }
    let tag = UInt32.random(in: 0...UInt32.max)
    var pubs: [BenchConnection] = []
    for i in 0..<publishers {
        let (ch, conn) = try await Net.connect(group: ctx.group, port: port, clientID: "bl\(tag)-\(i)").get()
        channels.append(ch)
        pubs.append(conn)
    }
    let start = nowNanos()
    for (i, p) in pubs.enumerated() {
        let share = total / publishers + (i < total % publishers ? 1 : 0)
        // Completion is polled below; a failed publisher shows up as missing PUBACKs.
        _ = p.loop.flatSubmit {
            p.startPublishing(topic: topic, qos: .atLeastOnce, payloadSize: 64, count: share, window: 100)
        }
    }
    var done = 0
    var lastDone = -1
    var lastProgress = nowNanos()
    var end = start
    let hard = start + UInt64(hardTimeout * 1e9)
    while nowNanos() < hard {
        try await Task.sleep(nanoseconds: 10_000_000)
        var n = 0
        for p in pubs { n += try await p.loop.submit { p.completed }.get() }
        let now = nowNanos()
        if n != lastDone {
            lastDone = n
            lastProgress = now
            end = now
        } else if Double(now - lastProgress) / 1e9 > 5 {
            break
        }
        done = n
        if n >= total { break }
    }
    for p in pubs { p.loop.execute { p.disconnect() } }
    return BacklogResult(acknowledged: done, seconds: Double(end - start) / 1e9)
}

/// An edge whose bridge points at a loopback port nothing listens on: the central is down for the
/// whole run, so every matching message stays queued at the edge.
func edgeWithCentralDown(
    _ kind: BrokerKind,
    _ ctx: BenchContext,
    persistent: Bool,
    dir: String? = nil,
    port: Int? = nil,
    deadPort: Int
) async throws -> BrokerProcess {
    var extra = bridgeSection(centralPort: deadPort, kind: kind)
    if kind == .mosquitto && persistent, let dir {
        // Mosquitto keeps the bridge queue in memory; only its persistence file survives a restart.
        extra = ["persistence true", "persistence_location \(dir)/", "autosave_interval 3600"] + extra
    }
    return try await BrokerProcess.start(
        kind: kind,
        sluicePath: ctx.sluicePath,
        group: ctx.group,
        port: port,
        extraConfig: extra,
        dir: dir,
        startTimeout: 300
    )
}

func bridgeEnqueueScenario(quick: Bool) -> Scenario {
    let count = quick ? 20_000 : 100_000
    let publishers = 10
    return Scenario(
        name: "bridge-enqueue",
        description:
            "central down: \(publishers) local QoS 1 publishers → edge bridge queue (bench/…, 64 B, \(count) msgs); msg/s until all PUBACKed (Sluice: committed to LMDB; Mosquitto: in memory)",
        metrics: [
            MetricSpec(key: "rate", label: "bridge enqueue, central down (msg/s)", unit: "msg/s", better: .higher)
        ]
    ) { kind, ctx in
        let deadPort = try await Net.freePort(group: ctx.group)
        let edge = try await edgeWithCentralDown(kind, ctx, persistent: false, deadPort: deadPort)
        defer { edge.stop() }
        do {
            var out = RunOutcome()
            var result = BacklogResult()
            let m = try await measured(edge) {
                result = try await publishBacklog(
                    ctx,
                    port: edge.port,
                    topic: "bench/enqueue",
                    publishers: publishers,
                    total: count,
                    hardTimeout: quick ? 60 : 180
                )
            }
            out.values["rate"] = result.rate
            out.loss = max(0, count - result.acknowledged)
            out.record(m)
            if result.acknowledged < count { out.note = "only \(result.acknowledged) of \(count) PUBACKed" }
            return out
        } catch {
            throw BenchError("\(error)\nedge log:\n\(edge.logTail())")
        }
    }
}

func bridgeStartupScenario(quick: Bool) -> Scenario {
    let count = quick ? 50_000 : 1_000_000
    let publishers = 10
    return Scenario(
        name: "bridge-startup",
        description:
            "edge restarted with \(count) messages queued for its bridge (central down\(quick ? "; --quick: a smaller backlog than the full run's 1,000,000" : "")): time from spawn to accepting TCP connections; Mosquitto edge with persistence true (it keeps the queue in its persistence file)",
        metrics: [
            MetricSpec(key: "startup", label: "start-up, \(count / 1000)k backlog (s)", unit: "s", better: .lower),
            MetricSpec(key: "stop", label: "shutdown, \(count / 1000)k backlog (s)", unit: "s", better: .lower),
        ]
    ) { kind, ctx in
        let deadPort = try await Net.freePort(group: ctx.group)
        let dir = try BrokerProcess.makeTempDir("startup-\(kind.rawValue)")
        var edge = try await edgeWithCentralDown(kind, ctx, persistent: true, dir: dir, deadPort: deadPort)
        let port = edge.port
        defer {
            // Mosquitto 2.0.11 restarted with a bridge backlog from its persistence file has been
            // seen ignoring SIGTERM: the figures are taken by then, so don't wait long.
            edge.stop(removeDir: false, timeout: 10)
            if ProcessInfo.processInfo.environment["SLUICE_BENCH_KEEP"] == nil {
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        do {
            let filled = try await publishBacklog(
                ctx,
                port: port,
                topic: "bench/startup",
                publishers: publishers,
                total: count,
                hardTimeout: quick ? 60 : 300
            )
            guard filled.acknowledged == count else {
                throw BenchError("backlog not built: \(filled.acknowledged) of \(count) PUBACKed")
            }
            try await Task.sleep(nanoseconds: 500_000_000)
            var out = RunOutcome()
            let stopStart = nowNanos()
            edge.stop(removeDir: false, timeout: 120)  // Mosquitto writes its persistence file here
            let stopped = Double(nowNanos() - stopStart) / 1e9
            let g0 = generatorCPUSeconds()
            let t0 = nowNanos()
            edge = try await edgeWithCentralDown(kind, ctx, persistent: true, dir: dir, port: port, deadPort: deadPort)
            let startup = Double(nowNanos() - t0) / 1e9
            out.values["startup"] = startup
            out.values["stop"] = stopped
            out.generatorCPU = generatorCPUSeconds() - g0
            out.brokerCPU = edge.cpuSeconds()
            out.wall = startup
            out.note = String(format: "backlog built at %.0f msg/s", filled.rate)
            if kind == .sluice, let depth = sluiceQueueDepth(ctx.sluicePath, dir: dir) {
                out.note! += ", queue depth after restart \(depth)"
                if depth < count { out.loss = count - depth }
            }
            return out
        } catch {
            throw BenchError("\(error)\nedge log:\n\(edge.logTail())")
        }
    }
}

/// The depth of the `central` bridge queue, from `sluice queue stats` (reads the store while the
/// gateway runs).
func sluiceQueueDepth(_ sluicePath: String, dir: String) -> Int? {
    let text = shell("'\(sluicePath)' queue stats -c '\(dir)/broker.conf' 2>&1")
    for line in text.split(separator: "\n") where line.contains("central") {
        for word in line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "=" || $0 == "," }) {
            if let n = Int(word) { return n }
        }
    }
    return nil
}

func backlogMemoryScenario(quick: Bool) -> Scenario {
    let count = quick ? 50_000 : 1_000_000
    let publishers = 10
    return Scenario(
        name: "backlog-memory",
        description:
            "no bridge: a persistent QoS 1 subscriber (clean session false) goes away, \(count) QoS 1 msgs of 64 B are published for it\(quick ? " (--quick: smaller than the full run's 1,000,000)" : ""); broker VmRSS with the backlog",
        metrics: [
            MetricSpec(key: "rss", label: "RSS, \(count / 1000)k offline backlog (MiB)", unit: "MiB", better: .lower),
            MetricSpec(key: "perMsg", label: "RSS per backlog msg (B)", unit: "B", better: .lower),
            MetricSpec(key: "rate", label: "offline-session enqueue (msg/s)", unit: "msg/s", better: .higher),
        ]
    ) { kind, ctx in
        try await withBroker(kind, ctx) { broker in
            var out = RunOutcome()
            let subID = "backlog-sub-\(UInt32.random(in: 0...UInt32.max))"
            do {
                let (ch, sub) = try await Net.connect(
                    group: ctx.group,
                    port: broker.port,
                    clientID: subID,
                    cleanSession: false
                ).get()
                try await sub.loop.flatSubmit { sub.subscribe("bench/backlog", qos: .atLeastOnce) }.get()
                sub.loop.execute { sub.disconnect() }
                try await ch.closeFuture.get()
            }
            try await Task.sleep(nanoseconds: 500_000_000)
            let before = Double(broker.rssBytes() ?? 0)
            var result = BacklogResult()
            let m = try await measured(broker) {
                result = try await publishBacklog(
                    ctx,
                    port: broker.port,
                    topic: "bench/backlog",
                    publishers: publishers,
                    total: count,
                    hardTimeout: quick ? 60 : 300
                )
                try await Task.sleep(nanoseconds: 1_000_000_000)
            }
            let after = Double(broker.rssBytes() ?? 0)
            out.values["rss"] = after / 1_048_576
            out.values["perMsg"] = result.acknowledged > 0 ? (after - before) / Double(result.acknowledged) : .nan
            out.values["rate"] = result.rate
            out.loss = max(0, count - result.acknowledged)
            out.record(m)
            out.note = String(format: "RSS before the backlog %.1f MiB", before / 1_048_576)
            if result.acknowledged < count { out.note! += "; only \(result.acknowledged) of \(count) PUBACKed" }
            return out
        }
    }
}
