import SluiceJSON
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

// The JSON bodies of PROTOCOL.TXT §4–§6. Every field is optional at this layer so that one odd
// `rxpk` does not cost the whole datagram: a field of the wrong type is a bad datagram, a missing
// field is judged when the packet is converted (see `GatewayEvents.swift`).

/// PUSH_DATA body: `{"rxpk":[…], "stat":{…}}`, either or both.
public struct PushDataBody: Codable, Sendable, Equatable {
    public var rxpk: [RXPK]?
    public var stat: Stat?

    public init(rxpk: [RXPK]? = nil, stat: Stat? = nil) {
        self.rxpk = rxpk
        self.stat = stat
    }
}

/// PULL_RESP body: `{"txpk":{…}}`.
public struct PullRespBody: Codable, Sendable, Equatable {
    public var txpk: TXPK

    public init(txpk: TXPK) { self.txpk = txpk }
}

/// TX_ACK body: `{"txpk_ack":{"error":"…"}}`.
public struct TxAckBody: Codable, Sendable, Equatable {
    public var txpkAck: TxPkAck?

    public init(txpkAck: TxPkAck?) { self.txpkAck = txpkAck }

    enum CodingKeys: String, CodingKey { case txpkAck = "txpk_ack" }
}

/// A LoRa data rate is a string (`"SF7BW125"`), an FSK one a number of bits per second.
public enum DataRate: Codable, Sendable, Equatable {
    case lora(String)
    case fsk(UInt32)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .lora(text)
        } else {
            self = .fsk(try container.decode(UInt32.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .lora(let text): try container.encode(text)
        case .fsk(let rate): try container.encode(rate)
        }
    }

    /// `SF7BW125` → (7, 125000 Hz); nil for anything else.
    public var loraParameters: (spreadingFactor: UInt32, bandwidth: UInt32)? {
        guard case .lora(let text) = self else { return nil }
        let upper = text.uppercased()
        guard upper.hasPrefix("SF"), let bw = upper.firstRange(ofText: "BW") else { return nil }
        guard let sf = UInt32(upper[upper.index(upper.startIndex, offsetBy: 2)..<bw.lowerBound]),
            let khz = UInt32(upper[bw.upperBound...]), (5...12).contains(sf), khz > 0, khz <= 1625
        else { return nil }
        return (sf, khz * 1000)
    }
}

/// One received radio packet (PROTOCOL.TXT §4).
public struct RXPK: Codable, Sendable, Equatable {
    /// UTC time of reception, ISO 8601 "compact" (`2013-03-31T16:21:17.528002Z`).
    public var time: String?
    /// GPS time of reception, milliseconds since 1980-01-06.
    public var tmms: UInt64?
    /// Concentrator's internal microsecond counter at reception (wraps at 2^32).
    public var tmst: UInt32?
    /// Centre frequency in MHz.
    public var freq: Double?
    public var chan: UInt32?
    public var rfch: UInt32?
    /// Board and antenna of newer (SX1302) forwarders.
    public var brd: UInt32?
    /// CRC status: 1 OK, -1 failed, 0 no CRC.
    public var stat: Int?
    /// `LORA` or `FSK`.
    public var modu: String?
    public var datr: DataRate?
    /// LoRa coding rate, e.g. `4/5`.
    public var codr: String?
    public var rssi: Int?
    /// Per-channel RSSI of SX1302 forwarders, used when `rssi` is absent.
    public var rssis: Int?
    /// LoRa SNR in dB.
    public var lsnr: Double?
    public var foff: Int?
    public var size: UInt32?
    /// The PHY payload, base64.
    public var data: String?

    public init(
        time: String? = nil,
        tmms: UInt64? = nil,
        tmst: UInt32? = nil,
        freq: Double? = nil,
        chan: UInt32? = nil,
        rfch: UInt32? = nil,
        brd: UInt32? = nil,
        stat: Int? = nil,
        modu: String? = nil,
        datr: DataRate? = nil,
        codr: String? = nil,
        rssi: Int? = nil,
        rssis: Int? = nil,
        lsnr: Double? = nil,
        foff: Int? = nil,
        size: UInt32? = nil,
        data: String? = nil
    ) {
        self.time = time
        self.tmms = tmms
        self.tmst = tmst
        self.freq = freq
        self.chan = chan
        self.rfch = rfch
        self.brd = brd
        self.stat = stat
        self.modu = modu
        self.datr = datr
        self.codr = codr
        self.rssi = rssi
        self.rssis = rssis
        self.lsnr = lsnr
        self.foff = foff
        self.size = size
        self.data = data
    }
}

/// Gateway status (PROTOCOL.TXT §4).
public struct Stat: Codable, Sendable, Equatable {
    /// UTC system time, `2014-01-12 08:59:28 GMT`.
    public var time: String?
    public var lati: Double?
    public var long: Double?
    public var alti: Int?
    /// Radio packets received / with a valid CRC / forwarded.
    public var rxnb: UInt32?
    public var rxok: UInt32?
    public var rxfw: UInt32?
    /// Percentage of upstream datagrams acknowledged.
    public var ackr: Double?
    /// Downlink datagrams received / packets emitted.
    public var dwnb: UInt32?
    public var txnb: UInt32?

