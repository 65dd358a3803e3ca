// The gateway messages of ChirpStack v4 (chirpstack/api/proto/gw/gw.proto) in their protobuf JSON
// form: camelCase field names, bytes as base64, enums by name, Timestamp as RFC 3339, Duration as
// "1.5s". Only the fields a Semtech UDP gateway can fill are modelled.

/// `gw.UplinkFrame`: one received radio packet (one per `rxpk`).
public struct UplinkFrame: Codable, Sendable, Equatable {
    /// The LoRaWAN PHYPayload, base64.
    public var phyPayload: String
    public var txInfo: UplinkTxInfo
    public var rxInfo: UplinkRxInfo
}

public struct UplinkTxInfo: Codable, Sendable, Equatable {
    /// Hz.
    public var frequency: UInt32
    public var modulation: Modulation
}

/// `gw.Modulation`: exactly one of `lora` and `fsk` is set.
public struct Modulation: Codable, Sendable, Equatable {
    public var lora: LoraModulationInfo?
    public var fsk: FskModulationInfo?

    public init(lora: LoraModulationInfo? = nil, fsk: FskModulationInfo? = nil) {
        self.lora = lora
        self.fsk = fsk
    }
}

public struct LoraModulationInfo: Codable, Sendable, Equatable {
    /// Hz.
    public var bandwidth: UInt32
    public var spreadingFactor: UInt32
    /// `gw.CodeRate` name: CR_4_5 … CR_4_8, CR_LI_4_5 … (CR_UNDEFINED when unknown).
    public var codeRate: String?
    /// The older string form (`4/5`), accepted in downlinks when `codeRate` is absent.
    public var codeRateLegacy: String?
    public var polarizationInversion: Bool?
    /// Preamble length for TX (0 or absent: the gateway's default).
    public var preamble: UInt32?
    /// TX without CRC.
    public var noCrc: Bool?

    public init(
        bandwidth: UInt32,
        spreadingFactor: UInt32,
        codeRate: String?,
        codeRateLegacy: String? = nil,
        polarizationInversion: Bool? = nil,
        preamble: UInt32? = nil,
        noCrc: Bool? = nil
    ) {
        self.bandwidth = bandwidth
        self.spreadingFactor = spreadingFactor
        self.codeRate = codeRate
        self.codeRateLegacy = codeRateLegacy
        self.polarizationInversion = polarizationInversion
        self.preamble = preamble
        self.noCrc = noCrc
    }
}

public struct FskModulationInfo: Codable, Sendable, Equatable {
    /// Hz.
    public var frequencyDeviation: UInt32?
    /// Bits per second.
    public var datarate: UInt32

    public init(frequencyDeviation: UInt32? = nil, datarate: UInt32) {
        self.frequencyDeviation = frequencyDeviation
        self.datarate = datarate
    }
}

public struct UplinkRxInfo: Codable, Sendable, Equatable {
    /// 16 lowercase hex digits.
    public var gatewayId: String
    /// Random per uplink, to correlate logs.
    public var uplinkId: UInt32
    /// Gateway receive time (from `rxpk.time`, set when the gateway has GPS or NTP time).
    public var gwTime: String?
    /// When Sluice received the datagram (RFC 3339, UTC).
    public var nsTime: String?
    /// From `rxpk.tmms`, as a protobuf Duration ("1234.567s").
    public var timeSinceGpsEpoch: String?
    public var rssi: Int
    public var snr: Double?
    public var channel: UInt32
    public var rfChain: UInt32
    public var board: UInt32?
    /// Gateway context to return with a Class A downlink: the 4-byte big-endian `tmst`, base64.
    public var context: String
    /// CRC_OK, BAD_CRC or NO_CRC.
    public var crcStatus: String
}

/// `gw.GatewayStats` (from `stat`).
public struct GatewayStats: Codable, Sendable, Equatable {
    public var gatewayId: String
    public var time: String
    public var location: Location?
    public var rxPacketsReceived: UInt32
    public var rxPacketsReceivedOk: UInt32
    public var txPacketsReceived: UInt32
    public var txPacketsEmitted: UInt32
    /// Extra values of the `stat` object: `rxfw` (packets forwarded) and `ackr` (% acknowledged).
    public var metadata: [String: String]?
}

/// `common.Location`.
public struct Location: Codable, Sendable, Equatable {
    public var latitude: Double
    public var longitude: Double
    public var altitude: Double
    /// `GPS` for a location reported by the gateway.
    public var source: String
}

