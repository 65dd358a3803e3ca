/// How bridge log lines name things, so every line reads the same.
extension Duration {
    /// `2.1 s`: seconds with one decimal, for log lines.
    public var logText: String {
        let (seconds, attoseconds) = components
        let tenths = (Double(seconds) * 10 + Double(attoseconds) / 1e17).rounded()
        let whole = Int64(tenths) / 10
        return "\(whole).\(abs(Int64(tenths) % 10)) s"
    }
}

extension BridgeLinkConfiguration {
    /// `central (127.0.0.1:1884)`: the bridge and the address of `index`.
    func named(address index: Int) -> String {
        let label = index < addressLabels.count ? addressLabels[index] : "address \(index)"
        return "\(name) (\(label))"
    }
}
