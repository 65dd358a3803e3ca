import SluiceBase64
import SluiceJSON
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// What the listener publishes for a gateway.
public enum GatewayEvent: Sendable, Equatable {
    case up(UplinkFrame)
    case stats(GatewayStats)
    case ack(DownlinkTxAck)
    case conn(ConnState)
}

/// How events become MQTT payloads and downlink commands are read. JSON now; a protobuf encoding
/// can be added as a second conformer without touching the listener.
public protocol GatewayEventEncoding: Sendable {
    func encode(_ event: GatewayEvent) -> [UInt8]
    func decodeDownlink(_ payload: [UInt8]) throws(ConversionError) -> DownlinkFrame
}

/// ChirpStack's JSON (protobuf JSON mapping of gw.proto).
public struct ChirpStackJSONEncoding: GatewayEventEncoding {
    public init() {}

    public func encode(_ event: GatewayEvent) -> [UInt8] {
        switch event {
        case .up(let frame): GWMPJSON.encode(frame)
        case .stats(let stats): GWMPJSON.encode(stats)
        case .ack(let ack): GWMPJSON.encode(ack)
        case .conn(let state): GWMPJSON.encode(state)
        }
    }

    public func decodeDownlink(_ payload: [UInt8]) throws(ConversionError) -> DownlinkFrame {
        do {
            return try JSONValueDecoder().decode(DownlinkFrame.self, from: payload)
        } catch {
            throw ConversionError("downlink command: \(GWMPJSON.summary(error))")
        }
    }
}

/// The ChirpStack MQTT topic layout under a region prefix: `PREFIX/gateway/EUI/event/up` etc.
public struct GatewayTopics: Sendable, Equatable {
    public var prefix: String

    public init(prefix: String) { self.prefix = prefix }

    public func topic(for event: GatewayEvent, gateway: GatewayEUI) -> String {
        switch event {
        case .up: "\(prefix)/gateway/\(gateway)/event/up"
        case .stats: "\(prefix)/gateway/\(gateway)/event/stats"
        case .ack: "\(prefix)/gateway/\(gateway)/event/ack"
        case .conn: "\(prefix)/gateway/\(gateway)/state/conn"
        }
    }

    /// The subscription for downlink commands.
    public var commandFilter: String { "\(prefix)/gateway/+/command/down" }

    /// The gateway a `…/command/down` topic names, or nil for any other topic.
    public func gateway(inCommandTopic topic: String) -> GatewayEUI? {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        let prefixLevels = prefix.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count == prefixLevels.count + 4, levels.starts(with: prefixLevels) else { return nil }
        let tail = levels.suffix(4)
        guard tail[tail.startIndex] == "gateway", tail[tail.startIndex + 2] == "command",
            tail[tail.startIndex + 3] == "down"
        else { return nil }
        return GatewayEUI(hex: tail[tail.startIndex + 1])
    }
}

/// Why an `rxpk`, a `stat` or a downlink command could not be converted.
public struct ConversionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: rxpk → UplinkFrame

extension UplinkFrame {
    /// Converts one `rxpk` received at `receivedAt` (Unix milliseconds). Needs the payload, the frequency
    /// and a data rate it understands.
    public init(
        _ rxpk: RXPK,
        gateway: GatewayEUI,
        uplinkID: UInt32,
        receivedAt: Int64
    ) throws(ConversionError) {
        guard let data = rxpk.data, let payload = PayloadBase64.decode(data) else {
            throw ConversionError("rxpk without a base64 data field")
        }
        guard let freq = rxpk.freq, let hertz = UInt32(megahertz: freq) else {
            throw ConversionError("rxpk without a valid freq")
        }
        let modulation: Modulation
        switch (rxpk.modu?.uppercased(), rxpk.datr) {
        case ("LORA", let datr?):
            guard let lora = datr.loraParameters else { throw ConversionError("rxpk with LoRa datr \(datr)") }
            modulation = Modulation(
                lora: LoraModulationInfo(
                    bandwidth: lora.bandwidth,
                    spreadingFactor: lora.spreadingFactor,
                    codeRate: CodeRate.name(forLegacy: rxpk.codr)
                )
            )
        case ("FSK", .fsk(let rate)?):
            modulation = Modulation(fsk: FskModulationInfo(datarate: rate))
        default:
            throw ConversionError(
                "rxpk with modulation \(rxpk.modu ?? "none") and datr \(rxpk.datr.map { "\($0)" } ?? "none")"
            )
        }
        let crcStatus =
            switch rxpk.stat {
            case .some(1): "CRC_OK"
            case .some(-1): "BAD_CRC"
            default: "NO_CRC"
            }
        let tmst = rxpk.tmst ?? 0
        self.init(
            phyPayload: Base64.encode(payload),
            txInfo: UplinkTxInfo(frequency: hertz, modulation: modulation),
            rxInfo: UplinkRxInfo(
                gatewayId: "\(gateway)",
                uplinkId: uplinkID,
                gwTime: rxpk.time,
                nsTime: Timestamps.rfc3339(receivedAt),
                timeSinceGpsEpoch: rxpk.tmms.map { Timestamps.duration(milliseconds: $0) },
                rssi: rxpk.rssi ?? rxpk.rssis ?? 0,
                snr: rxpk.lsnr,
                channel: rxpk.chan ?? 0,
                rfChain: rxpk.rfch ?? 0,
                board: rxpk.brd,
                context: Base64.encode([
                    UInt8(tmst >> 24), UInt8(tmst >> 16 & 0xFF), UInt8(tmst >> 8 & 0xFF), UInt8(tmst & 0xFF),
                ]),
                crcStatus: crcStatus
            )
        )
    }
}