/// `gw.DownlinkFrame`: published by the network server on `…/command/down`.
public struct DownlinkFrame: Codable, Sendable, Equatable {
    public var downlinkId: UInt32
    /// When present it must equal the EUI in the topic.
    public var gatewayId: String?
    /// Transmission opportunities in order of preference (e.g. RX1, RX2); at most one is sent.
    public var items: [DownlinkFrameItem]

    public init(downlinkId: UInt32, gatewayId: String? = nil, items: [DownlinkFrameItem]) {
        self.downlinkId = downlinkId
        self.gatewayId = gatewayId
        self.items = items
    }
}

public struct DownlinkFrameItem: Codable, Sendable, Equatable {
    /// Base64.
    public var phyPayload: String
    public var txInfo: DownlinkTxInfo

    public init(phyPayload: String, txInfo: DownlinkTxInfo) {
        self.phyPayload = phyPayload
        self.txInfo = txInfo
    }
}

public struct DownlinkTxInfo: Codable, Sendable, Equatable {
    /// Hz.
    public var frequency: UInt32
    /// dBm EIRP.
    public var power: Int?
    public var modulation: Modulation
    public var board: UInt32?
    public var antenna: UInt32?
    /// Absent means immediately.
    public var timing: Timing?
    /// The uplink's `rxInfo.context` for a Class A downlink (base64).
    public var context: String?

    public init(
        frequency: UInt32,
        power: Int?,
        modulation: Modulation,
        board: UInt32? = nil,
        antenna: UInt32? = nil,
        timing: Timing?,
        context: String?
    ) {
        self.frequency = frequency
        self.power = power
        self.modulation = modulation
        self.board = board
        self.antenna = antenna
        self.timing = timing
        self.context = context
    }
}

/// `gw.Timing`: exactly one of the three.
public struct Timing: Codable, Sendable, Equatable {
    public struct Immediately: Codable, Sendable, Equatable { public init() {} }
    public struct Delay: Codable, Sendable, Equatable {
        /// Duration after the uplink's `tmst` (from `context`), e.g. "1s".
        public var delay: String
        public init(delay: String) { self.delay = delay }
    }
    public struct GPSEpoch: Codable, Sendable, Equatable {
        public var timeSinceGpsEpoch: String
        public init(timeSinceGpsEpoch: String) { self.timeSinceGpsEpoch = timeSinceGpsEpoch }
    }

    public var immediately: Immediately?
    public var delay: Delay?
    public var gpsEpoch: GPSEpoch?

    public init(immediately: Immediately? = nil, delay: Delay? = nil, gpsEpoch: GPSEpoch? = nil) {
        self.immediately = immediately
        self.delay = delay
        self.gpsEpoch = gpsEpoch
    }
}

/// `gw.DownlinkTxAck`: one status per item of the DownlinkFrame, in order.
public struct DownlinkTxAck: Codable, Sendable, Equatable {
    public var gatewayId: String
    public var downlinkId: UInt32
    public var items: [Item]

    public struct Item: Codable, Sendable, Equatable {
        public var status: TxAckStatus
    }
}

/// `gw.TxAckStatus`. The forwarder's `txpk_ack.error` names map one to one; `NONE` is `OK`.
public enum TxAckStatus: String, Codable, Sendable, CaseIterable {
    case ignored = "IGNORED"
    case ok = "OK"
    case tooLate = "TOO_LATE"
    case tooEarly = "TOO_EARLY"
    case collisionPacket = "COLLISION_PACKET"
    case collisionBeacon = "COLLISION_BEACON"
    case txFrequency = "TX_FREQ"
    case txPower = "TX_POWER"
    case gpsUnlocked = "GPS_UNLOCKED"
    case queueFull = "QUEUE_FULL"
    case internalError = "INTERNAL_ERROR"
    case dutyCycleOverflow = "DUTY_CYCLE_OVERFLOW"

    /// From `txpk_ack.error`: absent, empty or `NONE` is success; an unknown word is an internal error.
    public init(txpkAckError error: String?) {
        guard let error, !error.isEmpty, error.uppercased() != "NONE" else {
            self = .ok
            return
        }
        self = TxAckStatus(rawValue: error.uppercased()) ?? .internalError
    }
}

/// `gw.ConnState`, retained on `…/state/conn`.
public struct ConnState: Codable, Sendable, Equatable {
    public var gatewayId: String
    /// ONLINE or OFFLINE.
    public var state: String
}
