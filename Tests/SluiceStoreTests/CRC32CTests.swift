import Testing

@testable import SluiceStore

/// The byte-at-a-time CRC32C the store used before slicing-by-8 (a verbatim copy): the reference every record
/// written before must still match, so no byte on disk changes.
private enum BytewiseCRC32C {
    static let table: [UInt32] = (0..<256).map { index -> UInt32 in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return ~crc
    }
}

@Suite struct CRC32CTests {
    /// RFC 3720 (iSCSI) appendix B.4, plus the common "123456789" check value.
    @Test func knownVectors() {
        let vectors: [(bytes: [UInt8], crc: UInt32)] = [
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
            (Array(0...31), 0x46DD_794E),
            (Array((0...31).reversed()), 0x113F_DB5C),
            (Array("123456789".utf8), 0xE306_9283),
            ([], 0),
        ]
        for (bytes, crc) in vectors {
            #expect(CRC32C.checksum(bytes) == crc, "\(bytes)")
        }
    }

    /// Every length across the 8-byte word boundary and its tail, from every alignment within a word.
    @Test func matchesBytewiseForEveryLengthAndAlignment() {
        // Fixed, irregular bytes (a multiplicative hash of the index), so a failure reproduces.
        let data = (0..<(300 + 16)).map { UInt8(truncatingIfNeeded: ($0 &* 0x9E37_79B1) >> 11) }
        data.withUnsafeBytes { all in
            for start in 0..<16 {
                for length in 0...300 {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    let expected = BytewiseCRC32C.checksum(slice)
                    let actual = CRC32C.checksum(slice)
                    #expect(actual == expected, "start \(start), length \(length)")
                    if actual != expected { return }  // one failure says it; 4,800 would bury it
                }
            }
        }
    }
}
