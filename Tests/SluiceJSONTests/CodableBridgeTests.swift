import Testing

@testable import SluiceJSON

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// Shaped like the GWMP and ChirpStack bodies: optionals, nested structs and arrays, a custom
// single-value enum, a string dictionary, snake_case coding keys.
private enum Rate: Codable, Equatable {
    case lora(String)
    case fsk(UInt32)

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .lora(text)
        } else {
            self = .fsk(try container.decode(UInt32.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .lora(let text): try container.encode(text)
        case .fsk(let rate): try container.encode(rate)
        }
    }
}

private struct Packet: Codable, Equatable {
    var time: String?
    var tmms: UInt64?
    var tmst: UInt32?
    var freq: Double?
    var stat: Int?
    var datr: Rate?
    var lsnr: Double?
    var ipol: Bool?
    var data: String?
}

private struct Body: Codable, Equatable {
    var rxpk: [Packet]?
    var txpkAck: Ack?
    var metadata: [String: String]?

    enum CodingKeys: String, CodingKey {
        case rxpk
        case txpkAck = "txpk_ack"
        case metadata
    }
}

private struct Ack: Codable, Equatable {
    var error: String
    var value: Int8?
}

private let sample = Body(
    rxpk: [
        Packet(
            time: "2013-03-31T16:21:17.528002Z",
            tmms: 1_048_576_000_123,
            tmst: 3_512_348_611,
            freq: 868.0,
            stat: -1,
            datr: .lora("SF7BW125"),
            lsnr: -5.25,
            ipol: true,
            data: "-DS4CGaD/dG+48eJ"
        ),
        Packet(freq: 866.349812, datr: .fsk(50_000), lsnr: 1e-7),
        Packet(tmms: .max),
    ],
    txpkAck: Ack(error: "TX_POWER", value: 14),
    metadata: ["rxfw": "2", "ackr": "100.0", "b/c": "\n\u{1}é"]
)

private func foundationText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

@Suite struct CodableBridgeTests {
    /// The bytes that go out are JSONEncoder's (sortedKeys, slashes unescaped), byte for byte.
    @Test func encodesWhatJSONEncoderWrites() throws {
        let ours = String(decoding: try JSONValueEncoder(sortingKeys: true).encodeText(sample), as: UTF8.self)
        #expect(ours == (try foundationText(sample)))
        #expect(ours.contains(#""freq":868,"#))  // integral Double without ".0"
        #expect(!ours.contains("null"))  // nil optionals left out
    }

    @Test func decodesWhatJSONEncoderWrote() throws {
        let text = try foundationText(sample)
        #expect(try JSONValueDecoder().decode(Body.self, from: Array(text.utf8)) == sample)
        let ours = try JSONValueEncoder().encodeText(sample)
        #expect(try JSONValueDecoder().decode(Body.self, from: ours) == sample)
    }

    @Test func keepsDeclarationOrderWithoutSorting() throws {
        let text = try JSONValueEncoder().encode(Ack(error: "NONE", value: 1)).serialized()
        #expect(text == #"{"error":"NONE","value":1}"#)
    }

