import Testing

@testable import SluiceServer

@Suite struct MetricsPageTests {
    @Test func familiesAreSortedByNameAndSamplesByLabelsWhateverTheOrderAdded() {
        var first = MetricsPage()
        first.gauge("sluice_b", "B", 2, labels: [("bridge", "zeta")])
        first.gauge("sluice_b", "B", 1, labels: [("bridge", "alpha")])
        first.counter("sluice_a_total", "A", 7)
        var second = MetricsPage()
        second.counter("sluice_a_total", "A", 7)
        second.gauge("sluice_b", "B", 1, labels: [("bridge", "alpha")])
        second.gauge("sluice_b", "B", 2, labels: [("bridge", "zeta")])
        let expected = """
            # HELP sluice_a_total A
            # TYPE sluice_a_total counter
            sluice_a_total 7
            # HELP sluice_b B
            # TYPE sluice_b gauge
            sluice_b{bridge="alpha"} 1
            sluice_b{bridge="zeta"} 2

            """
        #expect(first.render() == expected)
        #expect(second.render() == expected)
    }

    @Test func integersPrintAsIntegersAndRealsKeepTheirFraction() {
        #expect(MetricsPage.Value.integer(0).text == "0")
        #expect(MetricsPage.Value.integer(-3).text == "-3")
        #expect(MetricsPage.Value.real(0).text == "0")
        #expect(MetricsPage.Value.real(1_796_490_441).text == "1796490441")
        #expect(MetricsPage.Value.real(0.25).text == "0.25")
        #expect(MetricsPage.Value.real(.infinity).text == "+Inf")
        #expect(MetricsPage.Value.real(-.infinity).text == "-Inf")
        #expect(MetricsPage.Value.real(.nan).text == "NaN")
        var page = MetricsPage()
        page.gauge("g", "gauge", 0)
        #expect(page.render().hasSuffix("g 0\n"))
        #expect(!page.render().contains("0.0"))
    }

    @Test func labelValuesAndHelpAreEscaped() {
        var page = MetricsPage()
        page.gauge("g", "a \\ b\nc", 1, labels: [("bridge", "we\"ird\\na\nme")])
        #expect(page.render() == "# HELP g a \\\\ b\\nc\n# TYPE g gauge\ng{bridge=\"we\\\"ird\\\\na\\nme\"} 1\n")
    }

    @Test func aSampleAddedAgainReplacesTheFirst() {
        var page = MetricsPage()
        page.counter("c_total", "C", 1, labels: [("reason", "x")])
        page.counter("c_total", "C", 5, labels: [("reason", "x")])
        #expect(page.value("c_total", labels: [("reason", "x")]) == .integer(5))
        #expect(page.render().components(separatedBy: "c_total{").count == 2)
    }

    @Test func anAliasCopiesTheNewFamilyUnderTheOldNameAndSaysItIsDeprecated() {
        var page = MetricsPage()
        page.counter("sluice_received_bytes_total", "Bytes", 42)
        page.alias("sluice_bytes_received_total", of: "sluice_received_bytes_total")
        page.alias("sluice_gone_total", of: "sluice_never_added_total")
        let text = page.render()
        #expect(text.contains("# HELP sluice_bytes_received_total DEPRECATED: renamed sluice_received_bytes_total"))
        #expect(text.contains("# TYPE sluice_bytes_received_total counter\nsluice_bytes_received_total 42\n"))
        #expect(!text.contains("sluice_gone_total"))
        #expect(text.components(separatedBy: "# TYPE").count == 3)
    }

    @Test func metricNamesFollowTheTextFormat() {
        #expect(MetricsPage.isValidName("sluice_bridge_queue_depth"))
        #expect(MetricsPage.isValidName("a:b_c9"))
        #expect(!MetricsPage.isValidName("9lives"))
        #expect(!MetricsPage.isValidName("has-dash"))
        #expect(!MetricsPage.isValidName(""))
    }
}

@Suite struct ProcessMetricsTests {
    // A command name with spaces and a parenthesis, as a renamed thread can have.
    let stat =
        "4242 (sluice (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 50 0 0 20 0 9 0 12000 773627904 9153 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0\n"

    @Test func statFieldsAreCountedAfterTheCommandName() throws {
        let metrics = try #require(
            ProcessMetrics.parse(stat: stat, clockTicks: 100, pageSize: 4096, bootTime: 1_700_000_000)
        )
        #expect(metrics.cpuSeconds == 2.0)  // (150 + 50) ticks / 100
        #expect(metrics.startTimeSeconds == 1_700_000_120)  // boot + 12000 / 100
        #expect(metrics.virtualBytes == 773_627_904)
        #expect(metrics.residentBytes == 9153 * 4096)
    }

    @Test func truncatedOrGarbledStatIsNil() {
        #expect(
            ProcessMetrics.parse(stat: "4242 (sluice) S 1 2 3", clockTicks: 100, pageSize: 4096, bootTime: 0) == nil
        )
        #expect(
            ProcessMetrics.parse(stat: "no parenthesis at all", clockTicks: 100, pageSize: 4096, bootTime: 0) == nil
        )
        #expect(ProcessMetrics.parse(stat: "", clockTicks: 100, pageSize: 4096, bootTime: 0) == nil)
        let garbled = stat.replacingOccurrences(of: " 150 50 ", with: " x 50 ")
        #expect(ProcessMetrics.parse(stat: garbled, clockTicks: 100, pageSize: 4096, bootTime: 0) == nil)
    }

    @Test func bootTimeComesFromTheBtimeLine() {
        #expect(
            ProcessMetrics.bootTime(procStat: "cpu  1 2 3\nintr 5\nbtime 1796400000\nprocesses 9\n") == 1_796_400_000
        )
        #expect(ProcessMetrics.bootTime(procStat: "cpu  1 2 3\n") == nil)
        #expect(ProcessMetrics.bootTime(procStat: "btime soon\n") == nil)
    }

    @Test func thisProcessReportsEveryProcessFamily() throws {
        let metrics = try #require(ProcessMetrics.current())
        var page = MetricsPage()
        metrics.report(into: &page)
        #expect(
            page.familyNames == [
                "process_cpu_seconds_total", "process_max_fds", "process_open_fds", "process_resident_memory_bytes",
                "process_start_time_seconds", "process_virtual_memory_bytes",
            ]
        )
        #expect(metrics.residentBytes > 0)
    }
}

