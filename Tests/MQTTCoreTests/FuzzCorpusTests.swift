import Foundation
import NIOCore
import Testing

@testable import MQTTCore

// Replays the FuzzMQTTDecoder corpora without the sanitizer: the seed corpus (fixtures/fuzz/mqtt/)
// and every input the fuzzer ever reported (fixtures/fuzz/crashes/FuzzMQTTDecoder/). The rules are
// those of Fuzz/Sources/FuzzMQTTDecoder/FuzzMQTTDecoder.swift: the first byte's low two bits pick
// the version (0 before CONNECT, 1 = 3.1, 2 = 3.1.1, 3 = 5), the rest is framed and decoded packet by
// packet (each one, short of its last byte, must frame as nil), and whatever decodes must survive
// encode → decode → encode unchanged (a CONNECT as its own version).

private let fuzzFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/fuzz")

/// The files of one fixtures/fuzz subfolder, sorted by name (none when the folder is missing).
private func fixtureFiles(_ folder: String) -> [URL] {
    let dir = fuzzFixtures.appendingPathComponent(folder)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
}

/// What one fuzz input did: the packets that decoded, the error that ended it (if any), leftover bytes.
private struct Replay {
    var packets: [Packet] = []
    var error: MQTTError?
    var leftover = 0
}

/// Decodes `bytes` as the fuzz target does, checking each decoded packet's round trip.
private func replay(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Replay {
    var result = Replay()
    guard let selector = bytes.first else { return result }
    var version: ProtocolVersion? = [nil, .v3_1, .v3_1_1, .v5][Int(selector & 0x03)]
    var input = ByteBuffer(bytes: bytes.dropFirst())
    while true {
        do {
            let before = input
            guard let frame = try MQTTCodec.readFrame(from: &input, maximumPacketSize: MQTTCodec.maximumPacketSize)
            else { break }
            // Short of its last byte, the packet is "more bytes needed", not an error.
            var short = before.getSlice(at: before.readerIndex, length: input.readerIndex - before.readerIndex - 1)!
            #expect(
                try MQTTCodec.readFrame(from: &short, maximumPacketSize: MQTTCodec.maximumPacketSize) == nil,
                sourceLocation: sourceLocation
            )
            #expect(short.readerIndex == 0, sourceLocation: sourceLocation)
            let packet = try MQTTCodec.decode(frame, version: version)
            if version == nil, case .connect(let connect) = packet { version = connect.protocolVersion }
            result.packets.append(packet)
            var roundTripVersion = version ?? .v5
            if case .connect(let connect) = packet { roundTripVersion = connect.protocolVersion }
            expectStableRoundTrip(packet, version: roundTripVersion, sourceLocation: sourceLocation)
        } catch {
            result.error = error
            break
        }
    }
    result.leftover = input.readableBytes
    return result
}

private func expectStableRoundTrip(_ packet: Packet, version: ProtocolVersion, sourceLocation: SourceLocation) {
    if case .auth = packet, version < .v5 { return }
    let first = encode(packet, version)
    let again = try? decode(first, version)
    #expect(again == packet, "round trip of \(packet.type) as \(version)", sourceLocation: sourceLocation)
    if let again {
        #expect(encode(again, version) == first, "second encoding of \(packet.type)", sourceLocation: sourceLocation)
    }
}

@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    /// Every seed is a valid packet (or a valid CONNECT-first stream) that decodes whole.
    @Test func seedCorpusDecodesWhole() throws {
        let seeds = fixtureFiles("mqtt")
        // 15 types in 5, 14 in 3.1 and 3.1.1, plus variants and three streams.
        #expect(seeds.count >= 15 + 14 + 14 + 3)
        var typesByVersion: [UInt8: Set<PacketType>] = [:]
        for file in seeds {
            let bytes = try [UInt8](Data(contentsOf: file))
            let result = replay(bytes)
            #expect(result.error == nil, "\(file.lastPathComponent): \(String(describing: result.error))")
            #expect(result.leftover == 0, "\(file.lastPathComponent): \(result.leftover) bytes left")
            #expect(!result.packets.isEmpty, "\(file.lastPathComponent)")
            typesByVersion[bytes[0] & 0x03, default: []].formUnion(result.packets.map(\.type))
        }
        #expect(typesByVersion[1]?.count == 14)
        #expect(typesByVersion[2]?.count == 14)
        #expect(typesByVersion[3]?.count == 15)
    }

    /// Found by FuzzMQTTDecoder (crash-48bba9d6…): a refusing CONNACK with session present set decoded
    /// with the flag while it encodes without it, so the round trip changed the packet.
    @Test func refusingConnAckHasNoSessionPresent() throws {
        #expect(try decode([0x20, 2, 0x01, 0x05], .v3_1_1) == .connAck(ConnAckPacket(reasonCode: .notAuthorized)))
        #expect(try decode([0x20, 3, 0x01, 0x87, 0], .v5) == .connAck(ConnAckPacket(reasonCode: .notAuthorized)))
        #expect(try decode([0x20, 3, 0x01, 0x00, 0], .v5) == .connAck(ConnAckPacket(sessionPresent: true)))
    }

    /// Inputs the fuzzer reported: they must only decode or throw, never trap, with stable round trips.
    @Test func crashCorpusDoesNotCrash() throws {
        for file in fixtureFiles("crashes/FuzzMQTTDecoder") {
            _ = replay(try [UInt8](Data(contentsOf: file)))
        }
    }

    /// The server's connection handler decodes through `NIOSingleStepByteToMessageProcessor` driving
    /// `MQTTPacketDecoder`: for every corpus input, however the bytes are split into reads, that path
    /// yields the packets and the error the fuzz rules above yield.
    @Test func serverDecodePathAgreesWithTheFuzzRulesAtEverySplit() throws {
        for file in fixtureFiles("mqtt") + fixtureFiles("crashes/FuzzMQTTDecoder") {
            let bytes = try [UInt8](Data(contentsOf: file))
            guard let selector = bytes.first else { continue }
            let expected = replay(bytes)
            let stream = Array(bytes.dropFirst())
            let splits: [[Int]] = [[], [stream.count / 2], Array(stride(from: 1, to: stream.count, by: 1))]
            let version: ProtocolVersion? = [nil, .v3_1, .v3_1_1, .v5][Int(selector & 0x03)]
            for split in splits {
                let got = processorReplay(stream, cuts: split, version: version)
                let name = "\(file.lastPathComponent) in \(split.count + 1) reads"
                #expect(got.packets == expected.packets, "\(name)")
                #expect(got.error?.code == expected.error?.code, "\(name)")
                if expected.error == nil { #expect(got.leftover == expected.leftover, "\(name)") }
            }
        }
    }
}

/// Feeds `stream` to a processor in reads cut at `cuts`, as the server's handler does (its buffer
/// bounded by the maximum packet size).
private func processorReplay(_ stream: [UInt8], cuts: [Int], version: ProtocolVersion?) -> Replay {
    var result = Replay()
    let processor = NIOSingleStepByteToMessageProcessor(
        MQTTPacketDecoder(version: version, maximumPacketSize: MQTTCodec.maximumPacketSize),
        maximumBufferSize: MQTTCodec.maximumPacketSize
    )
    var start = 0
    for end in cuts + [stream.count] {
        do {
            try processor.process(buffer: ByteBuffer(bytes: stream[start..<end])) { result.packets.append($0) }
        } catch {
            result.error = error as? MQTTError ?? MQTTError(.unspecifiedError, "\(error)")
            return result
        }
        start = end
    }
    result.leftover = processor.unprocessedBytes
    return result
}
