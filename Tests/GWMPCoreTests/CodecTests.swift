import Foundation
import Testing

@testable import GWMPCore

@Suite struct CodecTests {
    @Test func everyPacketTypeHasAFixture() {
        let names = Fixtures.names()
        for prefix in ["push_data", "push_ack", "pull_data", "pull_resp", "pull_ack", "tx_ack"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no fixture for \(prefix)")
        }
    }

    /// Decode → encode → decode gives the same packet; the header and EUI survive byte for byte,
    /// and packets without JSON encode to exactly the sample.
    @Test(arguments: Fixtures.names())
    func roundTrip(fixture: String) throws {
        let datagram = try Fixtures.bytes(fixture)
        let packet = try GWMPCodec.decode(datagram)
        let encoded = GWMPCodec.encode(packet)
        #expect(try GWMPCodec.decode(encoded) == packet)
        let fixedPart = [.pushData, .pullData, .txAck].contains(packet.identifier) ? 12 : 4
        #expect(encoded.prefix(fixedPart) == datagram.prefix(fixedPart))
        if datagram.count == fixedPart { #expect(encoded == datagram) }
        if fixedPart == 12 { #expect(packetGateway(packet) == sampleGateway) }
    }

    @Test func pushDataFromProtocolTxt() throws {
        let packet = try GWMPCodec.decode(Fixtures.bytes("push_data_rxpk_protocol_txt.bin"))
        guard case .pushData(let token, let gateway, let body) = packet else {
            Issue.record("not PUSH_DATA: \(packet)")
            return
        }
        #expect(token == 0x1a2b)
        #expect("\(gateway)" == "b827ebfffe6a1b2c")
        let rxpk = try #require(body.rxpk)
        #expect(rxpk.count == 2)
        #expect(rxpk[0].tmst == 3_512_348_611)
        #expect(rxpk[0].freq == 866.349812)
        #expect(rxpk[0].datr == .lora("SF7BW125"))
        #expect(rxpk[0].lsnr == 5.1)
        #expect(rxpk[1].modu == "FSK")
        #expect(rxpk[1].datr == .fsk(50000))
        #expect(body.stat == nil)
    }

    @Test func statAndRxpkTogether() throws {
        let packet = try GWMPCodec.decode(Fixtures.bytes("push_data_sx1302.bin"))
        guard case .pushData(_, _, let body) = packet else {
            Issue.record("not PUSH_DATA")
            return
        }
        #expect(body.rxpk?.count == 2)
        #expect(body.rxpk?[1].stat == -1)
        #expect(body.stat?.rxnb == 2)
        #expect(body.stat?.ackr == 100)
    }

    @Test func txAckVariants() throws {
        func ack(_ name: String) throws -> TxAckBody? {
            guard case .txAck(_, _, let body) = try GWMPCodec.decode(Fixtures.bytes(name)) else {
                Issue.record("\(name) is not TX_ACK")
                return nil
            }
            return body
        }
        #expect(try ack("tx_ack_no_body.bin") == nil)
        #expect(try ack("tx_ack_none.bin")?.txpkAck?.error == "NONE")
        #expect(try ack("tx_ack_too_late.bin")?.txpkAck?.error == "TOO_LATE")
        #expect(try ack("tx_ack_warn_power.bin")?.txpkAck == TxPkAck(warn: "TX_POWER", value: 20))
        #expect(try ack("tx_ack_nul_terminated.bin")?.txpkAck?.error == "COLLISION_PACKET")
    }

    @Test func acksAreFourBytes() {
        #expect(GWMPCodec.encode(.pushAck(token: 0xBEEF)) == [2, 0xBE, 0xEF, 1])
        #expect(GWMPCodec.encode(.pullAck(token: 0x0102)) == [2, 0x01, 0x02, 4])
    }

    @Test(arguments: [
        ("empty.bin", GWMPError.Code.tooShort),
        ("short_header.bin", .tooShort),
        ("version_1.bin", .unsupportedVersion),
        ("version_3.bin", .unsupportedVersion),
        ("unknown_identifier.bin", .unknownIdentifier),
        ("pull_data_short_eui.bin", .tooShort),
        ("pull_data_trailing.bin", .trailingBytes),
        ("push_ack_trailing.bin", .trailingBytes),
        ("push_data_no_body.bin", .badJSON),
        ("push_data_bad_json.bin", .badJSON),
        ("push_data_not_object.bin", .badJSON),
        ("push_data_wrong_type.bin", .badJSON),
        ("push_data_binary.bin", .badJSON),
        ("pull_resp_no_txpk.bin", .badJSON),
        ("tx_ack_bad_json.bin", .badJSON),
    ])
    func malformed(fixture: String, expected: GWMPError.Code) throws {
        let datagram = try Fixtures.bytes(fixture, in: "malformed")
        #expect(throws: GWMPError.self) { try GWMPCodec.decode(datagram) }
        do {
            _ = try GWMPCodec.decode(datagram)
        } catch {
            #expect(error.code == expected, "\(error)")
        }
    }

    @Test func everyMalformedFixtureIsListed() {
        #expect(Fixtures.names(in: "malformed").count == 15)
    }

    @Test func oversizeIsRejectedBeforeParsing() throws {
        var datagram = try Fixtures.bytes("push_data_stat_protocol_txt.bin")
        datagram += Array(repeating: 0x20, count: GWMPCodec.maximumDatagramSize)
        do {
            _ = try GWMPCodec.decode(datagram)
            Issue.record("accepted \(datagram.count) bytes")
        } catch {
            #expect(error.code == .tooLarge)
        }
        // Exactly at the limit is fine (trailing JSON whitespace).
        datagram.removeLast(datagram.count - GWMPCodec.maximumDatagramSize)
        #expect(throws: Never.self) { try GWMPCodec.decode(datagram) }
    }

    /// Every prefix and every single-byte corruption of every sample either decodes or throws
    /// a `GWMPError`; nothing traps.
    @Test(arguments: Fixtures.names())
    func truncationsAndCorruptionsNeverCrash(fixture: String) throws {
        let datagram = try Fixtures.bytes(fixture)
        for length in 0..<datagram.count {
            _ = try? GWMPCodec.decode(Array(datagram.prefix(length)))
        }
        var random = SeededRandom()
        for _ in 0..<200 {
            var corrupted = datagram
            corrupted[Int.random(in: 0..<corrupted.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            if let packet = try? GWMPCodec.decode(corrupted) {
                _ = GWMPCodec.encode(packet)
            }
        }
    }

    @Test func gatewayEUIText() {
        #expect("\(GatewayEUI(0x1))" == "0000000000000001")
        #expect(GatewayEUI(hex: "B827EBFFFE6A1B2C") == sampleGateway)
        #expect(GatewayEUI(hex: "b827ebfffe6a1b2c") == sampleGateway)
        for bad in ["", "b827ebfffe6a1b2", "b827ebfffe6a1b2cc", "+827ebfffe6a1b2c", "g827ebfffe6a1b2c"] {
            #expect(GatewayEUI(hex: bad) == nil, "\(bad)")
        }
        #expect(sampleGateway.bytes == [0xb8, 0x27, 0xeb, 0xff, 0xfe, 0x6a, 0x1b, 0x2c])
    }

    private func packetGateway(_ packet: GWMPPacket) -> GatewayEUI? {
        switch packet {
        case .pushData(_, let gateway, _), .pullData(_, let gateway), .txAck(_, let gateway, _): gateway
        default: nil
        }
    }
}