    public init(
        time: String? = nil,
        lati: Double? = nil,
        long: Double? = nil,
        alti: Int? = nil,
        rxnb: UInt32? = nil,
        rxok: UInt32? = nil,
        rxfw: UInt32? = nil,
        ackr: Double? = nil,
        dwnb: UInt32? = nil,
        txnb: UInt32? = nil
    ) {
        self.time = time
        self.lati = lati
        self.long = long
        self.alti = alti
        self.rxnb = rxnb
        self.rxok = rxok
        self.rxfw = rxfw
        self.ackr = ackr
        self.dwnb = dwnb
        self.txnb = txnb
    }
}

/// One packet to transmit (PROTOCOL.TXT §6).
public struct TXPK: Codable, Sendable, Equatable {
    /// Send at once, ignoring `tmst`/`tmms`.
    public var imme: Bool?
    /// Send when the concentrator counter reaches this value (µs).
    public var tmst: UInt32?
    /// Send at this GPS time (ms since 1980-01-06).
    public var tmms: UInt64?
    /// MHz.
    public var freq: Double?
    public var rfch: UInt32?
    /// dBm.
    public var powe: Int?
    public var modu: String?
    public var datr: DataRate?
    public var codr: String?
    /// FSK frequency deviation in Hz.
    public var fdev: UInt32?
    /// LoRa polarization inversion (true for downlinks to devices).
    public var ipol: Bool?
    public var prea: UInt32?
    public var size: UInt32?
    public var data: String?
    /// Send without CRC.
    public var ncrc: Bool?
    public var brd: UInt32?
    public var ant: UInt32?

    public init(
        imme: Bool? = nil,
        tmst: UInt32? = nil,
        tmms: UInt64? = nil,
        freq: Double? = nil,
        rfch: UInt32? = nil,
        powe: Int? = nil,
        modu: String? = nil,
        datr: DataRate? = nil,
        codr: String? = nil,
        fdev: UInt32? = nil,
        ipol: Bool? = nil,
        prea: UInt32? = nil,
        size: UInt32? = nil,
        data: String? = nil,
        ncrc: Bool? = nil,
        brd: UInt32? = nil,
        ant: UInt32? = nil
    ) {
        self.imme = imme
        self.tmst = tmst
        self.tmms = tmms
        self.freq = freq
        self.rfch = rfch
        self.powe = powe
        self.modu = modu
        self.datr = datr
        self.codr = codr
        self.fdev = fdev
        self.ipol = ipol
        self.prea = prea
        self.size = size
        self.data = data
        self.ncrc = ncrc
        self.brd = brd
        self.ant = ant
    }
}

/// The gateway's verdict on a PULL_RESP (PROTOCOL.TXT §6, TX_ACK).
public struct TxPkAck: Codable, Sendable, Equatable {
    /// `NONE` or one of TOO_LATE, TOO_EARLY, COLLISION_PACKET, COLLISION_BEACON, TX_FREQ, TX_POWER,
    /// GPS_UNLOCKED.
    public var error: String?
    /// Newer forwarders send a warning instead of an error when they clamp the power (`TX_POWER`).
    public var warn: String?
    public var value: Int?

    public init(error: String? = nil, warn: String? = nil, value: Int? = nil) {
        self.error = error
        self.warn = warn
        self.value = value
    }
}

enum GWMPJSON {
    static func decode<Body: Decodable>(_ bytes: ArraySlice<UInt8>, _ identifier: GWMPIdentifier) throws(GWMPError)
        -> Body
    {
        // The reference forwarder terminates its JSON with a NUL on some paths; strip trailing ones.
        var json = bytes
        while let last = json.last, last == 0 { json.removeLast() }
        guard !json.isEmpty else { throw GWMPError(.badJSON, "\(identifier) without a JSON body") }
        do {
            return try JSONValueDecoder().decode(Body.self, from: json)
        } catch {
            throw GWMPError(.badJSON, "\(identifier): \(Self.summary(error))")
        }
    }

    static func encode(_ body: some Encodable) -> [UInt8] {
        // Sorted keys, slashes unescaped: the bytes Foundation's JSONEncoder wrote with `.sortedKeys` and
        // `.withoutEscapingSlashes` (SluiceJSON's tests compare the two). Encoding these plain structs cannot
        // fail (no non-finite numbers: they come from JSON or from `TXPK` values built by
        // `DownlinkFrame.txpk`, which rejects them).
        return (try? JSONValueEncoder(sortingKeys: true).encodeText(body)) ?? Array("{}".utf8)
    }

    /// A one-line reason that does not echo the whole input back into the log.
    static func summary(_ error: any Error) -> String {
        switch error {
        case let error as JSONParseError: "not valid JSON (\(error.description.prefix(80)))"
        case DecodingError.dataCorrupted(let context): "not valid JSON (\(context.debugDescription.prefix(80)))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.keyNotFound(let key, _): "missing \(key.stringValue)"
        default: "undecodable"
        }
    }
}
