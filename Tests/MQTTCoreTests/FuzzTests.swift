import NIOCore
import Testing

@testable import MQTTCore

/// The decoder must only ever return or throw, never trap, whatever it is fed.
@Suite("Robustness")
struct FuzzTests {
    /// Frames and decodes everything in `bytes`; returns how many packets decoded.
    @discardableResult
    func feed(_ bytes: [UInt8], version: ProtocolVersion?, maximumPacketSize: Int = 1 << 20) -> Int {
        var input = buffer(bytes)
        var version = version
        var count = 0
        while true {
            do {
                guard let frame = try MQTTCodec.readFrame(from: &input, maximumPacketSize: maximumPacketSize) else {
                    return count
                }
                let packet = try MQTTCodec.decode(frame, version: version)
                if version == nil, case .connect(let c) = packet { version = c.protocolVersion }
                // Whatever decodes must encode again without trapping.
                _ = encode(packet, version ?? .v5)
                count += 1
            } catch {
                return count
            }
        }
    }

    @Test(arguments: [ProtocolVersion?.none, .v3_1, .v3_1_1, .v5])
    func randomBytes(version: ProtocolVersion?) {
        var rng = SplitMix64(seed: 0x5EED_0000 + UInt64(version?.rawValue ?? 0))
        for _ in 0..<3000 {
            let length = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Give most inputs a plausible fixed header so the body parsers get exercised.
            if length >= 2, Bool.random(using: &rng) {
                bytes[1] = UInt8(length - 2)
                if Bool.random(using: &rng) {
                    bytes[0] = UInt8.random(in: 1...15, using: &rng) << 4 | (bytes[0] & 0x0F)
                }
            }
            feed(bytes, version: version)
        }
    }

    @Test(arguments: allVersions)
    func mutatedValidPackets(version: ProtocolVersion) {
        var rng = SplitMix64(seed: 0xF00D + UInt64(version.rawValue))
        let corpus =
            ChannelDecoderTests.representative(version).filter {
                if case .publish(let p) = $0 { return p.payload.readableBytes < 1000 }
                return true
            } + [
                .connect(
                    ConnectPacket(
                        protocolVersion: version,
                        clientIdentifier: "c",
                        username: "u",
                        password: [1],
                        will: Will(
                            topic: "w",
                            payload: payload("x"),
                            qos: .atLeastOnce,
                            retain: true,
                            properties: allProperties
                        ),
                        properties: allProperties
                    )
                ),
                .connAck(ConnAckPacket(properties: allProperties)),
                .publish(
                    PublishPacket(
                        topic: "t",
                        payload: payload("p"),
                        qos: .atLeastOnce,
                        packetIdentifier: 1,
                        properties: allProperties
                    )
                ),
            ]
        let encoded = corpus.map { Array(encode($0, version).readableBytesView) }
        var decodedSomething = 0
        for _ in 0..<3000 {
            var bytes = encoded[Int.random(in: 0..<encoded.count, using: &rng)]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[index] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                case 1: bytes[index] = UInt8.random(in: 0...255, using: &rng)
                case 2: bytes.remove(at: index); if bytes.isEmpty { bytes = [0] }
                default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: index)
                }
            }
            decodedSomething += feed(bytes, version: version)
            decodedSomething += feed(bytes, version: nil)
        }
        #expect(decodedSomething > 0)
    }

    /// Inputs that once looked dangerous; they must only throw or return.
    @Test func regressionCorpus() {
        let corpus: [[UInt8]] = [
            [0x30, 0xFF, 0xFF, 0xFF, 0x7F],
            [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x10, 0x02, 0xFF, 0xFF],
            [0x10, 0x06, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54],
            [0x10, 0x0B, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x05, 0x02, 0x00, 0x3C, 0xFF, 0xFF, 0xFF],
            [0x30, 0x05, 0x00, 0x01, 0x61, 0x80, 0x80],
            [0x82, 0x04, 0x00, 0x01, 0x0B, 0x00],
            [0xE0, 0x02, 0x00, 0xFF],
            [0x90, 0x02, 0x00, 0x01],
        ]
        for bytes in corpus {
            for version in [ProtocolVersion?.none, .v3_1, .v3_1_1, .v5] { feed(bytes, version: version) }
        }
    }
}