    /// Each input is judged as JSONDecoder judges it: both accept (with the same value) or both refuse.
    @Test func agreesWithJSONDecoderOnNumbersAndShapes() throws {
        let inputs = [
            #"{"error":"x","value":7}"#, #"{"error":"x","value":7.0}"#, #"{"error":"x","value":7e0}"#,
            #"{"error":"x","value":7.5}"#, #"{"error":"x","value":300}"#, #"{"error":"x","value":-129}"#,
            #"{"error":"x","value":null}"#, #"{"error":"x"}"#, #"{"value":1}"#, #"{"error":null}"#,
            #"{"error":1}"#, #"[]"#, #""x""#, #"{"error":"x","value":"7"}"#, #"{"error":"x","extra":[1,{}]}"#,
        ]
        for input in inputs {
            let foundation = try? JSONDecoder().decode(Ack.self, from: Data(input.utf8))
            let ours = try? JSONValueDecoder().decode(Ack.self, from: Array(input.utf8))
            #expect(ours == foundation, "\(input)")
        }
        let packets = [#"{"tmst":4294967296}"#, #"{"tmst":-1}"#, #"{"tmms":18446744073709551615}"#, #"{"datr":50000}"#]
        for input in packets {
            let foundation = try? JSONDecoder().decode(Packet.self, from: Data(input.utf8))
            let ours = try? JSONValueDecoder().decode(Packet.self, from: Array(input.utf8))
            #expect(ours == foundation, "\(input)")
        }
    }

    @Test func errorsNameThePath() throws {
        do {
            _ = try JSONValueDecoder().decode(Body.self, from: Array(#"{"rxpk":[{},{"tmst":"x"}]}"#.utf8))
            Issue.record("decoded a string as UInt32")
        } catch DecodingError.typeMismatch(_, let context) {
            #expect(context.codingPath.map(\.stringValue) == ["rxpk", "1", "tmst"])
        }
        do {
            _ = try JSONValueDecoder().decode(Ack.self, from: Array("{}".utf8))
            Issue.record("decoded without the required key")
        } catch DecodingError.keyNotFound(let key, _) {
            #expect(key.stringValue == "error")
        }
        #expect(throws: JSONParseError(.trailingData, at: 2)) {
            try JSONValueDecoder().decode(Ack.self, from: Array("{}}".utf8))
        }
    }

    @Test func nonFiniteNumbersAreNotEncoded() {
        #expect(throws: EncodingError.self) { try JSONValueEncoder().encode(Packet(freq: .nan)) }
        #expect(throws: EncodingError.self) { try JSONValueEncoder().encode([Double.infinity]) }
    }

    /// Keys that exercise Foundation's snake_case word split: digits, underscores at either end, one-letter
    /// words. (A capital run such as `uRLValue` does not come back: JSONDecoder reads `u_rl_value` as
    /// `uRlValue`; the one-key loops below check both directions of that.)
    struct Keys: Codable, Equatable {
        var oldestAgeSeconds: Double
        var urlValue: Int
        var p99Value: Int?
        var h2OKey: [Int]
        var _lead: Int
        var trail_: Int
        var a: [Keys]
        var empty: [String]
        var nested: Inner
        struct Inner: Codable, Equatable { var storeMaxBytes: UInt64; var nothingHere: [Inner] }
    }

    /// An object of one member whose key is chosen at run time.
    struct OneKey: Codable {
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        var key: String
        init(key: String) { self.key = key }
        init(from decoder: any Decoder) throws {
            key = try decoder.container(keyedBy: Key.self).allKeys.first?.stringValue ?? ""
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(1, forKey: Key(stringValue: key))
        }
    }

    @Test func snakeCaseAndPrettyMatchJSONEncoder() throws {
        let leaf = Keys(
            oldestAgeSeconds: 0.1,
            urlValue: 3,
            p99Value: nil,
            h2OKey: [1, 2],
            _lead: 1,
            trail_: 2,
            a: [],
            empty: [],
            nested: .init(storeMaxBytes: 1 << 40, nothingHere: [])
        )
        var value = leaf
        value.p99Value = 99
        value.oldestAgeSeconds = 1.5e20
        value.a = [leaf, leaf]
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        for pretty in [false, true] {
            encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
            let foundation = String(decoding: try encoder.encode(value), as: UTF8.self)
            let tree = try JSONValueEncoder(sortingKeys: true, snakeCaseKeys: true).encode(value)
            let ours = pretty ? try tree.prettySerialized() : try tree.serialized()
            #expect(ours == foundation)
            #expect(try JSONValueDecoder(snakeCaseKeys: true).decode(Keys.self, from: Array(ours.utf8)) == value)
        }
        // One key at a time through a keyed container: JSONEncoder converts keys of containers, not of
        // dictionaries, so a dictionary would not show its conversion.
        for key in ["oldest_age_seconds", "u_rl_value", "_lead", "trail_", "x", "__a_b__", "a__b", "_", "A_B"] {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let foundation = try decoder.decode(OneKey.self, from: Data("{\"\(key)\":1}".utf8)).key
            #expect(JSONKeyCase.camel(fromSnake: key) == foundation, "\(key)")
            let ours = try JSONValueDecoder(snakeCaseKeys: true).decode(OneKey.self, from: Array("{\"\(key)\":1}".utf8))
            #expect(ours.key == foundation, "\(key)")
        }
        for key in ["a", "aB", "ABC", "abcDEF", "abcDEFgh", "x1Y2", "already_snake", "URL", "aBC", "Xy"] {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            let foundation = String(decoding: try encoder.encode(OneKey(key: key)), as: UTF8.self)
            #expect(#"{"\#(JSONKeyCase.snake(key))":1}"# == foundation, "\(key)")
        }
        #expect(try JSONValue.array([]).prettySerialized() == "[\n\n]")
    }
}
