/// A gateway's 64-bit EUI. Written in topics and JSON as 16 lowercase hex digits (ChirpStack's form).
public struct GatewayEUI: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// Big-endian, as on the wire. `bytes` must hold exactly 8.
    init(bytes: ArraySlice<UInt8>) {
        precondition(bytes.count == 8)
        rawValue = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Parses 16 hex digits, either case; nil for anything else.
    public init?(hex: some StringProtocol) {
        let isHex = hex.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0 | 0x20) }
        guard hex.utf8.count == 16, isHex, let value = UInt64(hex, radix: 16) else { return nil }
        rawValue = value
    }

    public var bytes: [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: rawValue >> ($0 * 8)) } }

    public var description: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public static func < (lhs: GatewayEUI, rhs: GatewayEUI) -> Bool { lhs.rawValue < rhs.rawValue }
}
