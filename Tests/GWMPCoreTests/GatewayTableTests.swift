import Foundation
import Testing

@testable import GWMPCore

/// Protocol traces: one event, the actions it must produce. Addresses are strings here.
@Suite struct GatewayTableTests {
    typealias Table = GatewayTable<String, SeededRandom>
    let wallClock: Int64 = 1_715_677_964_000  // Unix milliseconds
    let other = GatewayEUI(0x0016_c001_ff10_a235)

    private func table(timeout: Int64 = 30_000) -> Table {
        var settings = Table.Settings()
        settings.keepAliveTimeout = timeout
        return Table(settings: settings, random: SeededRandom())
    }

    private func packet(_ fixture: String) throws -> GWMPPacket { try GWMPCodec.decode(Fixtures.bytes(fixture)) }

    private func downlink(_ text: String = ConversionTests.classADownlink) throws -> DownlinkFrame {
        try ChirpStackJSONEncoding().decodeDownlink(Array(text.utf8))
    }

    @Test func pushDataIsAckedFirstThenOneUpPerRxpkAndStats() throws {
        var table = table()
        let actions = table.received(try packet("push_data_sx1302.bin"), from: "gw:1700", now: 0, wallClock: wallClock)
        #expect(actions.count == 4)
        guard case .send(.pushAck(let token), let to) = actions[0] else {
            Issue.record("first action is not PUSH_ACK: \(actions[0])")
            return
        }
        #expect(token == 0x5ee1)
        #expect(to == "gw:1700")
        let ups = actions.compactMap { action -> UplinkFrame? in
            if case .publish(.up(let frame), sampleGateway) = action { return frame }
            return nil
        }
        #expect(ups.count == 2)
        #expect(ups[0].rxInfo.uplinkId != ups[1].rxInfo.uplinkId)
        guard case .publish(.stats(let stats), sampleGateway) = actions[3] else {
            Issue.record("last action is not stats: \(actions[3])")
            return
        }
        #expect(stats.rxPacketsReceived == 2)
        // PUSH_DATA alone does not make a gateway online (only PULL_DATA opens the downlink path).
        #expect(table.onlineGateways.isEmpty)
    }

    @Test func badRxpkIsDroppedAlone() {
        var table = table()
        let body = PushDataBody(rxpk: [
            RXPK(freq: 868.1, modu: "LORA", datr: .lora("SF7BW125"), data: "AQID"),
            RXPK(freq: 868.1, modu: "LORA", datr: .lora("SF7BW125")),
        ])
        let actions = table.received(
            .pushData(token: 7, gateway: sampleGateway, body),
            from: "a",
            now: 0,
            wallClock: wallClock
        )
        #expect(actions.count == 3)
        guard case .dropped(.badRxpk, sampleGateway, _) = actions[2] else {
            Issue.record("expected a bad_rxpk drop: \(actions)")
            return
        }
    }

    @Test func pullDataAcksAndGoesOnlineOnce() {
        var table = table()
        var actions = table.received(
            .pullData(token: 1, gateway: sampleGateway),
            from: "a",
            now: 0,
            wallClock: wallClock
        )
        #expect(actions.count == 2)
        guard case .send(.pullAck(1), "a") = actions[0], case .publish(.conn(let state), sampleGateway) = actions[1]
        else {
            Issue.record("\(actions)")
            return
        }
        #expect(state == ConnState(gatewayId: "b827ebfffe6a1b2c", state: "ONLINE"))
        // A keep-alive from a new address (NAT rebinding): acked, address updated, no new state.
        actions = table.received(
            .pullData(token: 2, gateway: sampleGateway),
            from: "b",
            now: 10_000,
            wallClock: wallClock
        )
        #expect(actions.count == 1)
        #expect(table.address(of: sampleGateway) == "b")
    }

    @Test func keepAliveTimeoutGoesOfflineAndComesBack() {
        var table = table(timeout: 30_000)
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        _ = table.received(.pullData(token: 1, gateway: other), from: "c", now: 20_000, wallClock: wallClock)
        #expect(table.tick(now: 30_000).isEmpty)
        let actions = table.tick(now: 30_001)
        #expect(actions.count == 1)
        guard case .publish(.conn(let state), sampleGateway) = actions.first else {
            Issue.record("\(actions)")
            return
        }
        #expect(state.state == "OFFLINE")
        #expect(table.onlineGateways == [other])
        #expect(table.tick(now: 40_000).isEmpty)  // offline is said once
        let back = table.received(
            .pullData(token: 9, gateway: sampleGateway),
            from: "a",
            now: 41_000,
            wallClock: wallClock
        )
        #expect(back.count == 2)
    }

