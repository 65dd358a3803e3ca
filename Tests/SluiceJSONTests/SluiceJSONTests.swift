import Testing

@testable import SluiceJSON

private func parseError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) -> JSONParseError? {
    parseError(bytes: Array(text.utf8), maxDepth: maxDepth)
}

private func parseError(bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) -> JSONParseError? {
    do {
        _ = try JSONValue(parsing: bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

@Suite struct JSONParseTests {
    @Test func scalars() throws {
        #expect(try JSONValue(parsing: "null") == .null)
        #expect(try JSONValue(parsing: " true ") == .bool(true))
        #expect(try JSONValue(parsing: "\tfalse\r\n") == .bool(false))
        #expect(try JSONValue(parsing: "0") == .int(0))
        #expect(try JSONValue(parsing: "-12") == .int(-12))
        #expect(try JSONValue(parsing: "\"a\"") == .string("a"))
    }

    @Test func integersAndDoublesStayApart() throws {
        #expect(try JSONValue(parsing: "9223372036854775807") == .int(.max))
        #expect(try JSONValue(parsing: "-9223372036854775808") == .int(.min))
        // Past Int64 up to UInt64.max it is `.unsigned`; past that still a valid number, carried as a Double.
        #expect(try JSONValue(parsing: "9223372036854775808") == .unsigned(9_223_372_036_854_775_808))
        #expect(try JSONValue(parsing: "18446744073709551615") == .unsigned(.max))
        #expect(try JSONValue(parsing: "18446744073709551616") == .double(18_446_744_073_709_551_616))
        #expect(try JSONValue(parsing: "-9223372036854775809") == .double(-9_223_372_036_854_775_808))
        #expect(try JSONValue.unsigned(.max).serialized() == "18446744073709551615")
        #expect(try JSONValue(parsing: "1.0") == .double(1))
        #expect(try JSONValue(parsing: "1.0").int64 == nil)
        #expect(try JSONValue(parsing: "1.0").double == 1)
        #expect(try JSONValue(parsing: "7").double == 7)
        #expect(try JSONValue(parsing: "-0.5e-3") == .double(-0.0005))
        #expect(try JSONValue(parsing: "2E+2") == .double(200))
        #expect(try JSONValue(parsing: "868.1") == .double(868.1))
        #expect(try JSONValue(parsing: "-0") == .int(0))
    }

    @Test func nestedDocumentKeepsMemberOrder() throws {
        let value = try JSONValue(parsing: #"{"z":1,"a":[true,null,{"k":"v"}],"m":{}}"#)
        let object = try #require(value.object)
        #expect(object.members.map(\.key) == ["z", "a", "m"])
        #expect(object["a"]?.array?.count == 3)
        #expect(object["a"]?.array?[2].object?["k"]?.string == "v")
        #expect(object["m"] == .object(JSONObject()))
        #expect(object["missing"] == nil)
    }

    @Test func everyEscape() throws {
        let value = try JSONValue(parsing: #""\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\u0000""#)
        #expect(value == .string("\"\\/\u{8}\u{C}\n\r\tAé€\u{0}"))
    }

    @Test func surrogatePairs() throws {
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONValue(parsing: #""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try JSONValue(parsing: "\"😀 é\"") == .string("😀 é"))  // raw UTF-8 as it is
    }

    @Test func loneSurrogatesAreRefused() {
        #expect(parseError(#""\ud83d""#) == JSONParseError(.loneSurrogate, at: 1))
        #expect(parseError(#""ab\ud83dx""#) == JSONParseError(.loneSurrogate, at: 3))
        #expect(parseError(#""\ud83d\u0041""#) == JSONParseError(.loneSurrogate, at: 1))  // not a low one
        #expect(parseError(#""\ud83d\ud83d""#) == JSONParseError(.loneSurrogate, at: 1))
        #expect(parseError(#""\ude00""#) == JSONParseError(.loneSurrogate, at: 1))  // low without high
        #expect(parseError(#""\ud83d\n""#) == JSONParseError(.loneSurrogate, at: 1))
    }

    @Test func badEscapesAreRefused() {
        #expect(parseError(#""\x41""#) == JSONParseError(.invalidEscape, at: 1))
        #expect(parseError(#""a\'""#) == JSONParseError(.invalidEscape, at: 2))
        #expect(parseError(#""\u12G4""#) == JSONParseError(.invalidUnicodeEscape, at: 1))
        #expect(parseError(#""\ud83d\uZZZZ""#) == JSONParseError(.invalidUnicodeEscape, at: 7))
        #expect(parseError(#""\u12""#) == JSONParseError(.invalidUnicodeEscape, at: 1))
        #expect(parseError(#""\u12"#) == JSONParseError(.unexpectedEnd, at: 5))
    }

    @Test func controlCharactersInStringsAreRefused() throws {
        #expect(parseError("\"a\nb\"") == JSONParseError(.controlCharacter(0x0A), at: 2))
        #expect(parseError("\"\t\"") == JSONParseError(.controlCharacter(0x09), at: 1))
        #expect(parseError(bytes: [0x22, 0x00, 0x22]) == JSONParseError(.controlCharacter(0), at: 1))
        #expect(parseError(bytes: [0x22, 0x1F, 0x22]) == JSONParseError(.controlCharacter(0x1F), at: 1))
        #expect(try JSONValue(parsing: bytes("\"\u{7F}\"")) == .string("\u{7F}"))  // DEL is allowed
    }

    @Test func invalidUTF8IsRefused() {
        #expect(parseError(bytes: [0x22, 0xFF, 0x22]) == JSONParseError(.invalidUTF8, at: 1))
        #expect(parseError(bytes: [0x22, 0x41, 0xC3, 0x22]) == JSONParseError(.invalidUTF8, at: 2))  // cut short
        #expect(parseError(bytes: [0x22, 0xC0, 0xAF, 0x22]) == JSONParseError(.invalidUTF8, at: 1))  // overlong /
        #expect(parseError(bytes: [0x22, 0xE0, 0x80, 0xAF, 0x22]) == JSONParseError(.invalidUTF8, at: 1))
        #expect(parseError(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22]) == JSONParseError(.invalidUTF8, at: 1))  // surrogate
        #expect(parseError(bytes: [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]) == JSONParseError(.invalidUTF8, at: 1))
        #expect(parseError(bytes: [0x22, 0x80, 0x22]) == JSONParseError(.invalidUTF8, at: 1))  // lone continuation
        #expect(parseError(bytes: [0x22, 0xE2, 0x82]) == JSONParseError(.invalidUTF8, at: 1))  // end inside it
    }

    @Test func leadingZerosAreRefused() {
        #expect(parseError("01") == JSONParseError(.leadingZero, at: 0))
        #expect(parseError("-00") == JSONParseError(.leadingZero, at: 1))
        #expect(parseError("[1,007]") == JSONParseError(.leadingZero, at: 3))
        #expect(parseError("00.5") == JSONParseError(.leadingZero, at: 0))
    }

    @Test func malformedNumbersAreRefused() {
        #expect(parseError("-") == JSONParseError(.unexpectedEnd, at: 1))
        #expect(parseError("-a") == JSONParseError(.invalidNumber, at: 1))
        #expect(parseError("1.") == JSONParseError(.unexpectedEnd, at: 2))
        #expect(parseError("1.e5") == JSONParseError(.invalidNumber, at: 2))
        #expect(parseError("1e") == JSONParseError(.unexpectedEnd, at: 2))
        #expect(parseError("1e+") == JSONParseError(.unexpectedEnd, at: 3))
        #expect(parseError("[1e+]") == JSONParseError(.invalidNumber, at: 4))
        #expect(parseError(".5") == JSONParseError(.unexpectedByte(UInt8(ascii: ".")), at: 0))
        #expect(parseError("+1") == JSONParseError(.unexpectedByte(UInt8(ascii: "+")), at: 0))
        #expect(parseError("0x10") == JSONParseError(.trailingData, at: 1))
        #expect(parseError("1e400") == JSONParseError(.numberOutOfRange, at: 0))
        #expect(parseError("[-1e400]") == JSONParseError(.numberOutOfRange, at: 1))
    }

    @Test func nanAndInfinityAreRefused() {
        #expect(parseError("NaN") == JSONParseError(.unexpectedByte(UInt8(ascii: "N")), at: 0))
        #expect(parseError("[nan]") == JSONParseError(.unexpectedByte(UInt8(ascii: "a")), at: 2))
        #expect(parseError("Infinity") == JSONParseError(.unexpectedByte(UInt8(ascii: "I")), at: 0))
        #expect(parseError("-Infinity") == JSONParseError(.invalidNumber, at: 1))
        #expect(parseError(#"{"v":-inf}"#) == JSONParseError(.invalidNumber, at: 6))
    }

    @Test func trailingGarbageIsRefused() {
        #expect(parseError("{} x") == JSONParseError(.trailingData, at: 3))
        #expect(parseError("[1]]") == JSONParseError(.trailingData, at: 3))
        #expect(parseError("1 2") == JSONParseError(.trailingData, at: 2))
        #expect(parseError("true1") == JSONParseError(.trailingData, at: 4))
        #expect(parseError(bytes: Array("{}".utf8) + [0]) == JSONParseError(.trailingData, at: 2))
    }

    @Test func structuralErrors() {
        #expect(parseError("") == JSONParseError(.unexpectedEnd, at: 0))
        #expect(parseError("   ") == JSONParseError(.unexpectedEnd, at: 3))
        #expect(parseError("[1,]") == JSONParseError(.unexpectedByte(UInt8(ascii: "]")), at: 3))
        #expect(parseError(#"{"a":1,}"#) == JSONParseError(.unexpectedByte(UInt8(ascii: "}")), at: 7))
        #expect(parseError(#"{"a" 1}"#) == JSONParseError(.unexpectedByte(UInt8(ascii: "1")), at: 5))
        #expect(parseError("{a:1}") == JSONParseError(.unexpectedByte(UInt8(ascii: "a")), at: 1))
        #expect(parseError("[1 2]") == JSONParseError(.unexpectedByte(UInt8(ascii: "2")), at: 3))
        #expect(parseError(#"{"a":1"#) == JSONParseError(.unexpectedEnd, at: 6))
        #expect(parseError("[") == JSONParseError(.unexpectedEnd, at: 1))
        #expect(parseError(#""abc"#) == JSONParseError(.unexpectedEnd, at: 4))
        #expect(parseError("tru") == JSONParseError(.unexpectedEnd, at: 3))
        #expect(parseError("nul1") == JSONParseError(.unexpectedByte(UInt8(ascii: "1")), at: 3))
        #expect(parseError("'a'") == JSONParseError(.unexpectedByte(UInt8(ascii: "'")), at: 0))
        #expect(parseError("\u{A0}1") == JSONParseError(.unexpectedByte(0xC2), at: 0))  // only JSON's 4 spaces
        #expect(parseError(#"{"a":1,"a":2}"#) == JSONParseError(.duplicateKey("a"), at: 7))
    }

    @Test func nestingDepthIsBounded() throws {
        let limit = JSONValue.defaultMaxDepth
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        #expect(try JSONValue(parsing: deepest).array != nil)
        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        #expect(parseError(tooDeep) == JSONParseError(.tooDeep(limit: limit), at: limit))
        #expect(parseError(#"{"a":{"b":[{}]}}"#, maxDepth: 3) == JSONParseError(.tooDeep(limit: 3), at: 11))
        #expect(try JSONValue(parsing: #"{"a":{"b":[1]}}"#, maxDepth: 3).object != nil)
        // A datagram of brackets far past the limit stops at the limit instead of taking the stack.
        let flood = String(repeating: "[", count: 100_000)
        #expect(parseError(flood) == JSONParseError(.tooDeep(limit: limit), at: limit))
    }

    @Test func errorDescriptionNamesTheOffset() {
        #expect(JSONParseError(.trailingData, at: 3).description == "invalid JSON at byte 3: trailingData")
    }
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct JSONSerializeTests {
    @Test func compactInTheCallersKeyOrder() throws {
        let value: JSONValue = [
            "rxpk": [["tmst": 3_512_348_611, "freq": 866.349812, "ok": true]], "stat": nil, "a": "b",
        ]
        #expect(
            try value.serialized() == #"{"rxpk":[{"tmst":3512348611,"freq":866.349812,"ok":true}],"stat":null,"a":"b"}"#
        )
        var object = JSONObject()
        object["z"] = 1
        object["a"] = 2
        object["z"] = 3  // replaced in place, not moved
        #expect(try JSONValue.object(object).serialized() == #"{"z":3,"a":2}"#)
        object["z"] = nil
        #expect(try JSONValue.object(object).serialized() == #"{"a":2}"#)
        #expect(try JSONValue.array([]).serialized() == "[]")
        #expect(try JSONValue.object(JSONObject()).serialized() == "{}")
    }

    @Test func stringEscapes() throws {
        let value = JSONValue.string("q\" b\\ s/ \n\r\t\u{8}\u{C}\u{0}\u{1F}\u{7F} é😀")
        #expect(try value.serialized() == #""q\" b\\ s/ \n\r\t\b\f\u0000\u001f"# + "\u{7F} é😀\"")
        #expect(try JSONValue.string("a/b").serialized(escapingSlashes: true) == #""a\/b""#)
        #expect(try JSONValue.object(["k/\n": 1]).serialized() == #"{"k/\n":1}"#)
    }

    @Test func numbers() throws {
        #expect(try JSONValue.int(.min).serialized() == "-9223372036854775808")
        #expect(try JSONValue.double(0.1).serialized() == "0.1")
        // As Foundation's JSONEncoder spells them (measured): no ".0", no exponent below 2^53.
        #expect(try JSONValue.double(3).serialized() == "3")
        #expect(try JSONValue.double(-0.0).serialized() == "-0")
        #expect(try JSONValue.double(868.1).serialized() == "868.1")
        #expect(try JSONValue.double(1e15).serialized() == "1000000000000000")
        #expect(try JSONValue.double(1e16).serialized() == "1e+16")
        #expect(try JSONValue.double(1e300).serialized() == "1e+300")
        #expect(try JSONValue(parsing: JSONValue.double(3).serialized()) == .int(3))
        #expect(try JSONValue.double(1e-7).serialized() == "1e-07")
        #expect(try JSONValue.double(5e20).serialized() == "5e+20")
        #expect(throws: JSONSerializationError.nonFiniteNumber(.infinity)) {
            try JSONValue.double(.infinity).serialized()
        }
        #expect(throws: JSONSerializationError.self) { try JSONValue.array([.double(.nan)]).serialized() }
    }

    @Test func roundTrips() throws {
        let texts = [
            #"{"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,"data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"}]}"#,
            #"[null,true,false,0,-1,9223372036854775807,0.5,-2.5e-08,"",{"":[]}]"#,
            #""\"\\\b\f\n\r\t\u0001 é 😀""#,
            #"{"deep":[[[[{"x":[1,[2,[3]]]}]]]]}"#,
        ]
        for text in texts {
            let value = try JSONValue(parsing: text)
            let again = try value.serialized()
            #expect(try JSONValue(parsing: again) == value)
        }
        // Text already in compact form with no escapes to normalise comes back byte for byte.
        #expect(try JSONValue(parsing: texts[0]).serialized() == texts[0])
        #expect(try JSONValue(parsing: texts[3]).serialized() == texts[3])
    }

    /// Every scalar class through the escaper and back: the two sides agree on all of them.
    @Test func everyCodePointRoundTrips() throws {
        var text = ""
        for value in stride(from: 0, through: 0x10FFFF, by: 97) {
            if let scalar = Unicode.Scalar(UInt32(value)) { text.unicodeScalars.append(scalar) }
        }
        let value = JSONValue.string(text)
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }
}
