import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

extension StringProtocol {
    /// Without leading and trailing tabs and Unicode space separators (see `isBlank`): Foundation's
    /// `trimmingCharacters(in: .whitespaces)`, which is not in FoundationEssentials.
    public func trimmingBlanks() -> String { trimming(where: Self.isBlank) }

    /// Also without line breaks: `trimmingCharacters(in: .whitespacesAndNewlines)`.
    public func trimmingBlanksAndNewlines() -> String {
        trimming { Self.isBlank($0) || Self.isLineBreak($0) }
    }

    private func trimming(where isTrimmed: (Unicode.Scalar) -> Bool) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !isTrimmed($0) }),
            let last = scalars.lastIndex(where: { !isTrimmed($0) })
        else { return "" }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[first...last])
        return text
    }

    /// Foundation's `.whitespaces`: tab, the space separators (Zs), and U+200B ZERO WIDTH SPACE.
    private static func isBlank(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\t" || scalar == "\u{200B}" || scalar.properties.generalCategory == .spaceSeparator
    }

    private static func isLineBreak(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x0A...0x0D, 0x85, 0x2028, 0x2029: true
        default: false
        }
    }
}

/// A file error as one short phrase ("Permission denied"): the errno text of a `FileFailure`.
public func fileErrorText(_ error: any Error) -> String {
    (error as? FileFailure)?.reason ?? "\(error)"
}
