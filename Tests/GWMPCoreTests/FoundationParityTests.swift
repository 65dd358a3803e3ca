import Foundation
import Testing

@testable import GWMPCore

/// GWMPCore writes its JSON with SluiceJSON; these pin that every body it sends is byte for byte what
/// Foundation's JSONEncoder (`.sortedKeys`, `.withoutEscapingSlashes`), which it used before, writes.
@Suite struct FoundationParityTests {
    let receivedAt: Int64 = 1_715_677_964_500  // Unix milliseconds

    private func foundation(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private func ours(_ value: some Encodable) -> String { String(decoding: GWMPJSON.encode(value), as: UTF8.self) }

    @Test func gatewayBodiesAndEvents() throws {
        var compared = 0
        for name in Fixtures.names() {
            switch try GWMPCodec.decode(Fixtures.bytes(name)) {
            case .pushData(_, _, let body):
                #expect(ours(body) == (try foundation(body)), "\(name)")
                for (index, rxpk) in (body.rxpk ?? []).enumerated() {
                    let frame = try UplinkFrame(rxpk, gateway: sampleGateway, uplinkID: 7, receivedAt: receivedAt)
                    #expect(ours(frame) == (try foundation(frame)), "\(name) rxpk \(index)")
                    compared += 1
                }
                if let stat = body.stat {
                    let stats = GatewayStats(stat, gateway: sampleGateway, receivedAt: receivedAt)
                    #expect(ours(stats) == (try foundation(stats)), "\(name) stat")
                    compared += 1
                }
            case .pullResp(_, let body):
                #expect(ours(body) == (try foundation(body)), "\(name)")
                compared += 1
            case .txAck(_, _, let body?):
                #expect(ours(body) == (try foundation(body)), "\(name)")
                compared += 1
            default: break
            }
        }
        #expect(compared >= 8)  // the fixtures above: rxpk, stat, three PULL_RESP, four TX_ACK bodies
    }

    @Test func downlinkTxpks() throws {
        let frame = try ChirpStackJSONEncoding().decodeDownlink(Array(ConversionTests.classADownlink.utf8))
        for item in frame.items {
            let body = PullRespBody(txpk: try item.txpk())
            #expect(ours(body) == (try foundation(body)))
        }
    }
}

/// The log line of a refused body says why and where, without echoing the body.
@Suite struct JSONRefusalTextTests {
    @Test func parseErrorsNameTheOffset() {
        #expect(throws: ConversionError("downlink command: not valid JSON (invalid JSON at byte 1: unexpectedEnd)")) {
            try ChirpStackJSONEncoding().decodeDownlink(Array("{".utf8))
        }
        #expect(throws: ConversionError("downlink command: missing downlinkId")) {
            try ChirpStackJSONEncoding().decodeDownlink(Array(#"{"items":[]}"#.utf8))
        }
        #expect(throws: ConversionError("downlink command: wrong type at downlinkId")) {
            try ChirpStackJSONEncoding().decodeDownlink(Array(#"{"downlinkId":"x","items":[]}"#.utf8))
        }
    }
}
