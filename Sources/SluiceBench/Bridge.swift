import Foundation
import MQTTCore
import NIOCore
import NIOPosix

/// Bridge scenarios. Without `--bridge` they are not run and the table lists "bridge" as
/// not yet measured.
///
/// The central broker is always Debian's Mosquitto (started by the bench, persistence on so a
/// persistent subscriber survives its restart). The edge is Mosquitto or Sluice with the same
/// bridge section:
///
///     connection central
///     address 127.0.0.1:PORT
///     topic bench/# out 1
///     cleansession false
///     restart_timeout 1
///
/// (`restart_timeout 1` on both so the reconnect wait after the outage is short and equal;
/// everything else is each broker's default: Mosquitto's bridge uses max_inflight_messages 20,
/// Sluice's bridge_max_inflight, 1000 by default.)
func bridgeScenarios(quick: Bool, enabled: Bool) -> [Scenario] {
    guard enabled else { return [] }
    return [
        bridgeForwardScenario(quick: quick, publishers: 1),
        bridgeForwardScenario(quick: quick, publishers: 10),
        bridgeDrainScenario(quick: quick),
        bridgeDrainScenario(quick: quick, window: 1),
        rateLimitedDrainScenario(quick: quick),
    ] + backlogScenarios(quick: quick) + flashScenarios(quick: quick)
}

func bridgeSection(centralPort: Int, kind: BrokerKind, extra: [String] = []) -> [String] {
    var lines =
        [
            "connection central",
            "address 127.0.0.1:\(centralPort)",
            "topic bench/# out 1",
            "cleansession false",
            "restart_timeout 1",
        ] + extra
    // For experiments only (printed in the log): extra lines for the Sluice edge's bridge section,
    // separated by ';', e.g. SLUICE_BENCH_SLUICE_BRIDGE='bridge_max_inflight 5000'.
    if kind == .sluice, let extra = ProcessInfo.processInfo.environment["SLUICE_BENCH_SLUICE_BRIDGE"] {
        let added = extra.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        log("note: Sluice edge bridge section + \(added) (SLUICE_BENCH_SLUICE_BRIDGE)")
        lines += added
    }
    return lines
}

func startCentral(_ ctx: BenchContext, port: Int? = nil, dir: String? = nil) async throws -> BrokerProcess {
    let d = try dir ?? BrokerProcess.makeTempDir("central")
    var extra = ["persistence true", "persistence_location \(d)/", "autosave_interval 3600"]
    // For experiments (logged; the same central for both edges): extra central config lines separated
    // by ';', e.g. SLUICE_BENCH_CENTRAL='max_inflight_messages 1000'.
    if let lines = ProcessInfo.processInfo.environment["SLUICE_BENCH_CENTRAL"] {
        let added = lines.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        log("note: central config + \(added) (SLUICE_BENCH_CENTRAL)")
        extra += added
    }
    return try await BrokerProcess.start(
        kind: .mosquitto,
        sluicePath: ctx.sluicePath,
        group: ctx.group,
        port: port,
        extraConfig: extra,
        dir: d
    )
}

/// An edge broker of `kind` bridged to the central on `centralPort`; a Sluice edge also gets a metrics listener
/// (its port is returned) so the bench can read the store's counters. `global` lines go before the bridge
/// section, `bridge` lines into it.
func startBridgedEdge(
    _ kind: BrokerKind,
    _ ctx: BenchContext,
    centralPort: Int,
    global: [String] = [],
    bridge: [String] = [],
    dir: String? = nil
) async throws -> (edge: BrokerProcess, metricsPort: Int?) {
    let metricsPort = kind == .sluice ? try await Net.freePort(group: ctx.group) : nil
    let edge = try await BrokerProcess.start(
        kind: kind,
        sluicePath: ctx.sluicePath,
        group: ctx.group,
        extraConfig: global + metricsLines(metricsPort)
            + bridgeSection(centralPort: centralPort, kind: kind, extra: bridge),
        dir: dir
    )
    return (edge, metricsPort)
}

