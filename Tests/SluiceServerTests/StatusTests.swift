import Foundation
import NIOCore
import Testing

@testable import SluiceServer

/// A reading at `at` seconds with one bridge.
private func reading(
    _ at: Double,
    acknowledged: UInt64 = 0,
    received: UInt64 = 0,
    appended: UInt64 = 0,
    depth: UInt64 = 0,
    clients: Int = 0
) -> StatusReading {
    StatusReading(
        at: at,
        wallClock: 1_800_000_000 + at,
        clients: clients,
        bridges: [BridgeReading(acknowledged: acknowledged, received: received, appended: appended, depth: depth)]
    )
}

@Suite struct StatusSamplerTests {
    @Test func ratesOverTheLastMinute() {
        var sampler = StatusSampler()
        // 100 acknowledged, 5 received and 20 queued per second for 70 s.
        for t in 0...70 {
            let t = UInt64(t)
            sampler.record(reading(Double(t), acknowledged: 100 * t, received: 5 * t, appended: 20 * t, depth: 10_000))
        }
        let now = reading(70, acknowledged: 7000, received: 350, appended: 1400, depth: 10_000)
        let rates = sampler.rates(at: now)[0]
        #expect(rates.sendRate == 100)
        #expect(rates.receiveRate == 5)
        #expect(rates.queueRate == 20)
        #expect(rates.drainRate == 0)
    }

    @Test func drainRateUsesTheLastTenSecondsOnly() {
        var sampler = StatusSampler()
        // An outage holding 20,000 for a minute, then a drain of 1,000 per second.
        for t in 0...60 { sampler.record(reading(Double(t), depth: 20_000)) }
        for t in 61...65 {
            sampler.record(
                reading(Double(t), acknowledged: UInt64(t - 60) * 1000, depth: 20_000 - UInt64(t - 60) * 1000)
            )
        }
        let now = reading(65, acknowledged: 5000, depth: 15_000)
        let rates = sampler.rates(at: now)[0]
        // From 55 s (20,000) to 65 s (15,000).
        #expect(rates.drainRate == 500)
        #expect(StatusArithmetic.timeToDrain(depth: 15_000, drainRate: rates.drainRate) == 30)
        // The minute's send rate: 5,000 over 60 s.
        #expect(rates.sendRate.map { abs($0 - 5000.0 / 60) < 1e-9 } == true)
        // Measured since the link came up at 60 s: the drain's own pace.
        let sinceUp = sampler.rates(at: now, linkChangedAt: [60])[0]
        #expect(sinceUp.drainRate == 1000)
        #expect(StatusArithmetic.timeToDrain(depth: 15_000, drainRate: sinceUp.drainRate) == 15)
        #expect(sinceUp.sendRate == rates.sendRate)
        // A link that changed a moment ago has no drain rate yet.
        #expect(sampler.rates(at: now, linkChangedAt: [64.8])[0].drainRate == nil)
    }

    @Test func aGrowingQueueHasANegativeDrainRateAndNoTimeToDrain() {
        var sampler = StatusSampler()
        for t in 0...10 { sampler.record(reading(Double(t), appended: UInt64(t) * 300, depth: UInt64(t) * 300)) }
        let now = reading(10, appended: 3000, depth: 3000)
        let drain = sampler.rates(at: now)[0].drainRate
        #expect(drain == -300)
        #expect(StatusArithmetic.timeToDrain(depth: 3000, drainRate: drain) == nil)
    }

    @Test func noRatesWithoutAnEarlierReading() {
        var sampler = StatusSampler()
        #expect(sampler.rates(at: reading(5, acknowledged: 10))[0] == BridgeRates())
        sampler.record(reading(5, acknowledged: 0))
        // 0.2 s is too short an interval to call a rate.
        #expect(sampler.rates(at: reading(5.2, acknowledged: 10))[0] == BridgeRates())
    }

    @Test func memoryIsBoundedHoweverOftenItRecords() {
        var sampler = StatusSampler(historyInterval: 10, historyCapacity: 360, recentCapacity: 240)
        for t in 0..<10_000 { sampler.record(reading(Double(t))) }
        #expect(sampler.history.count == 360)
        #expect(sampler.history.first?.at == 6400)  // one point per 10 s, the last 360 of them
        #expect(sampler.recent.count <= 62)
        var fast = StatusSampler()
        for t in 0..<10_000 { fast.record(reading(Double(t) / 1000)) }  // a thousand a second
        #expect(fast.recent.count == 240)
        #expect(fast.history.map(\.at) == [0, 9.75])
    }

