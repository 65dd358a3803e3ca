import MQTTCore
import Testing

@testable import SluiceBroker

/// Every way a connected client leaves is reported once, with why (the disconnect log line).
@Suite struct DepartureTests {
    @Test func disconnectPacketIsReportedWithItsReasonCode() {
        let h = Harness()
        h.connect(1, "a")
        #expect(h.broker.takeDepartures().isEmpty)
        h.receive(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)), from: 1)
        h.closed(1)  // the socket closes afterwards: not a second departure
        let departures = h.broker.takeDepartures()
        #expect(
            departures == [
                Departure(
                    connection: ConnectionID(1),
                    clientID: "a",
                    protocolVersion: .v5,
                    reason: .clientDisconnect(.disconnectWithWillMessage)
                )
            ]
        )
        #expect("\(departures[0].reason)" == "DISCONNECT 0x4 (disconnect with will message)")
        #expect(h.broker.takeDepartures().isEmpty)
    }

    @Test func socketClosedWithoutDisconnect() {
        let h = Harness()
        h.connect(1, "a", version: .v3_1_1)
        h.closed(1)
        #expect(h.broker.takeDepartures().map(\.reason) == [.socketClosed])
    }

    @Test func keepAliveTimeout() {
        let h = Harness()
        h.connect(1, "a", keepAlive: 10)
        h.advance(seconds: 16)
        #expect(h.broker.takeDepartures().map(\.reason) == [.keepAliveTimeout])
    }

    @Test func takeoverNamesTheOldConnection() {
        let h = Harness()
        h.connect(1, "a")
        h.connect(2, "a")
        let departures = h.broker.takeDepartures()
        #expect(departures.map(\.connection) == [ConnectionID(1)])
        #expect(departures.map(\.reason) == [.takenOver])
    }

    @Test func protocolErrorSaysWhich() {
        let h = Harness()
        h.connect(1, "a")
        h.receive(
            .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "a", cleanStart: true, keepAlive: 0)),
            from: 1
        )
        #expect(h.broker.takeDepartures().map(\.reason) == [.protocolError("second CONNECT")])
    }

    @Test func refusedConnectIsNoDeparture() {
        let h = Harness { $0.maxConnections = 1 }
        h.connect(1, "a")
        let refused = h.connect(2, "b")
        #expect(
            refused.contains(
                .send(ConnectionID(2), .connAck(ConnAckPacket(sessionPresent: false, reasonCode: .quotaExceeded)))
            )
        )
        h.closed(2)
        #expect(h.broker.takeDepartures().isEmpty)
    }
}