/// Publishes probe messages on the edge until one arrives at the central (bounded).
func waitForBridge(_ ctx: BenchContext, edgePort: Int, centralPort: Int, timeout: Double = 20) async throws {
    let (subCh, sub) = try await Net.connect(group: ctx.group, port: centralPort, clientID: "probe-sub").get()
    defer { subCh.close(promise: nil) }
    try await sub.loop.flatSubmit { sub.subscribe("bench/probe", qos: .atLeastOnce) }.get()
    let deadline = nowNanos() + UInt64(timeout * 1e9)
    while nowNanos() < deadline {
        let (ch, pub) = try await Net.connect(group: ctx.group, port: edgePort, clientID: "probe-pub").get()
        _ = try? await pub.loop.flatSubmit {
            pub.startPublishing(topic: "bench/probe", qos: .atLeastOnce, payloadSize: 8, count: 1, window: 1)
        }.get()
        pub.loop.execute { pub.disconnect() }
        _ = try? await ch.closeFuture.get()
        for _ in 0..<10 {
            if try await sub.loop.submit({ sub.received }).get() > 0 { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }
    throw BenchError("bridge did not forward a probe message within \(Int(timeout)) s")
}

/// Extra config for a Sluice edge: a metrics listener on `port`, so the bench can read the store's
/// commit counters (scraped twice per run; Mosquitto has no equivalent and gets nothing).
func metricsLines(_ port: Int?) -> [String] {
    port.map { ["metrics_listener \($0) 127.0.0.1"] } ?? []
}

/// The CPU and commit rows both bridge scenarios print (`prefix` names the phase).
func bridgeContextMetrics(_ prefix: String) -> [MetricSpec] {
    [
        MetricSpec(key: "centralCPU", label: "\(prefix): central CPU (%)", unit: "% of a core", better: .info),
        MetricSpec(key: "edgeCPU", label: "\(prefix): edge CPU (%)", unit: "% of a core", better: .info),
        MetricSpec(key: "genCPU", label: "\(prefix): bench CPU (%)", unit: "% of a core", better: .info),
        MetricSpec(
            key: "centralCeiling",
            label: "\(prefix): central max at 1 core (msg/s)",
            unit: "msg/s",
            better: .info
        ),
        MetricSpec(key: "commitsPerSec", label: "\(prefix): LMDB commits/s", unit: "1/s", better: .info),
        MetricSpec(key: "msgsPerCommit", label: "\(prefix): msgs per commit", unit: "msgs", better: .info),
        MetricSpec(key: "fdatasync", label: "\(prefix): fdatasync 4 KiB (ms)", unit: "ms", better: .info),
    ]
}

/// Fills the context rows from two samples around a phase in which `messages` went through.
func recordBridgeContext(
    _ out: inout RunOutcome,
    from a: CPUSample,
    to b: CPUSample,
    commits: (StoreCounters?, StoreCounters?),
    messages: Int,
    fdatasync: Double?
) {
    out.values["centralCPU"] = a.share("central", until: b).map { $0 * 100 }
    out.values["edgeCPU"] = a.share("edge", until: b).map { $0 * 100 }
    out.values["genCPU"] = a.share("gen", until: b).map { $0 * 100 }
    out.values["fdatasync"] = fdatasync
    // The central's CPU per message turned into the rate it could reach with a whole core to itself
    // (Mosquitto is single-threaded): the ceiling of this phase, whatever the edge does.
    let seconds = Double(b.time - a.time) / 1e9
    if let central = out.values["centralCPU"], central > 0, seconds > 0 {
        out.values["centralCeiling"] = Double(messages) / seconds / (central / 100)
    }
    if let c0 = commits.0, let c1 = commits.1, c1.commits > c0.commits {
        let n = c1.commits - c0.commits
        out.values["commitsPerSec"] = n / (Double(b.time - a.time) / 1e9)
        // Each message is appended once and removed once: both are in these commits.
        out.values["msgsPerCommit"] = Double(messages) / n
    }
    if let central = out.values["centralCPU"], central >= 90 {
        let note = String(format: "central Mosquitto at %.0f%% of a core: this phase is capped by the central", central)
        out.note = out.note.map { $0 + "; " + note } ?? note
    }
}

/// One publisher (window 100: at most 100 messages per commit of a durable edge, so this measures
/// commit latency), or ten (gateway fan-in: 1,000 messages waiting for PUBACKs).
func bridgeForwardScenario(quick: Bool, publishers: Int) -> Scenario {
    let count = quick ? 20_000 : 100_000
    let tag = publishers == 1 ? "" : " \(publishers) pubs"
    return Scenario(
        name: publishers == 1 ? "bridge-forward" : "bridge-forward-fanin",
        description:
            "edge broker with a bridge to a central Mosquitto: \(publishers) local QoS 1 publisher(s), window 100 each (bench/…, 64 B, \(count) msgs in all) → central subscriber QoS 1",
        metrics: [MetricSpec(key: "rate", label: "bridge forward\(tag) (msg/s)", unit: "msg/s", better: .higher)]
            + bridgeContextMetrics(publishers == 1 ? "  fwd" : "  fwd\(tag)")
    ) { kind, ctx in
        let central = try await startCentral(ctx)
        defer { central.stop() }
        let (edge, metricsPort) = try await startBridgedEdge(kind, ctx, centralPort: central.port)
        defer { edge.stop() }
        do {
            try await waitForBridge(ctx, edgePort: edge.port, centralPort: central.port)
            var out = RunOutcome()
            var flow = FlowResult()
            let disk = fdatasyncMilliseconds(dir: edge.dir)
            let c0 = metricsPort.flatMap { StoreCounters.scrape(metricsPort: $0) }
            let s0 = CPUSample.take(["edge": edge, "central": central])
            let m = try await measured(edge) {
                flow = try await runFlow(
                    ctx: ctx,
                    port: edge.port,
                    subscriberPort: central.port,
                    publishers: publishers,
                    subscribers: 1,
                    qos: .atLeastOnce,
                    payload: 64,
                    perPublisher: count / publishers,
                    stallTimeout: 10,
                    hardTimeout: quick ? 60 : 180
                )
            }
            let s1 = CPUSample.take(["edge": edge, "central": central])
            let c1 = metricsPort.flatMap { StoreCounters.scrape(metricsPort: $0) }
            out.values["rate"] = flow.rate
            recordBridgeContext(&out, from: s0, to: s1, commits: (c0, c1), messages: flow.received, fdatasync: disk)
            out.count(expected: flow.expected, received: flow.received)
            out.record(m)
            return out
        } catch {
            throw BenchError("\(error)\nedge log:\n\(edge.logTail())\ncentral log:\n\(central.logTail())")
        }
    }
}

/// `window`: the edge's in-flight window for the bridge (`bridge_max_inflight` for Sluice, the global
/// `max_inflight_messages`, which Mosquitto's bridge takes, for Mosquitto); nil: each one's default.
func bridgeDrainScenario(quick: Bool, window: Int? = nil) -> Scenario {
    let count = window == nil ? (quick ? 20_000 : 100_000) : (quick ? 5_000 : 20_000)
    let tag = window.map { ", window \($0)" } ?? ""
    let short = window.map { " w\($0)" } ?? ""
    return Scenario(
        name: window.map { "bridge-drain-window\($0)" } ?? "bridge-drain",
        description:
            "central down, \(count) QoS 1 msgs queued at the edge, central up: time until its persistent subscriber has them all"
            + (window.map {
                "; edge window \($0) (Sluice bridge_max_inflight \($0), Mosquitto max_inflight_messages \($0))"
            } ?? ""),
        metrics: [
            MetricSpec(key: "rate", label: "bridge drain\(tag), steady (msg/s)", unit: "msg/s", better: .higher),
            MetricSpec(key: "reconnect", label: "bridge drain\(tag): reconnect delay (s)", unit: "s", better: .lower),
            MetricSpec(key: "total", label: "bridge drain\(tag) total (s)", unit: "s", better: .lower),
        ] + bridgeContextMetrics("  drain\(short)")
    ) { kind, ctx in
        let centralDir = try BrokerProcess.makeTempDir("central")
        var central = try await startCentral(ctx, dir: centralDir)
        let centralPort = central.port
        defer {
            central.stop(removeDir: false)
            if ProcessInfo.processInfo.environment["SLUICE_BENCH_KEEP"] == nil {
                try? FileManager.default.removeItem(atPath: centralDir)
            }
        }
        let windowLines =
            window.map { [kind == .sluice ? "bridge_max_inflight \($0)" : "max_inflight_messages \($0)"] } ?? []
        let (edge, metricsPort) = try await startBridgedEdge(
            kind,
            ctx,
            centralPort: centralPort,
            global: kind == .mosquitto ? windowLines : [],
            bridge: kind == .sluice ? windowLines : []
        )
        defer { edge.stop() }
        do {
            try await waitForBridge(ctx, edgePort: edge.port, centralPort: centralPort)
            // The persistent subscriber: register its session, then go away.
            let subID = "drain-sub-\(UInt32.random(in: 0...UInt32.max))"
            do {
                let (ch, sub) = try await Net.connect(
                    group: ctx.group,
                    port: centralPort,
                    clientID: subID,
                    cleanSession: false
                ).get()
                try await sub.loop.flatSubmit { sub.subscribe("bench/drain", qos: .atLeastOnce) }.get()
                sub.loop.execute { sub.disconnect() }
                try await ch.closeFuture.get()
            }
            // Outage: central down; publish the backlog at the edge (QoS 1, acked by the edge).
            central.stop(removeDir: false)
            let (pch, pub) = try await Net.connect(group: ctx.group, port: edge.port, clientID: "drain-pub").get()
            defer { pch.close(promise: nil) }
            let published = pub.loop.flatSubmit {
                pub.startPublishing(topic: "bench/drain", qos: .atLeastOnce, payloadSize: 64, count: count, window: 100)
            }
            let pubDeadline = nowNanos() + UInt64((quick ? 60.0 : 240.0) * 1e9)
            while nowNanos() < pubDeadline {
                if try await pub.loop.submit({ pub.completed }).get() >= count { break }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            _ = try? await published.get()
            try await Task.sleep(nanoseconds: 500_000_000)
            let disk = fdatasyncMilliseconds(dir: edge.dir)
            var out = RunOutcome()
            var received = 0
            var first: UInt64 = 0
            var last: UInt64 = 0
            var start: UInt64 = 0
            var reachable: UInt64 = 0
            // CPU and commit counters from the first poll that saw a message to the one that saw the last.
            var steadyFrom: (cpu: CPUSample, commits: StoreCounters?, received: Int)?
            var steadyTo: (cpu: CPUSample, commits: StoreCounters?, received: Int)?
            let m = try await measured(edge) {
                start = nowNanos()
                central = try await startCentral(ctx, port: centralPort, dir: centralDir)
                reachable = nowNanos()
                let processes = ["edge": edge, "central": central]
                let (ch, sub) = try await Net.connect(
                    group: ctx.group,
                    port: centralPort,
                    clientID: subID,
                    cleanSession: false
                ).get()
                defer { ch.close(promise: nil) }
                var lastCount = -1
                var lastProgress = nowNanos()
                let hard = nowNanos() + UInt64((quick ? 60.0 : 240.0) * 1e9)
                while nowNanos() < hard {
                    try await Task.sleep(nanoseconds: 20_000_000)
                    let n = try await sub.loop.submit { sub.received }.get()
                    if n > 0 && (steadyFrom == nil || n >= count) {
                        let sample = (
                            CPUSample.take(processes), metricsPort.flatMap { StoreCounters.scrape(metricsPort: $0) }, n
                        )
                        if steadyFrom == nil { steadyFrom = sample } else { steadyTo = sample }
                    }
                    if n >= count { break }
                    if n != lastCount {
                        lastCount = n
                        lastProgress = nowNanos()
                    } else if Double(nowNanos() - lastProgress) / 1e9 > 15 {
                        break
                    }
                }
                (received, first, last) = try await sub.loop.submit {
                    (sub.received, sub.firstReceive, sub.lastReceive)
                }
                .get()
            }
            out.values["rate"] = last > first ? Double(received) / (Double(last - first) / 1e9) : .nan
            out.values["reconnect"] = first > reachable ? Double(first - reachable) / 1e9 : .nan
            out.values["total"] = last > reachable ? Double(last - reachable) / 1e9 : .nan
            if let a = steadyFrom, let b = steadyTo {
                recordBridgeContext(
                    &out,
                    from: a.cpu,
                    to: b.cpu,
                    commits: (a.commits, b.commits),
                    messages: b.received - a.received,
                    fdatasync: disk
                )
            }
            out.count(expected: count, received: received)
            out.record(m)
            if received < count {
                out.note = "incomplete drain; edge log:\n\(edge.logTail())\ncentral log:\n\(central.logTail())"
            } else {
                let restart = String(
                    format: "central restart %.2f s (spawn → accepting)",
                    Double(reachable - start) / 1e9
                )
                out.note = out.note.map { restart + "; " + $0 } ?? restart
            }
            return out
        } catch {
            throw BenchError("\(error)\nedge log:\n\(edge.logTail())\ncentral log:\n\(central.logTail())")
        }
    }
}
