/// A value that JSON cannot carry.
public enum JSONSerializationError: Error, Sendable, Equatable {
    /// NaN or an infinity: JSON has no spelling for them.
    case nonFiniteNumber(Double)
}

extension JSONValue {
    /// Compact JSON text (no whitespace), object members in their stored order. Strings escape `"`, `\` and
    /// the control characters (as `\n`, `\t`, … or `\u00XX`); everything else is written as UTF-8.
    /// `escapingSlashes` writes `/` as `\/`, as Foundation's JSONEncoder does unless told otherwise.
    public func serialized(escapingSlashes: Bool = false) throws(JSONSerializationError) -> String {
        var output: [UInt8] = []
        try write(into: &output, escapingSlashes: escapingSlashes)
        return String(decoding: output, as: UTF8.self)
    }

    /// JSONEncoder's `.prettyPrinted` layout: two-space indents, `"key" : value`, and an empty array or
    /// object written open over two lines (`[` newline newline `]`), as Foundation writes it.
    public func prettySerialized(escapingSlashes: Bool = false) throws(JSONSerializationError) -> String {
        var output: [UInt8] = []
        try writePretty(into: &output, depth: 0, escapingSlashes: escapingSlashes)
        return String(decoding: output, as: UTF8.self)
    }

    private func writePretty(into output: inout [UInt8], depth: Int, escapingSlashes: Bool)
        throws(JSONSerializationError)
    {
        func newline(_ level: Int) {
            output.append(UInt8(ascii: "\n"))
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
        }
        switch self {
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            if elements.isEmpty { output.append(UInt8(ascii: "\n")) }
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                newline(depth + 1)
                try element.writePretty(into: &output, depth: depth + 1, escapingSlashes: escapingSlashes)
            }
            newline(depth)
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            if object.isEmpty { output.append(UInt8(ascii: "\n")) }
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                newline(depth + 1)
                Self.writeString(member.key, into: &output, escapingSlashes: escapingSlashes)
                output.append(contentsOf: " : ".utf8)
                try member.value.writePretty(into: &output, depth: depth + 1, escapingSlashes: escapingSlashes)
            }
            newline(depth)
            output.append(UInt8(ascii: "}"))
        default:
            try write(into: &output, escapingSlashes: escapingSlashes)
        }
    }

    func write(into output: inout [UInt8], escapingSlashes: Bool) throws(JSONSerializationError) {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let flag): output.append(contentsOf: (flag ? "true" : "false").utf8)
        case .int(let number): output.append(contentsOf: String(number).utf8)
        case .unsigned(let number): output.append(contentsOf: String(number).utf8)
        case .double(let number):
            guard number.isFinite else { throw .nonFiniteNumber(number) }
            // Swift's shortest round-trip spelling ("0.1", "1e-07", "5e+20") less a trailing ".0": byte for
            // byte what Foundation's JSONEncoder writes, so moving an encoder onto this changes no output.
            // An integral Double therefore reads back as `.int` ("3"), the same number.
            let text = number.description
            output.append(contentsOf: (text.hasSuffix(".0") ? text.dropLast(2) : text[...]).utf8)
        case .string(let text): Self.writeString(text, into: &output, escapingSlashes: escapingSlashes)
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try element.write(into: &output, escapingSlashes: escapingSlashes)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, into: &output, escapingSlashes: escapingSlashes)
                output.append(UInt8(ascii: ":"))
                try member.value.write(into: &output, escapingSlashes: escapingSlashes)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ text: String, into output: inout [UInt8], escapingSlashes: Bool) {
        let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "/") where escapingSlashes:
                output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0..<0x20:
                output.append(contentsOf: "\\u00".utf8)
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0x0F)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
