import Foundation
import NIOCore
import SluiceConfig
import Testing

@testable import SluiceServer

@Suite struct LogTextTests {
    @Test func addressesReadAsHostColonPort() throws {
        #expect(try SocketAddress(ipAddress: "127.0.0.1", port: 49380).logText == "127.0.0.1:49380")
        #expect(try SocketAddress(ipAddress: "::1", port: 1883).logText == "[::1]:1883")
        #expect((nil as SocketAddress?).logText == "?")
    }

    @Test func networkErrorsInPlainWords() {
        #expect(NetworkErrorText.describe(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == "connection refused")
        #expect(NetworkErrorText.describe(IOError(errnoCode: ECONNRESET, reason: "read")) == "connection reset by peer")
        #expect(
            NetworkErrorText.describe(ChannelError.connectTimeout(.seconds(10)))
                == "no answer within 10 s (connect timeout)"
        )
        #expect(NetworkErrorText.describe(ChannelError.eof) == "connection closed by the peer")
    }
}

@Suite struct ReloadReportTests {
    private func config(_ text: String) throws -> GatewayConfig {
        try GatewayConfig.parse(text, fileName: "gw.conf")
    }

    private let base = """
        listener 1883 127.0.0.1
        connection central
        address 127.0.0.1:1884
        topic a/# out 1

        """

    @Test func topicRulesAreAppliedAndNothingNeedsARestart() throws {
        let report = ReloadReport(running: try config(base), fresh: try config(base + "topic b/# out 1\n"))
        #expect(report.applied == ["password file", "ACL file", "bridge central topic rules"])
        #expect(report.needsRestart.isEmpty)
        #expect(report.lines.needsRestart == nil)
    }

    @Test func newBridgeListenerAndMetricsListenerNeedARestart() throws {
        let fresh = try config(
            base
                + "metrics_listener 9100 127.0.0.1\nlistener 1885 127.0.0.1\nconnection second\naddress 127.0.0.1:1886\ntopic c/# out 1\n"
        )
        let report = ReloadReport(running: try config(base), fresh: fresh)
        #expect(report.needsRestart.contains("new bridge second (not started)"))
        #expect(report.needsRestart.contains("listener 127.0.0.1:1885 (mqtt) (not opened)"))
        #expect(report.needsRestart.contains("metrics_listener 127.0.0.1:9100 (the running one is none)"))
        let line = try #require(report.lines.needsRestart)
        #expect(line.hasPrefix("configuration reloaded, but these need a restart: "))
    }

    @Test func otherSettingsAreNamedAsInTheFile() throws {
        let report = ReloadReport(running: try config(base), fresh: try config("max_connections 5\n" + base))
        #expect(report.needsRestart == ["max_connections"])
    }
}