    @Test func downlinkGoesToThePullAddressAndTxAckMakesAnAckEvent() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        _ = table.received(.pullData(token: 2, gateway: sampleGateway), from: "b", now: 1_000, wallClock: wallClock)
        let actions = table.downlink(try downlink(), for: sampleGateway, now: 1_100)
        #expect(actions.count == 1)
        guard case .send(.pullResp(let token, let body), "b") = actions.first else {
            Issue.record("\(actions)")
            return
        }
        #expect(body.txpk.tmst == 2_413_069_003)
        #expect(table.pendingDownlinkCount == 1)

        let acked = table.received(
            .txAck(token: token, gateway: sampleGateway, TxAckBody(txpkAck: TxPkAck(error: "NONE"))),
            from: "b",
            now: 1_200,
            wallClock: wallClock
        )
        guard case .publish(.ack(let ack), sampleGateway) = acked.first else {
            Issue.record("\(acked)")
            return
        }
        #expect(ack.downlinkId == 3_167_237_102)
        #expect(ack.items.map(\.status) == [.ok, .ignored])
        #expect(table.pendingDownlinkCount == 0)
        // The same TX_ACK again matches nothing.
        let again = table.received(
            .txAck(token: token, gateway: sampleGateway, nil),
            from: "b",
            now: 1_300,
            wallClock: wallClock
        )
        guard case .dropped(.unknownTxAck, _, _) = again.first else {
            Issue.record("\(again)")
            return
        }
    }

    @Test func txAckErrorTriesTheNextItem() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        guard case .send(.pullResp(let first, _), _) = table.downlink(try downlink(), for: sampleGateway, now: 0).first
        else {
            Issue.record("no PULL_RESP")
            return
        }
        let tooLate = TxAckBody(txpkAck: TxPkAck(error: "TOO_LATE"))
        let retry = table.received(
            .txAck(token: first, gateway: sampleGateway, tooLate),
            from: "a",
            now: 5,
            wallClock: wallClock
        )
        guard case .send(.pullResp(let second, let rx2), "a") = retry.first, retry.count == 1 else {
            Issue.record("\(retry)")
            return
        }
        #expect(second != first)
        #expect(rx2.txpk.datr == .lora("SF12BW125"))
        let collision = TxAckBody(txpkAck: TxPkAck(error: "COLLISION_PACKET"))
        let done = table.received(
            .txAck(token: second, gateway: sampleGateway, collision),
            from: "a",
            now: 9,
            wallClock: wallClock
        )
        guard case .publish(.ack(let ack), _) = done.first else {
            Issue.record("\(done)")
            return
        }
        #expect(ack.items.map(\.status) == [.tooLate, .collisionPacket])
    }

    @Test func txAckWithoutBodyOrWithWarningIsOK() throws {
        for body in [nil, TxAckBody(txpkAck: TxPkAck(warn: "TX_POWER", value: 20))] {
            var table = table()
            _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
            guard
                case .send(.pullResp(let token, _), _) = table.downlink(try downlink(), for: sampleGateway, now: 0)
                    .first
            else {
                Issue.record("no PULL_RESP")
                return
            }
            let done = table.received(
                .txAck(token: token, gateway: sampleGateway, body),
                from: "a",
                now: 1,
                wallClock: wallClock
            )
            guard case .publish(.ack(let ack), _) = done.first else {
                Issue.record("\(done)")
                return
            }
            #expect(ack.items.map(\.status) == [.ok, .ignored])
        }
    }

    @Test func txAckFromAnotherGatewayDoesNotMatch() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        guard case .send(.pullResp(let token, _), _) = table.downlink(try downlink(), for: sampleGateway, now: 0).first
        else {
            Issue.record("no PULL_RESP")
            return
        }
        let wrong = table.received(.txAck(token: token, gateway: other, nil), from: "a", now: 1, wallClock: wallClock)
        guard case .dropped(.unknownTxAck, _, _) = wrong.first else {
            Issue.record("\(wrong)")
            return
        }
        #expect(table.pendingDownlinkCount == 1)
    }

    @Test func downlinkRefusals() throws {
        var table = table()
        let offline = table.downlink(try downlink(), for: sampleGateway, now: 0)
        guard case .dropped(.gatewayOffline, sampleGateway, _) = offline.first else {
            Issue.record("\(offline)")
            return
        }
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        let mismatch = table.downlink(try downlink(), for: other, now: 0)
        guard case .dropped(.badDownlink, _, _) = mismatch.first else {
            Issue.record("\(mismatch)")
            return
        }
        let empty = table.downlink(DownlinkFrame(downlinkId: 5, items: []), for: sampleGateway, now: 0)
        guard case .dropped(.badDownlink, _, _) = empty.first else {
            Issue.record("\(empty)")
            return
        }
    }

    @Test func unconvertibleFirstItemFallsThroughToTheNext() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        var frame = try downlink()
        frame.items[0].txInfo.context = nil  // delay timing without context cannot be sent
        frame.items[1].txInfo.timing = Timing(immediately: .init())
        let actions = table.downlink(frame, for: sampleGateway, now: 0)
        #expect(actions.count == 2)
        guard case .dropped(.badDownlink, _, _) = actions[0],
            case .send(.pullResp(let token, let body), "a") = actions[1]
        else {
            Issue.record("\(actions)")
            return
        }
        #expect(body.txpk.imme == true)
        let done = table.received(
            .txAck(token: token, gateway: sampleGateway, nil),
            from: "a",
            now: 1,
            wallClock: wallClock
        )
        guard case .publish(.ack(let ack), _) = done.first else {
            Issue.record("\(done)")
            return
        }
        #expect(ack.items.map(\.status) == [.internalError, .ok])
    }

    @Test func noItemConvertsMeansAnAckWithErrorsAtOnce() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        var frame = try downlink()
        frame.items = frame.items.map { item in
            var item = item
            item.txInfo.context = nil
            return item
        }
        let actions = table.downlink(frame, for: sampleGateway, now: 0)
        guard case .publish(.ack(let ack), _) = actions.last else {
            Issue.record("\(actions)")
            return
        }
        #expect(ack.items.map(\.status) == [.internalError, .internalError])
        #expect(table.pendingDownlinkCount == 0)
    }

    @Test func unansweredDownlinksAreForgotten() throws {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        _ = table.downlink(try downlink(), for: sampleGateway, now: 0)
        _ = table.received(.pullData(token: 2, gateway: sampleGateway), from: "a", now: 25_000, wallClock: wallClock)
        let actions = table.tick(now: 30_001)
        guard case .dropped(.downlinkAckTimeout, _, _) = actions.first else {
            Issue.record("\(actions)")
            return
        }
        #expect(table.pendingDownlinkCount == 0)
    }

    @Test func serverPacketsFromAGatewayAreDropped() throws {
        var table = table()
        for fixture in ["push_ack.bin", "pull_ack.bin", "pull_resp_class_a.bin"] {
            let actions = table.received(try packet(fixture), from: "a", now: 0, wallClock: wallClock)
            guard case .dropped(.unexpectedPacket, nil, _) = actions.first, actions.count == 1 else {
                Issue.record("\(fixture): \(actions)")
                return
            }
        }
    }

    @Test func tablesAreBounded() throws {
        var settings = Table.Settings()
        settings.maximumGateways = 1
        settings.maximumPendingDownlinks = 1
        var table = Table(settings: settings, random: SeededRandom())
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        let full = table.received(.pullData(token: 1, gateway: other), from: "c", now: 0, wallClock: wallClock)
        guard case .dropped(.tableFull, _, _) = full.first, full.count == 1 else {
            Issue.record("\(full)")
            return
        }
        _ = table.downlink(try downlink(), for: sampleGateway, now: 0)
        let second = table.downlink(try downlink(), for: sampleGateway, now: 0)
        guard case .dropped(.tableFull, _, _) = second.first else {
            Issue.record("\(second)")
            return
        }
    }

    @Test func shutdownSaysOfflineForEveryOnlineGateway() {
        var table = table()
        _ = table.received(.pullData(token: 1, gateway: other), from: "c", now: 0, wallClock: wallClock)
        _ = table.received(.pullData(token: 1, gateway: sampleGateway), from: "a", now: 0, wallClock: wallClock)
        let actions = table.shutdown()
        let states = actions.compactMap { action -> String? in
            if case .publish(.conn(let state), _) = action { return "\(state.gatewayId) \(state.state)" }
            return nil
        }
        #expect(states == ["0016c001ff10a235 OFFLINE", "b827ebfffe6a1b2c OFFLINE"])
        #expect(table.onlineGateways.isEmpty)
    }
}
