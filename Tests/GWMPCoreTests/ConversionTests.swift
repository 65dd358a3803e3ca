import Foundation
import Testing

@testable import GWMPCore

@Suite struct ConversionTests {
    let receivedAt: Int64 = 1_715_677_964_500  // Unix milliseconds

    private func pushData(_ fixture: String) throws -> PushDataBody {
        guard case .pushData(_, _, let body) = try GWMPCodec.decode(Fixtures.bytes(fixture)) else {
            throw ConversionError("\(fixture) is not PUSH_DATA")
        }
        return body
    }

    @Test func loraUplinkFields() throws {
        let rxpk = try #require(try pushData("push_data_sx1302.bin").rxpk?.first)
        let frame = try UplinkFrame(rxpk, gateway: sampleGateway, uplinkID: 42, receivedAt: receivedAt)
        let object = try json(ChirpStackJSONEncoding().encode(.up(frame)))
        #expect(object["phyPayload"] as? String == "QAEAACaAAQABn0ZsZ3IqXH3+fWu91hU=")
        let txInfo = try #require(object["txInfo"] as? [String: Any])
        #expect(txInfo["frequency"] as? Int == 868_500_000)
        let lora = try #require((txInfo["modulation"] as? [String: Any])?["lora"] as? [String: Any])
        #expect(lora["bandwidth"] as? Int == 125_000)
        #expect(lora["spreadingFactor"] as? Int == 7)
        #expect(lora["codeRate"] as? String == "CR_4_5")
        let rxInfo = try #require(object["rxInfo"] as? [String: Any])
        #expect(rxInfo["gatewayId"] as? String == "b827ebfffe6a1b2c")
        #expect(rxInfo["uplinkId"] as? Int == 42)
        #expect(rxInfo["gwTime"] as? String == "2024-05-14T09:12:44.218446Z")
        #expect(rxInfo["nsTime"] as? String == "2024-05-14T09:12:44.500Z")
        #expect(rxInfo["timeSinceGpsEpoch"] as? String == "1399713182.218s")
        #expect(rxInfo["rssi"] as? Int == -44)
        #expect(rxInfo["snr"] as? Double == 9.8)
        #expect(rxInfo["channel"] as? Int == 2)
        #expect(rxInfo["rfChain"] as? Int == 1)
        #expect(rxInfo["crcStatus"] as? String == "CRC_OK")
        // 2412069003 = 0x8FC5_408B, big-endian.
        #expect(rxInfo["context"] as? String == Data([0x8F, 0xC5, 0x40, 0x8B]).base64EncodedString())
    }

