import Foundation
import Testing

@testable import GWMPCore

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "fixtures/gwmp"
    )

    static func names(in subdirectory: String? = nil) -> [String] {
        let folder = subdirectory.map { directory.appendingPathComponent($0) } ?? directory
        let all = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return all.filter { $0.hasSuffix(".bin") }.sorted()
    }

    static func bytes(_ name: String, in subdirectory: String? = nil) throws -> [UInt8] {
        let folder = subdirectory.map { directory.appendingPathComponent($0) } ?? directory
        return Array(try Data(contentsOf: folder.appendingPathComponent(name)))
    }
}

let sampleGateway = GatewayEUI(0xb827_ebff_fe6a_1b2c)

/// A deterministic generator for tests (xorshift64*).
struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64

    init(seed: UInt64 = 0x9E37_79B9_7F4A_7C15) { state = seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

func json(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}