    @Test func historyKeepsOnePointPerIntervalDespiteEarlyTimers() {
        var sampler = StatusSampler(historyInterval: 10)
        // A 1 s timer firing 5 ms early each time.
        for t in 0...30 { sampler.record(reading(Double(t) * 0.995)) }
        let times = sampler.history.map(\.at)
        #expect(times.count == 4)
        #expect(times.first == 0)
        for (earlier, later) in zip(times, times.dropFirst()) {
            #expect(later - earlier > 9.7 && later - earlier < 10.5)
        }
    }

    @Test func graphPointsCarryDepthsAndSendRatesBetweenPoints() {
        var sampler = StatusSampler(historyInterval: 10)
        sampler.record(reading(0, acknowledged: 0, depth: 5000, clients: 2))
        sampler.record(reading(10, acknowledged: 1000, depth: 4000, clients: 3))
        sampler.record(reading(20, acknowledged: 3000, depth: 2000, clients: 3))
        let points = sampler.points(now: reading(25, acknowledged: 4000, depth: 1000, clients: 1))
        #expect(points.map(\.depths) == [[5000], [4000], [2000], [1000]])
        #expect(points.map(\.sendRates) == [[], [100], [200], [200]])
        #expect(points.map(\.clients) == [2, 3, 3, 1])
        #expect(points.last?.at == 1_800_000_025)
        // A live reading less than a second after the last point is left out.
        #expect(sampler.points(now: reading(20.5, acknowledged: 3100)).count == 3)
        #expect(StatusSampler().points(now: reading(3, depth: 7)).map(\.depths) == [[7]])
    }
}

@Suite struct StatusArithmeticTests {
    @Test func timeToDrain() {
        #expect(StatusArithmetic.timeToDrain(depth: 0, drainRate: nil) == 0)
        #expect(StatusArithmetic.timeToDrain(depth: 20_000, drainRate: 1000) == 20)
        #expect(StatusArithmetic.timeToDrain(depth: 20_000, drainRate: 0) == nil)
        #expect(StatusArithmetic.timeToDrain(depth: 20_000, drainRate: nil) == nil)
        #expect(StatusArithmetic.timeToDrain(depth: 20_000, drainRate: .infinity) == nil)
        #expect(StatusArithmetic.timeToDrain(depth: 20_000, drainRate: .nan) == nil)
    }

    @Test func rateOfACounter() {
        #expect(StatusArithmetic.rate(from: 100, to: 700, seconds: 60) == 10)
        #expect(StatusArithmetic.rate(from: 700, to: 100, seconds: 60) == 0)  // never negative
        #expect(StatusArithmetic.rate(from: 0, to: 10, seconds: 0.1) == nil)
        #expect(StatusArithmetic.rate(from: 0, to: 10, seconds: .nan) == nil)
    }

    @Test func boundsListOnlyWhatIsSet() {
        let bounds = StatusArithmetic.bounds(
            depth: 20_000,
            bytes: 1 << 20,
            oldestAgeSeconds: 90,
            maxMessages: 1_000_000,
            maxBytes: 0,
            maxAgeSeconds: 3600
        )
        #expect(bounds.map(\.key) == ["queue_max_messages", "queue_max_age"])
        #expect(bounds.map(\.percent) == [2, 2.5])
        #expect(StatusArithmetic.percent(5, of: 0) == nil)
        #expect(StatusArithmetic.percent(5, of: -1) == nil)
        #expect(StatusArithmetic.percent(.infinity, of: 10) == nil)
        #expect(StatusArithmetic.ageSeconds(enqueuedAt: 1000, now: 101_000) == 100)
        #expect(StatusArithmetic.ageSeconds(enqueuedAt: 5000, now: 1000) == 0)  // a clock stepped back
        #expect(StatusArithmetic.ageSeconds(enqueuedAt: nil, now: 1000) == nil)
    }

    @Test func storeUsage() {
        let usage = StoreUsage(path: "/x", fileBytes: 256 << 20, maxBytes: 1 << 30)
        #expect(usage.percent == 25)
        #expect(StoreUsage(path: "/x", fileBytes: 5, maxBytes: 0).percent == 0)
    }
}

@Suite struct StatusFormatTests {
    @Test func numbers() {
        #expect(StatusFormat.count(0) == "0")
        #expect(StatusFormat.count(999) == "999")
        #expect(StatusFormat.count(1000) == "1,000")
        #expect(StatusFormat.count(20_000) == "20,000")
        #expect(StatusFormat.count(1_234_567) == "1,234,567")
        #expect(StatusFormat.bytes(512) == "512 B")
        #expect(StatusFormat.bytes(1536) == "1.5 KiB")
        #expect(StatusFormat.bytes(1 << 30) == "1.0 GiB")
        #expect(StatusFormat.rate(2.5) == "2.5/s")
        #expect(StatusFormat.rate(1234.4) == "1,234/s")
        #expect(StatusFormat.rate(-3) == "0/s")
        #expect(StatusFormat.rate(nil) == "-")
        #expect(StatusFormat.rate(.nan) == "-")
        #expect(StatusFormat.percent(2.456) == "2.5 %")
        #expect(StatusFormat.percent(0.004) == "<0.1 %")
        #expect(StatusFormat.percent(0) == "0.0 %")
    }

