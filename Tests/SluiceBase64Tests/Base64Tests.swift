import Foundation
import Testing

@testable import SluiceBase64

@Suite struct Base64Tests {
    @Test func roundTripMatchesFoundation() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64.encode(bytes)
            #expect(encoded == Data(bytes).base64EncodedString())
            #expect(Base64.decode(encoded) == bytes)
            #expect(Base64.decode(encoded[...]) == bytes)
            // Unpadded input decodes to the same bytes.
            #expect(Base64.decode(encoded.filter { $0 != "=" }) == bytes)
        }
        #expect(Base64.decode("MDEyMzQ1Njc4OWFi") == Array("0123456789ab".utf8))
        #expect(Base64.decode("//4=") == [0xFF, 0xFE])
        #expect(Base64.decode("") == [])
    }

    @Test func badInputIsNil() {
        // A lone sixth of a byte, characters outside the alphabet: Foundation refuses them too.
        for text in ["A", "AAAAA", "A===", "AA-A", "AA_A", "AA A", "AA\nA", "é"] {
            #expect(Base64.decode(text) == nil, "\(text)")
            #expect(Data(base64Encoded: text) == nil, "Foundation accepts \(text)")
        }
        // Data after padding and padding past a whole group: Foundation reads bytes out of these, this
        // decoder refuses them (no writer of password files or packet-forwarder payloads produces them).
        for text in ["AA=A", "AA===", "AAA==", "AA=", "="] {
            #expect(Base64.decode(text) == nil, "\(text)")
        }
    }

    @Test func lowBitsAreIgnoredAsFoundationIgnoresThem() {
        #expect(Base64.decode("AB==") == [0])
        #expect(Data(base64Encoded: "AB==").map(Array.init) == [0])
    }
}