@Suite struct BridgeSystemTopicsTests {
    func figures(_ name: String, acknowledged: UInt64, received: UInt64 = 0, connected: Bool = true)
        -> BridgeSystemTopics.Figures
    {
        .init(
            name: name,
            connected: connected,
            paused: false,
            acknowledged: acknowledged,
            received: received,
            depth: 5,
            bytes: 500,
            oldestAgeSeconds: 12,
            deadLetters: 1
        )
    }

    @Test func firstReportHasEveryTopicAndZeroRates() {
        var topics = BridgeSystemTopics()
        let out = topics.topics([figures("central", acknowledged: 100, connected: false)], seconds: 10)
        #expect(
            out.map(\.topic) == [
                "sluice/bridges/central/state", "sluice/bridges/central/queue/depth",
                "sluice/bridges/central/queue/bytes",
                "sluice/bridges/central/queue/oldest_age", "sluice/bridges/central/messages/sent",
                "sluice/bridges/central/messages/received", "sluice/bridges/central/rate/sent",
                "sluice/bridges/central/rate/received", "sluice/bridges/central/dead_letters",
            ]
        )
        #expect(out.map(\.value) == ["disconnected", "5", "500", "12", "100", "0", "0.00", "0.00", "1"])
    }

    @Test func ratesAreTheGrowthOverTheElapsedTimePerBridge() {
        var topics = BridgeSystemTopics()
        _ = topics.topics([figures("a", acknowledged: 100), figures("b", acknowledged: 0)], seconds: 10)
        let out = topics.topics(
            [figures("a", acknowledged: 150, received: 20), figures("b", acknowledged: 0)],
            seconds: 20
        )
        let values = Dictionary(out.map { ($0.topic, $0.value) }, uniquingKeysWith: { first, _ in first })
        #expect(values["sluice/bridges/a/rate/sent"] == "5.00")
        #expect(values["sluice/bridges/a/rate/received"] == "2.00")
        #expect(values["sluice/bridges/b/rate/sent"] == "0.00")
        #expect(values["sluice/bridges/a/state"] == "connected")
    }

    @Test func aCounterThatWentBackOrNoTimePassedGivesNoNegativeOrInfiniteRate() {
        var topics = BridgeSystemTopics()
        _ = topics.topics([figures("a", acknowledged: 100)], seconds: 10)
        var out = topics.topics([figures("a", acknowledged: 40)], seconds: 20)
        #expect(out.first { $0.topic == "sluice/bridges/a/rate/sent" }?.value == "0.00")
        out = topics.topics([figures("a", acknowledged: 90)], seconds: 20)
        #expect(out.first { $0.topic == "sluice/bridges/a/rate/sent" }?.value == "0.00")
    }

    @Test func bridgeNamesBecomeOneTopicLevel() {
        #expect(BridgeSystemTopics.topicLevel("central") == "central")
        #expect(BridgeSystemTopics.topicLevel("a/b+c#") == "a_b_c_")
        #expect(BridgeSystemTopics.topicLevel("") == "_")
    }

    @Test func figuresTheStoreCouldNotGiveAreLeftOut() {
        var topics = BridgeSystemTopics()
        var unknown = figures("a", acknowledged: 0)
        unknown.depth = nil
        unknown.bytes = nil
        unknown.oldestAgeSeconds = nil
        unknown.deadLetters = nil
        let out = topics.topics([unknown], seconds: 1)
        #expect(!out.contains { $0.topic.contains("queue/") || $0.topic.hasSuffix("dead_letters") })
    }
}

@Suite struct MetricsPageDeclarationTests {
    @Test func aDeclaredFamilyPrintsHelpAndTypeUntilItHasSamples() {
        var page = MetricsPage()
        page.declare("sluice_bridge_rejected_total", .counter, "Refusals")
        #expect(
            page.render()
                == "# HELP sluice_bridge_rejected_total Refusals\n# TYPE sluice_bridge_rejected_total counter\n"
        )
        page.counter("sluice_bridge_rejected_total", "Refusals", 2, labels: [("reason", "0x87")])
        page.declare("sluice_bridge_rejected_total", .counter, "Refusals")
        #expect(page.render().hasSuffix("sluice_bridge_rejected_total{reason=\"0x87\"} 2\n"))
    }
}