// MARK: stat → GatewayStats

extension GatewayStats {
    public init(_ stat: Stat, gateway: GatewayEUI, receivedAt: Int64) {
        var location: Location? = nil
        if let latitude = stat.lati, let longitude = stat.long, latitude.isFinite, longitude.isFinite,
            latitude != 0 || longitude != 0
        {
            location = Location(
                latitude: latitude,
                longitude: longitude,
                altitude: Double(stat.alti ?? 0),
                source: "GPS"
            )
        }
        var metadata: [String: String] = [:]
        if let rxfw = stat.rxfw { metadata["rxfw"] = "\(rxfw)" }
        if let ackr = stat.ackr, ackr.isFinite { metadata["ackr"] = "\(ackr)" }
        self.init(
            gatewayId: "\(gateway)",
            time: stat.time.flatMap(Timestamps.fromStatTime) ?? Timestamps.rfc3339(receivedAt),
            location: location,
            rxPacketsReceived: stat.rxnb ?? 0,
            rxPacketsReceivedOk: stat.rxok ?? 0,
            txPacketsReceived: stat.dwnb ?? 0,
            txPacketsEmitted: stat.txnb ?? 0,
            metadata: metadata.isEmpty ? nil : metadata
        )
    }
}

// MARK: DownlinkFrameItem → txpk

extension DownlinkFrameItem {
    /// The `txpk` for this item. Delay timing needs the uplink's context (its 4-byte `tmst`).
    public func txpk() throws(ConversionError) -> TXPK {
        guard let payload = PayloadBase64.decode(phyPayload), !payload.isEmpty, payload.count <= 255 else {
            throw ConversionError("phyPayload is not base64 of 1 to 255 bytes")
        }
        var txpk = TXPK(
            freq: Double(txInfo.frequency) / 1_000_000,
            rfch: 0,
            powe: txInfo.power ?? 0,
            size: UInt32(payload.count),
            data: Base64.encode(payload)
        )
        if let board = txInfo.board, board != 0 { txpk.brd = board }
        if let antenna = txInfo.antenna, antenna != 0 { txpk.ant = antenna }
        switch (txInfo.modulation.lora, txInfo.modulation.fsk) {
        case (let lora?, nil):
            guard (5...12).contains(lora.spreadingFactor), lora.bandwidth >= 1000, lora.bandwidth % 1000 == 0 else {
                throw ConversionError("LoRa modulation with SF\(lora.spreadingFactor) and bandwidth \(lora.bandwidth)")
            }
            txpk.modu = "LORA"
            txpk.datr = .lora("SF\(lora.spreadingFactor)BW\(lora.bandwidth / 1000)")
            txpk.codr = CodeRate.legacy(forName: lora.codeRate) ?? lora.codeRateLegacy ?? "4/5"
            txpk.ipol = lora.polarizationInversion ?? false
            if let preamble = lora.preamble, preamble > 0 { txpk.prea = preamble }
            if lora.noCrc == true { txpk.ncrc = true }
        case (nil, let fsk?):
            txpk.modu = "FSK"
            txpk.datr = .fsk(fsk.datarate)
            txpk.fdev = fsk.frequencyDeviation
        default:
            throw ConversionError("modulation must hold exactly one of lora and fsk")
        }
        let timing = txInfo.timing ?? Timing(immediately: .init())
        switch (timing.immediately, timing.delay, timing.gpsEpoch) {
        case (_?, nil, nil):
            txpk.imme = true
        case (nil, let delay?, nil):
            guard let micros = Timestamps.microseconds(duration: delay.delay) else {
                throw ConversionError("timing.delay.delay is not a duration: \(delay.delay)")
            }
            guard let context = txInfo.context.flatMap(PayloadBase64.decode), context.count >= 4 else {
                throw ConversionError("delay timing needs the uplink's 4-byte context")
            }
            let tmst = context.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            txpk.tmst = tmst &+ UInt32(truncatingIfNeeded: micros)  // the counter wraps every ~71 minutes
        case (nil, nil, let epoch?):
            guard let micros = Timestamps.microseconds(duration: epoch.timeSinceGpsEpoch) else {
                throw ConversionError("timing.gpsEpoch is not a duration: \(epoch.timeSinceGpsEpoch)")
            }
            txpk.tmms = micros / 1000
        default:
            throw ConversionError("timing must hold exactly one of immediately, delay and gpsEpoch")
        }
        return txpk
    }
}