    @Test func durations() {
        #expect(StatusFormat.duration(0) == "0 s")
        #expect(StatusFormat.duration(45) == "45 s")
        #expect(StatusFormat.duration(100) == "1 min 40 s")
        #expect(StatusFormat.duration(120) == "2 min")
        #expect(StatusFormat.duration(7500) == "2 h 5 min")
        #expect(StatusFormat.duration(3600) == "1 h")
        #expect(StatusFormat.duration(3 * 86400 + 4 * 3600 + 59) == "3 d 4 h")
        #expect(StatusFormat.duration(-5) == "0 s")
        #expect(StatusFormat.duration(.infinity) == "-")
        #expect(StatusFormat.time(0) == "1970-01-01 00:00:00 UTC")
    }
}

/// An outage: the link down for 100 s with 20,000 queued; and the same bridge draining.
private func outageSnapshot(depths: [UInt64], name: String = "central") -> GatewayStatusSnapshot {
    let now = 1_800_000_100.0
    var bridge = BridgeStatus(
        name: name,
        state: .disconnected,
        stateSince: now - 100,
        address: "127.0.0.1:1884",
        depth: depths.last ?? 0,
        bytes: 8_500_000,
        oldestAgeSeconds: 100,
        bounds: [BoundUsage(key: "queue_max_messages", used: 20_000, limit: 1_000_000)],
        deadLetters: 0,
        lastError: "connection refused",
        lastErrorSince: now - 100
    )
    bridge.sendRate = 0
    bridge.queueRate = 200
    bridge.drainRate = -200
    let history = depths.enumerated().map { index, depth in
        HistoryPoint(at: now - Double(depths.count - index) * 10, clients: 1, depths: [depth], sendRates: [0])
    }
    return GatewayStatusSnapshot(
        source: .gateway,
        version: "0.1.0",
        generatedAt: now,
        startedAt: now - 300,
        listeners: ["mqtt 127.0.0.1:1883", "metrics http://127.0.0.1:9100/"],
        clients: 1,
        store: StoreUsage(path: "/var/lib/sluice/sluice.db", fileBytes: 16 << 20, maxBytes: 1 << 30),
        bridges: [bridge],
        history: history
    )
}

@Suite struct StatusRenderingTests {
    @Test func textShowsLinkDownDepthAgeAndError() {
        let text = outageSnapshot(depths: [5000, 10_000, 20_000]).text
        #expect(text.contains("sluice 0.1.0 · up 5 min · 1 client connected"))
        #expect(text.contains("bridge central: link DOWN since 2027-01-15 08:00:00 UTC (1 min 40 s) · 127.0.0.1:1884"))
        #expect(text.contains("20,000 messages · 8.1 MiB · oldest 1 min 40 s"))
        #expect(text.contains("queue_max_messages 2.0 %"))
        #expect(text.contains("not draining (growing 200/s)"))
        #expect(text.contains("error    connection refused"))
        #expect(text.contains("store: /var/lib/sluice/sluice.db: 16.0 MiB of 1.0 GiB (1.6 %)"))
    }

    @Test func textOfADrain() {
        var snapshot = outageSnapshot(depths: [20_000, 15_000])
        snapshot.bridges[0].state = .connected
        snapshot.bridges[0].lastError = nil
        snapshot.bridges[0].depth = 15_000
        snapshot.bridges[0].sendRate = 1000
        snapshot.bridges[0].drainRate = 800
        snapshot.bridges[0].drainSeconds = StatusArithmetic.timeToDrain(depth: 15_000, drainRate: 800)
        let text = snapshot.text
        #expect(text.contains("link up since"))
        #expect(text.contains("sent 1,000/s · received - · queued 200/s (last minute)"))
        #expect(text.contains("drain    800/s · empty in 19 s"))
        #expect(!text.contains("error "))
    }

