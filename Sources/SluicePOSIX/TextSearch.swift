// Substring search and replacement without the stdlib's _StringProcessing: its generic `contains(_:)`,
// `replacing(_:with:)`, `firstRange(of:)` and `ranges(of:)` pull _StringProcessing and _RegexParser into
// the static binary, about 1 MB (issue 17, binary size), for the nine call sites Sluice had. Matching is
// by Character, as theirs is; the texts searched here are short (log lines, error texts, config names).

extension StringProtocol {
    /// The first range where `needle` occurs, nil if it does not; an empty needle matches at the start.
    public func firstRange(ofText needle: some StringProtocol) -> Range<Index>? {
        var start = startIndex
        while true {
            if let end = matchEnd(of: needle, at: start) { return start..<end }
            guard start < endIndex else { return nil }
            formIndex(after: &start)
        }
    }

    /// The last range where `needle` occurs (the one that starts last), nil if it does not.
    public func lastRange(ofText needle: some StringProtocol) -> Range<Index>? {
        var start = endIndex
        while true {
            if let end = matchEnd(of: needle, at: start) { return start..<end }
            guard start > startIndex else { return nil }
            formIndex(before: &start)
        }
    }

    public func containsText(_ needle: some StringProtocol) -> Bool { firstRange(ofText: needle) != nil }

    /// Every occurrence of `target`, left to right and not overlapping, replaced by `replacement`.
    public func replacingText(_ target: some StringProtocol, with replacement: some StringProtocol) -> String {
        guard !target.isEmpty else { return String(self) }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(ofText: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }

    /// Where `needle` ends if it occurs at `start`.
    private func matchEnd(of needle: some StringProtocol, at start: Index) -> Index? {
        var index = start
        for character in needle {
            guard index < endIndex, self[index] == character else { return nil }
            formIndex(after: &index)
        }
        return index
    }
}