// MARK: Small helpers

extension UInt32 {
    /// Hz from the forwarder's MHz; nil unless positive and in range.
    fileprivate init?(megahertz: Double) {
        let hertz = (megahertz * 1_000_000).rounded()
        guard hertz.isFinite, hertz > 0, hertz <= Double(UInt32.max) else { return nil }
        self.init(hertz)
    }
}

/// LoRa code rates: the forwarder's `4/5` and gw.proto's `CR_4_5`.
enum CodeRate {
    static func name(forLegacy legacy: String?) -> String {
        guard let legacy else { return "CR_UNDEFINED" }
        let upper = legacy.uppercased()
        if upper.hasSuffix("LI") {
            return "CR_LI_" + upper.dropLast(2).replacingText("/", with: "_")
        }
        let name = "CR_" + upper.replacingText("/", with: "_")
        return ["CR_4_5", "CR_4_6", "CR_4_7", "CR_4_8"].contains(name) ? name : "CR_UNDEFINED"
    }

    static func legacy(forName name: String?) -> String? {
        switch name {
        case "CR_4_5": "4/5"
        case "CR_4_6": "4/6"
        case "CR_4_7": "4/7"
        case "CR_4_8": "4/8"
        case "CR_LI_4_5": "4/5LI"
        case "CR_LI_4_6": "4/6LI"
        case "CR_LI_4_8": "4/8LI"
        default: nil
        }
    }
}

/// Base64 as both sides write it: standard alphabet with padding out (`Base64.encode`); in, also the
/// URL-safe alphabet and missing or partial padding.
enum PayloadBase64 {
    static func decode(_ text: String) -> [UInt8]? {
        var normalized = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        let remainder = normalized.utf8.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { normalized += String(repeating: "=", count: 4 - remainder) }
        return Base64.decode(normalized)
    }
}

enum Timestamps {
    /// RFC 3339 UTC with milliseconds (`milliseconds` since the Unix epoch), as protobuf JSON writes a
    /// Timestamp.
    static func rfc3339(_ milliseconds: Int64) -> String { ISO8601Text.utc(milliseconds: milliseconds) }

    /// `stat.time` is `2014-01-12 08:59:28 GMT`; returns `2014-01-12T08:59:28Z`, or nil if it is not that shape.
    static func fromStatTime(_ text: String) -> String? {
        let parts = text.split(separator: " ")
        guard parts.count == 3, parts[2] == "GMT" || parts[2] == "UTC", parts[0].count == 10, parts[1].count == 8,
            parts[0].allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }),
            parts[1].allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ":") })
        else { return nil }
        return "\(parts[0])T\(parts[1])Z"
    }

    /// A protobuf Duration string for a number of milliseconds: `1234.567s`.
    static func duration(milliseconds: UInt64) -> String {
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)s"
    }

    /// Parses a non-negative protobuf Duration (`1s`, `1.5s`, `0.000001s`) into microseconds.
    static func microseconds(duration: String) -> UInt64? {
        guard duration.hasSuffix("s") else { return nil }
        let number = duration.dropLast()
        let pieces = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = pieces.first, !whole.isEmpty, whole.count <= 12, whole.allSatisfy(\.isASCIINumber),
            let seconds = UInt64(whole)
        else { return nil }
        var micros: UInt64 = 0
        if pieces.count == 2 {
            let fraction = pieces[1]
            guard !fraction.isEmpty, fraction.count <= 9, fraction.allSatisfy(\.isASCIINumber) else { return nil }
            let padded = (fraction + String(repeating: "0", count: 9 - fraction.count)).prefix(6)
            micros = UInt64(padded) ?? 0
        }
        return seconds * 1_000_000 + micros
    }
}

extension Character {
    fileprivate var isASCIINumber: Bool { isASCII && isNumber }
}
