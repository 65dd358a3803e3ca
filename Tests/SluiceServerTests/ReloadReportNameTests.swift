import SluiceConfig
import Testing

@testable import SluiceServer

// What a SIGHUP says about settings it does not apply: gateway.conf's own spelling of each key.

@Suite struct ReloadReportNameTests {
    @Test(arguments: [
        ("maxConnections", "max_connections"), ("upgradeOutgoingQoS", "upgrade_outgoing_qos"),
        ("maxQoS", "max_qos"), ("queueQoS0Messages", "queue_qos0_messages"),
        ("checkRetainSource", "check_retain_source"), ("logTimestampFormat", "log_timestamp_format"),
    ])
    func settingNamesAreTheKeys(_ pair: (String, String)) {
        #expect(ReloadReport.snakeCase(pair.0) == pair.1)
    }

    @Test func brokerKeysChangedOnReloadWaitForARestart() throws {
        var fresh = GatewayConfig.default
        fresh.logTimestamp = false
        fresh.upgradeOutgoingQoS = true
        fresh.maxInflightBytes = 100
        fresh.checkRetainSource = true
        let report = ReloadReport(running: .default, fresh: fresh)
        let line = try #require(report.lines.needsRestart)
        for key in ["log_timestamp", "upgrade_outgoing_qos", "max_inflight_bytes", "check_retain_source"] {
            #expect(line.contains(key), "\(line)")
        }
    }
}