    @Test func crcErrorAndRssisFallback() throws {
        var rxpk = try #require(try pushData("push_data_sx1302.bin").rxpk?.last)
        rxpk.rssi = nil
        let frame = try UplinkFrame(rxpk, gateway: sampleGateway, uplinkID: 1, receivedAt: receivedAt)
        #expect(frame.rxInfo.crcStatus == "BAD_CRC")
        #expect(frame.rxInfo.rssi == -118)
        #expect(frame.txInfo.modulation.lora?.spreadingFactor == 12)
        rxpk.stat = 0
        #expect(
            try UplinkFrame(rxpk, gateway: sampleGateway, uplinkID: 1, receivedAt: receivedAt).rxInfo.crcStatus
                == "NO_CRC"
        )
    }

    @Test func fskUplinkAndProtocolTxtPayload() throws {
        let rxpk = try #require(try pushData("push_data_rxpk_protocol_txt.bin").rxpk)
        let lora = try UplinkFrame(rxpk[0], gateway: sampleGateway, uplinkID: 1, receivedAt: receivedAt)
        #expect(PayloadBase64.decode(lora.phyPayload)?.count == 32)
        #expect(lora.txInfo.frequency == 866_349_812)
        #expect(lora.txInfo.modulation.lora?.codeRate == "CR_4_6")
        let fsk = try UplinkFrame(rxpk[1], gateway: sampleGateway, uplinkID: 2, receivedAt: receivedAt)
        #expect(fsk.txInfo.modulation == Modulation(fsk: FskModulationInfo(datarate: 50000)))
        #expect(fsk.phyPayload == "VEVTVF9QQUNLRVRfMTIzNA==")
    }

    @Test(arguments: [
        RXPK(freq: 868.1, modu: "LORA", datr: .lora("SF7BW125")),  // no data
        RXPK(freq: 868.1, modu: "LORA", datr: .lora("SF7BW125"), data: "not base64!"),
        RXPK(modu: "LORA", datr: .lora("SF7BW125"), data: "AAAA"),  // no freq
        RXPK(freq: -1, modu: "LORA", datr: .lora("SF7BW125"), data: "AAAA"),
        RXPK(freq: 868.1, modu: "LORA", datr: .lora("SF99BW125"), data: "AAAA"),
        RXPK(freq: 868.1, modu: "LORA", datr: .lora("fast"), data: "AAAA"),
        RXPK(freq: 868.1, modu: "LORA", datr: .fsk(50000), data: "AAAA"),
        RXPK(freq: 868.1, modu: "FSK", datr: .lora("SF7BW125"), data: "AAAA"),
        RXPK(freq: 868.1, modu: "LR-FHSS", data: "AAAA"),
    ])
    func unusableRxpk(rxpk: RXPK) {
        #expect(throws: ConversionError.self) {
            try UplinkFrame(rxpk, gateway: sampleGateway, uplinkID: 1, receivedAt: receivedAt)
        }
    }

    @Test func statFromProtocolTxt() throws {
        let stat = try #require(try pushData("push_data_stat_protocol_txt.bin").stat)
        let stats = GatewayStats(stat, gateway: sampleGateway, receivedAt: receivedAt)
        let object = try json(ChirpStackJSONEncoding().encode(.stats(stats)))
        #expect(object["gatewayId"] as? String == "b827ebfffe6a1b2c")
        #expect(object["time"] as? String == "2014-01-12T08:59:28Z")
        #expect(object["rxPacketsReceived"] as? Int == 2)
        #expect(object["rxPacketsReceivedOk"] as? Int == 2)
        #expect(object["txPacketsReceived"] as? Int == 2)
        #expect(object["txPacketsEmitted"] as? Int == 2)
        let location = try #require(object["location"] as? [String: Any])
        #expect(location["latitude"] as? Double == 46.24)
        #expect(location["longitude"] as? Double == 3.2523)
        #expect(location["altitude"] as? Double == 145)
        #expect(location["source"] as? String == "GPS")
        #expect((object["metadata"] as? [String: String])?["rxfw"] == "2")
    }

    @Test func statWithoutTimeOrLocation() {
        let stats = GatewayStats(
            Stat(time: "yesterday", lati: 0, long: 0),
            gateway: sampleGateway,
            receivedAt: receivedAt
        )
        #expect(stats.time == "2024-05-14T09:12:44.500Z")
        #expect(stats.location == nil)
        #expect(stats.rxPacketsReceived == 0)
    }

    /// A downlink as ChirpStack v4 publishes it: RX1 with delay timing, RX2 as the fallback.
    static let classADownlink = """
        {"downlinkId":3167237102,"gatewayId":"b827ebfffe6a1b2c","items":[
         {"phyPayload":"YAEAACagAQABkFDrrZr9OEs=","txInfo":{"frequency":868500000,"power":14,
          "modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5","polarizationInversion":true}},
          "board":0,"antenna":0,"timing":{"delay":{"delay":"1s"}},"context":"j8VAiw=="}},
         {"phyPayload":"YAEAACagAQABkFDrrZr9OEs=","txInfo":{"frequency":869525000,"power":27,
          "modulation":{"lora":{"bandwidth":125000,"spreadingFactor":12,"codeRate":"CR_4_5","polarizationInversion":true}},
          "timing":{"delay":{"delay":"2s"}},"context":"j8VAiw=="}}]}
        """

    @Test func classADownlinkBecomesTxpk() throws {
        let frame = try ChirpStackJSONEncoding().decodeDownlink(Array(Self.classADownlink.utf8))
        #expect(frame.downlinkId == 3_167_237_102)
        #expect(frame.items.count == 2)
        let rx1 = try frame.items[0].txpk()
        #expect(rx1.tmst == 2_413_069_003)  // context tmst 2412069003 + 1 s
        #expect(rx1.imme == nil)
        #expect(rx1.freq == 868.5)
        #expect(rx1.powe == 14)
        #expect(rx1.modu == "LORA")
        #expect(rx1.datr == .lora("SF7BW125"))
        #expect(rx1.codr == "4/5")
        #expect(rx1.ipol == true)
        #expect(rx1.size == 17)
        #expect(rx1.data == "YAEAACagAQABkFDrrZr9OEs=")
        // The same txpk ChirpStack's bridge sent in the sample datagram.
        guard case .pullResp(_, let body) = try GWMPCodec.decode(Fixtures.bytes("pull_resp_class_a.bin")) else {
            Issue.record("fixture is not PULL_RESP")
            return
        }
        #expect(body.txpk == rx1)
        #expect(try frame.items[1].txpk().datr == .lora("SF12BW125"))
        #expect(try frame.items[1].txpk().tmst == 2_414_069_003)
    }

    @Test func timingVariants() throws {
        func item(_ timing: Timing?, context: String? = nil, fsk: Bool = false) -> DownlinkFrameItem {
            let modulation =
                fsk
                ? Modulation(fsk: FskModulationInfo(frequencyDeviation: 25000, datarate: 50000))
                : Modulation(lora: LoraModulationInfo(bandwidth: 125_000, spreadingFactor: 9, codeRate: "CR_4_6"))
            return DownlinkFrameItem(
                phyPayload: "AQID",
                txInfo: DownlinkTxInfo(
                    frequency: 869_525_000,
                    power: 27,
                    modulation: modulation,
                    timing: timing,
                    context: context
                )
            )
        }
        #expect(try item(nil).txpk().imme == true)
        #expect(try item(Timing(immediately: .init())).txpk().imme == true)
        #expect(try item(Timing(gpsEpoch: .init(timeSinceGpsEpoch: "1399713183.5s"))).txpk().tmms == 1_399_713_183_500)
        // The concentrator counter wraps: 0xFFFFFFFF + 1.000001 s.
        let wrapped = try item(Timing(delay: .init(delay: "1.000001s")), context: "/////w==").txpk()
        #expect(wrapped.tmst == 1_000_000)
        let fsk = try item(nil, fsk: true).txpk()
        #expect(fsk.modu == "FSK")
        #expect(fsk.datr == .fsk(50000))
        #expect(fsk.fdev == 25000)
        #expect(try item(nil).txpk().codr == "4/6")

        let bad: [DownlinkFrameItem] = [
            item(Timing(delay: .init(delay: "1s"))),  // no context
            item(Timing(delay: .init(delay: "1s")), context: "AQ=="),  // short context
            item(Timing(delay: .init(delay: "soon")), context: "j8VAiw=="),
            item(Timing(delay: .init(delay: "-1s")), context: "j8VAiw=="),
            item(Timing(immediately: .init(), delay: .init(delay: "1s")), context: "j8VAiw=="),
            DownlinkFrameItem(phyPayload: "", txInfo: item(nil).txInfo),
            DownlinkFrameItem(phyPayload: "@@@", txInfo: item(nil).txInfo),
            DownlinkFrameItem(
                phyPayload: "AQID",
                txInfo: DownlinkTxInfo(
                    frequency: 868_100_000,
                    power: 14,
                    modulation: Modulation(),
                    timing: nil,
                    context: nil
                )
            ),
        ]
        for candidate in bad {
            #expect(throws: ConversionError.self) { try candidate.txpk() }
        }
    }

    @Test func badDownlinkJSON() {
        let encoding = ChirpStackJSONEncoding()
        for text in [
            "", "{", "[]", #"{"downlinkId":"x","items":[]}"#, #"{"downlinkId":1}"#, #"{"downlinkId":-1,"items":[]}"#,
        ] {
            #expect(throws: ConversionError.self) { try encoding.decodeDownlink(Array(text.utf8)) }
        }
    }

    @Test func txAckStatusMapping() {
        #expect(TxAckStatus(txpkAckError: nil) == .ok)
        #expect(TxAckStatus(txpkAckError: "") == .ok)
        #expect(TxAckStatus(txpkAckError: "NONE") == .ok)
        #expect(TxAckStatus(txpkAckError: "TOO_LATE") == .tooLate)
        #expect(TxAckStatus(txpkAckError: "TOO_EARLY") == .tooEarly)
        #expect(TxAckStatus(txpkAckError: "COLLISION_PACKET") == .collisionPacket)
        #expect(TxAckStatus(txpkAckError: "COLLISION_BEACON") == .collisionBeacon)
        #expect(TxAckStatus(txpkAckError: "TX_FREQ") == .txFrequency)
        #expect(TxAckStatus(txpkAckError: "TX_POWER") == .txPower)
        #expect(TxAckStatus(txpkAckError: "GPS_UNLOCKED") == .gpsUnlocked)
        #expect(TxAckStatus(txpkAckError: "SOMETHING_NEW") == .internalError)
    }

    @Test func topics() {
        let topics = GatewayTopics(prefix: "eu868")
        #expect(
            topics.topic(for: .conn(ConnState(gatewayId: "", state: "ONLINE")), gateway: sampleGateway)
                == "eu868/gateway/b827ebfffe6a1b2c/state/conn"
        )
        #expect(topics.commandFilter == "eu868/gateway/+/command/down")
        #expect(topics.gateway(inCommandTopic: "eu868/gateway/B827EBFFFE6A1B2C/command/down") == sampleGateway)
        for other in [
            "eu868/gateway/b827ebfffe6a1b2c/command/config", "us915/gateway/b827ebfffe6a1b2c/command/down",
            "eu868/gateway/xyz/command/down", "eu868/gateway/b827ebfffe6a1b2c/command/down/x", "eu868",
        ] {
            #expect(topics.gateway(inCommandTopic: other) == nil, "\(other)")
        }
    }

    @Test func durations() {
        #expect(Timestamps.microseconds(duration: "1s") == 1_000_000)
        #expect(Timestamps.microseconds(duration: "0.5s") == 500_000)
        #expect(Timestamps.microseconds(duration: "5.000000001s") == 5_000_000)
        for bad in ["", "s", "1", ".5s", "1.s", "1e3s", "-1s", "99999999999999s"] {
            #expect(Timestamps.microseconds(duration: bad) == nil, "\(bad)")
        }
        #expect(Timestamps.duration(milliseconds: 1_005) == "1.005s")
    }

    @Test func payloadBase64TakesURLSafeAndMissingPadding() {
        #expect(PayloadBase64.decode("j8VAiw==") == [0x8F, 0xC5, 0x40, 0x8B])
        #expect(PayloadBase64.decode("j8VAiw") == [0x8F, 0xC5, 0x40, 0x8B])
        #expect(PayloadBase64.decode("j8VAiw=") == [0x8F, 0xC5, 0x40, 0x8B])
        #expect(PayloadBase64.decode("__-_") == [0xFF, 0xFF, 0xBF])
        #expect(PayloadBase64.decode("//+/") == [0xFF, 0xFF, 0xBF])
        for bad in ["j", "j8VAi", "j8V=Aiw=", "not base64!", "j8VA iw=="] {
            #expect(PayloadBase64.decode(bad) == nil, "\(bad)")
        }
    }
}
