import Testing

@testable import SluiceBroker

/// The store keys' SHA-256 (SHA256.swift) must give the bytes libcrypto's EVP_sha256 gave, or digest keys
/// written by an earlier version are never found again. Expected values from Python's hashlib (OpenSSL).
@Suite struct SHA256Tests {
    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        // FIPS 180-4's two-block example: 56 bytes, so the padding takes a block of its own.
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func standardVectors(message: String, expected: String) {
        #expect(hex(SHA256.digest(Array(message.utf8))) == expected)
    }

    @Test func aMillionAs() {
        #expect(
            hex(SHA256.digest([UInt8](repeating: 0x61, count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        )
    }

    /// Every length from 0 to 299 bytes (each padding case, one to five blocks), folded into one digest:
    /// hashlib.sha256(b"".join(sha256(bytes((i * 7 + n) & 255 for i in range(n))).digest() for n in range(300))).
    @Test func everyPaddingLength() {
        var digests: [UInt8] = []
        for length in 0..<300 {
            digests += SHA256.digest((0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + length) })
        }
        #expect(hex(SHA256.digest(digests)) == "d5238871a46ac4a1a75ac3fb19d645b0b3b9e5f35f5f720e2b240d605c6b694e")
    }

    /// The keys a store already holds: an over-long retained topic and client id, as libcrypto keyed them.
    @Test func storeKeysMatchTheOnesOnDisk() {
        let topic = String(repeating: "t", count: PersistenceTable.retained.maxKeyLength + 1)
        #expect(
            hex(storeKey(.retained, topic)) == "00" + "76c6366013571865f1b9e879f69217346266ffec2d1281c0b88ce216afaa51dc"
        )
        #expect(
            hex(messageKeyPrefix(String(repeating: "c", count: 600)))
                == "ffff" + "8a88f9e43d03b7d9108742e08073a17ed8a36b1eb9326195938374ffeb14a16e"
        )
        #expect(
            hex(storeKey(.retained, String(repeating: "x", count: 65_535)))
                == "00" + "09ab7495d3e61a76f0deb12cb0306f0696cbb17ffc12131368c7a939f12f56d3"
        )
    }
}
