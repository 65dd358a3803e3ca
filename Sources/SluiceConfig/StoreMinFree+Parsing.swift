extension Directive {
    /// `store_min_free`: a size (`64MB`, `0` for no guard) or a percentage of the filesystem (`5%`).
    func storeMinFree() throws(ConfigError) -> StoreMinFree {
        let word = try singleToken()
        guard word.hasSuffix("%") else { return .bytes(try byteSize(0...Int.max)) }
        guard let percent = Double(word.dropLast()), percent.isFinite, (0...90).contains(percent) else {
            throw error(
                .badValue,
                "expected a percentage of the filesystem from 0% to 90%, or a size such as 64MB, got '\(word)'"
            )
        }
        return .percent(percent)
    }
}