    @Test func textFromTheStoreSaysTheGatewayIsNotAnswering() {
        let snapshot = GatewayStatusSnapshot(
            source: .store,
            generatedAt: 1_800_000_000,
            bridges: [BridgeStatus(name: "central", state: .unknown, depth: 3, bytes: 300)],
            gatewayUnreachable: "127.0.0.1:9100: connection refused"
        )
        let text = snapshot.text
        #expect(
            text.hasPrefix("gateway not answering (127.0.0.1:9100: connection refused): showing the store, read-only")
        )
        #expect(text.contains("bridge central: link state unknown (gateway not answering)"))
        #expect(text.contains("3 messages · 300 B"))
        #expect(!text.contains("  rates "))
        var paused = snapshot
        paused.bridges[0].paused = true
        #expect(
            paused.text.contains(
                "bridge central: link state unknown (gateway not answering), PAUSED (sluice queue resume)"
            )
        )
    }

    @Test func jsonRoundTripsWithSnakeCaseKeys() throws {
        let snapshot = outageSnapshot(depths: [1, 2, 3])
        let data = try snapshot.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"oldest_age_seconds\":100"))
        #expect(text.contains("\"state\":\"disconnected\""))
        #expect(text.contains("\"gateway_unreachable\"") == false)
        #expect(try GatewayStatusSnapshot(json: data) == snapshot)
        #expect(throws: (any Error).self) { try GatewayStatusSnapshot(json: Data("{\"source\":\"mars\"}".utf8)) }
        #expect(throws: (any Error).self) { try GatewayStatusSnapshot(json: Data("not json".utf8)) }
    }

    @Test func pageShowsEachBridgeWithoutScriptsOrAssets() {
        var snapshot = outageSnapshot(depths: Array(repeating: 20_000, count: 360))
        var second = snapshot.bridges[0]
        second.name = "backup"
        second.depth = 7
        snapshot.bridges.append(second)
        snapshot.history = snapshot.history.map {
            HistoryPoint(at: $0.at, clients: $0.clients, depths: [20_000, 7], sendRates: [0, 0])
        }
        let html = StatusPage.html(snapshot)
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("src="))
        #expect(!html.contains("<link"))
        #expect(html.contains("<meta http-equiv=\"refresh\""))
        #expect(html.contains("data-bridge=\"central\" data-depth=\"20000\""))
        #expect(html.contains("data-bridge=\"backup\" data-depth=\"7\""))
        #expect(html.contains("<td class=\"depth\">20,000 messages"))
        #expect(html.contains("id=\"bridge-0-depth\""))
        #expect(html.contains("id=\"bridge-1-drain\""))
        #expect(html.contains("id=\"clients-graph\""))
        // An hour of history for two bridges stays a few KB.
        #expect(html.utf8.count < 10_000, "page is \(html.utf8.count) bytes")
    }

    @Test func pageEscapesNamesAndErrors() {
        var snapshot = outageSnapshot(depths: [1, 2], name: "<script>alert(1)</script>")
        snapshot.bridges[0].lastError = "bad \"quote\" & <tag>"
        let html = StatusPage.html(snapshot)
        #expect(!html.contains("<script>"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("bad &quot;quote&quot; &amp; &lt;tag&gt;"))
    }

    @Test func depthGraphFollowsTheHistory() {
        let growing = StatusPage.html(outageSnapshot(depths: [0, 5000, 10_000, 20_000]))
        let drained = StatusPage.html(outageSnapshot(depths: [20_000, 10_000, 0, 0]))
        func depthLine(_ html: String) -> String? {
            guard let graph = html.range(of: "id=\"bridge-0-depth\""),
                let points = html.range(of: "points=\"", range: graph.upperBound..<html.endIndex),
                let end = html.range(of: "\"", range: points.upperBound..<html.endIndex)
            else { return nil }
            return String(html[points.upperBound..<end.lowerBound])
        }
        #expect(depthLine(growing) == "0.0,58.0 100.0,44.0 200.0,30.0 300.0,2.0")
        #expect(depthLine(drained) == "0.0,2.0 100.0,30.0 200.0,58.0 300.0,58.0")
        #expect(StatusPage.html(outageSnapshot(depths: [5])).contains("collecting samples"))
    }

    @Test func downsamplingKeepsPeaks() {
        var values = Array(repeating: 1.0, count: 360)
        values[123] = 50
        let thinned = StatusPage.downsample(values, to: 60)
        #expect(thinned.count == 60)
        #expect(thinned.max() == 50)
        #expect(StatusPage.downsample([1, 2, 3], to: 60) == [1, 2, 3])
        #expect(StatusPage.downsample([1, 2, 3], to: 0) == [1, 2, 3])
    }
}

@Suite struct StatusClientTests {
    @Test func errorsReadAsOneShortPhrase() {
        #expect(
            StatusClient.describe(IOError(errnoCode: ECONNREFUSED, reason: "connect"), timeout: .seconds(3))
                == "connection refused"
        )
        #expect(
            StatusClient.describe(ChannelError.connectTimeout(.seconds(3)), timeout: .seconds(3))
                == "no answer within 3 s"
        )
    }
}
