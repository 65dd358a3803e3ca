import MQTTCore
import Testing

@testable import SluiceBridge

private struct Cause: Error, CustomStringConvertible {
    var description: String
}

/// The bridge's log lines read as a person wants them: the address, the cause, the retry delay, once.
@Suite struct LogLineTests {
    private func labelled() -> BridgeLinkConfiguration {
        var configuration = config(addresses: 2)
        configuration.addressLabels = ["127.0.0.1:1884", "[::1]:1885"]
        return configuration
    }

    @Test func refusedConnectionNamesAddressCauseAndRetryDelay() throws {
        var h = Harness(labelled())
        _ = h.link.start()
        let closed = h.link.connectionClosed(error: Cause(description: "connection refused"))
        let delay = try #require(closed.scheduledDelay)
        #expect(closed.logs == ["bridge cloud (127.0.0.1:1884): connection refused; retrying in \(delay.logText)"])
        #expect(h.link.statistics.connectFailuresByReason == ["refused": 1])
    }

    @Test func repeatedFailuresAreSummedOncePerMinute() {
        var h = Harness(labelled())
        _ = h.link.start()
        var lines = h.link.connectionClosed(error: Cause(description: "connection refused")).logs
        for _ in 0..<5 {
            _ = h.link.reconnectTimerFired()
            lines += h.link.connectionClosed(error: Cause(description: "connection refused")).logs
        }
        #expect(lines.count == 1)
        let summary = h.advance(.seconds(61)).logs
        #expect(summary == ["bridge cloud: 5 more connection failures (connection refused) in the last 60 s"])
    }

    @Test func connectedIsOneLineWithTheAddress() {
        var h = Harness(labelled())
        let lines = h.connect().logs
        #expect(lines == ["bridge cloud (127.0.0.1:1884): connected (MQTT 3.1.1, window 3)"])
    }

    @Test func refusedConnAckIsOneLineWithTheReasonAndTheRetry() {
        var h = Harness(labelled())
        _ = h.link.start()
        _ = h.link.connected()
        #expect(h.link.received(.connAck(ConnAckPacket(reasonCode: .notAuthorized))).logs.isEmpty)
        let lines = h.link.connectionClosed().logs
        #expect(lines.count == 1)
        #expect(
            lines[0].hasPrefix(
                "bridge cloud (127.0.0.1:1884): CONNACK refused with reason 0x87 (not authorized); retrying in "
            )
        )
    }

    @Test func lostConnectionSaysLostAndTheCause() {
        var h = Harness(labelled())
        _ = h.connect()
        let lines = h.link.connectionClosed(error: Cause(description: "connection reset by peer")).logs
        #expect(lines.count == 1)
        #expect(
            lines[0].hasPrefix("bridge cloud (127.0.0.1:1884): connection lost: connection reset by peer; retrying in ")
        )
    }

    @Test func durationsReadInTenthsOfSeconds() {
        #expect(Duration.milliseconds(2_140).logText == "2.1 s")
        #expect(Duration.seconds(30).logText == "30.0 s")
        #expect(Duration.milliseconds(50).logText == "0.1 s")
    }
}

/// `seconds` after the start of a test.
private func at(_ seconds: Int64) -> TestInstant { TestInstant(seconds * 1_000_000_000) }

@Suite struct DrainProgressTests {
    @Test func startProgressAndEndWithCountAndRate() {
        var drain = DrainProgress<TestInstant>(name: "central", interval: .seconds(10))
        #expect(drain.update(now: at(0), depth: 0, delivered: 0, connected: false) == nil)
        #expect(
            drain.update(now: at(1), depth: 20_000, delivered: 0, connected: true)
                == "bridge central: draining 20000 queued messages"
        )
        // Before the interval: nothing said.
        #expect(drain.update(now: at(5), depth: 12_000, delivered: 8_000, connected: true) == nil)
        #expect(
            drain.update(now: at(11), depth: 10_000, delivered: 10_000, connected: true)
                == "bridge central: draining: 10000 sent, 10000 left, 1000 msg/s; about 10.0 s to go"
        )
        #expect(
            drain.update(now: at(21), depth: 0, delivered: 20_000, connected: true)
                == "bridge central: drain finished: 20000 messages in 20.0 s (1000 msg/s)"
        )
        #expect(!drain.isDraining)
        // Live traffic afterwards (a message or two queued at a time) is no drain.
        #expect(drain.update(now: at(22), depth: 3, delivered: 20_001, connected: true) == nil)
    }

    @Test func linkDownEndsTheDrainWithWhatIsLeft() {
        var drain = DrainProgress<TestInstant>(name: "central")
        _ = drain.update(now: at(0), depth: 500, delivered: 7, connected: true)
        #expect(
            drain.update(now: at(4), depth: 300, delivered: 207, connected: false)
                == "bridge central: drain stopped (link down) after 200 messages in 4.0 s; 300 left"
        )
        // The next connection with a backlog starts a new drain.
        #expect(
            drain.update(now: at(9), depth: 300, delivered: 207, connected: true)
                == "bridge central: draining 300 queued messages"
        )
    }

    @Test func fallingBehindWhileConnectedStartsADrain() {
        var drain = DrainProgress<TestInstant>(name: "central", threshold: 1000)
        _ = drain.update(now: at(0), depth: 0, delivered: 0, connected: true)
        #expect(drain.update(now: at(1), depth: 999, delivered: 0, connected: true) == nil)
        #expect(
            drain.update(now: at(2), depth: 1000, delivered: 0, connected: true)
                == "bridge central: draining 1000 queued messages"
        )
    }
}
