#if canImport(Glibc)
    import Glibc
#endif

// A note on the gateway table.
//
// Semtech UDP has no connection: a gateway is "online" while its PULL_DATA keep-alives (every
// 10 s by default) keep arriving, and the address of the last one is where downlinks go (it is
// the NAT mapping the keep-alive holds open). The table forgets a gateway when it goes offline,
// so it only ever holds gateways that spoke recently, and it is capped besides.
//
// A DownlinkFrame carries several transmission opportunities (RX1, RX2) but a PULL_RESP carries
// one `txpk`; as ChirpStack's gateway bridge does, the first item is sent, and each TX_ACK with
// an error sends the next one. The ack event lists one status per item: the outcome of each item
// tried and IGNORED for the rest.

/// The listener's rules, free of sockets and clocks: every event returns the actions to run.
/// `Address` is the socket address type (a string or integer in tests).
public struct GatewayTable<Address: Hashable & Sendable, Random: RandomNumberGenerator & Sendable>: Sendable {
    public struct Settings: Sendable {
        /// A gateway whose last PULL_DATA is older than this goes offline (milliseconds).
        public var keepAliveTimeout: Int64 = 30_000
        /// A PULL_RESP without TX_ACK after this is forgotten (milliseconds).
        public var downlinkAckTimeout: Int64 = 30_000
        /// Gateways tracked at once; PULL_DATA from more is ignored.
        public var maximumGateways = 10_000
        /// Downlinks awaiting TX_ACK at once; more are refused.
        public var maximumPendingDownlinks = 1_024

        public init() {}
    }

    public enum Action: Sendable {
        /// Send a datagram.
        case send(GWMPPacket, to: Address)
        /// Publish an event for a gateway.
        case publish(GatewayEvent, gateway: GatewayEUI)
        /// Something was dropped; the owner counts it and may log `detail`.
        case dropped(DropReason, gateway: GatewayEUI?, detail: String)
    }

    /// Drops after a datagram decoded (decode errors are `GWMPError`).
    public enum DropReason: String, Sendable, CaseIterable {
        /// A server-to-gateway packet type arrived at the server.
        case unexpectedPacket = "unexpected_packet"
        /// An `rxpk` without payload, frequency or a known data rate.
        case badRxpk = "bad_rxpk"
        /// A TX_ACK whose token matches no pending PULL_RESP.
        case unknownTxAck = "unknown_tx_ack"
        /// A downlink for a gateway that has sent no PULL_DATA recently.
        case gatewayOffline = "gateway_offline"
        /// A downlink command that is not a valid DownlinkFrame (or none of its items converts).
        case badDownlink = "bad_downlink"
        /// Table full (gateways or pending downlinks).
        case tableFull = "table_full"
        /// A PULL_RESP went unacknowledged.
        case downlinkAckTimeout = "downlink_ack_timeout"
    }

    private struct Gateway {
        var address: Address
        var lastPull: Int64
    }

    private struct PendingDownlink {
        var gateway: GatewayEUI
        var frame: DownlinkFrame
        /// One status per item tried so far.
        var statuses: [TxAckStatus]
        var sentAt: Int64
    }

    public var settings: Settings
    private var random: Random
    private var gateways: [GatewayEUI: Gateway] = [:]
    private var pending: [UInt16: PendingDownlink] = [:]

    public init(settings: Settings = Settings(), random: Random) {
        self.settings = settings
        self.random = random
    }

    public var onlineGateways: [GatewayEUI] { gateways.keys.sorted() }
    public var pendingDownlinkCount: Int { pending.count }
    public func address(of gateway: GatewayEUI) -> Address? { gateways[gateway]?.address }

    // MARK: Events

    /// A decoded datagram from `address`. `now` is monotonic milliseconds; `wallClock` (Unix milliseconds)
    /// dates events.
    public mutating func received(_ packet: GWMPPacket, from address: Address, now: Int64, wallClock: Int64) -> [Action]
    {
        switch packet {
        case .pushData(let token, let gateway, let body):
            // Acknowledge at once (PROTOCOL.TXT §3), then convert.
            var actions: [Action] = [.send(.pushAck(token: token), to: address)]
            for rxpk in body.rxpk ?? [] {
                do {
                    let frame = try UplinkFrame(rxpk, gateway: gateway, uplinkID: random.next(), receivedAt: wallClock)
                    actions.append(.publish(.up(frame), gateway: gateway))
                } catch {
                    actions.append(.dropped(.badRxpk, gateway: gateway, detail: error.description))
                }
            }
            if let stat = body.stat {
                actions.append(
                    .publish(.stats(GatewayStats(stat, gateway: gateway, receivedAt: wallClock)), gateway: gateway)
                )
            }
            return actions

        case .pullData(let token, let gateway):
            if gateways[gateway] == nil && gateways.count >= settings.maximumGateways {
                return [.dropped(.tableFull, gateway: gateway, detail: "\(gateways.count) gateways tracked")]
            }
            let wasOnline = gateways[gateway] != nil
            gateways[gateway] = Gateway(address: address, lastPull: now)
            var actions: [Action] = [.send(.pullAck(token: token), to: address)]
            if !wasOnline {
                actions.append(.publish(.conn(ConnState(gatewayId: "\(gateway)", state: "ONLINE")), gateway: gateway))
            }
            return actions

        case .txAck(let token, let gateway, let body):
            guard let downlink = pending[token], downlink.gateway == gateway else {
                return [.dropped(.unknownTxAck, gateway: gateway, detail: "token \(token)")]
            }
            pending[token] = nil
            return advance(downlink, status: TxAckStatus(txpkAckError: body?.txpkAck?.error), now: now)

        case .pushAck, .pullAck, .pullResp:
            return [.dropped(.unexpectedPacket, gateway: nil, detail: "\(packet.identifier) sent to the server")]
        }
    }

    /// A DownlinkFrame published for `gateway`.
    public mutating func downlink(_ frame: DownlinkFrame, for gateway: GatewayEUI, now: Int64) -> [Action] {
        if let named = frame.gatewayId, GatewayEUI(hex: named) != gateway {
            return [.dropped(.badDownlink, gateway: gateway, detail: "gatewayId \(named) differs from the topic")]
        }
        guard !frame.items.isEmpty else {
            return [.dropped(.badDownlink, gateway: gateway, detail: "downlink \(frame.downlinkId) without items")]
        }
        guard gateways[gateway] != nil else {
            return [
                .dropped(.gatewayOffline, gateway: gateway, detail: "downlink \(frame.downlinkId): no PULL_DATA seen")
            ]
        }
        guard pending.count < settings.maximumPendingDownlinks else {
            return [.dropped(.tableFull, gateway: gateway, detail: "\(pending.count) downlinks await TX_ACK")]
        }
        return sendNextItem(PendingDownlink(gateway: gateway, frame: frame, statuses: [], sentAt: now), now: now)
    }

    /// Time passed: keep-alive timeouts and forgotten downlinks.
    public mutating func tick(now: Int64) -> [Action] {
        var actions: [Action] = []
        for (eui, gateway) in gateways.sorted(by: { $0.key < $1.key })
        where now - gateway.lastPull > settings.keepAliveTimeout {
            gateways[eui] = nil
            actions.append(.publish(.conn(ConnState(gatewayId: "\(eui)", state: "OFFLINE")), gateway: eui))
        }
        for (token, downlink) in pending where now - downlink.sentAt > settings.downlinkAckTimeout {
            pending[token] = nil
            actions.append(
                .dropped(
                    .downlinkAckTimeout,
                    gateway: downlink.gateway,
                    detail: "downlink \(downlink.frame.downlinkId)"
                )
            )
        }
        return actions
    }

    /// The listener is stopping: every online gateway goes offline.
    public mutating func shutdown() -> [Action] {
        defer { gateways = [:] }
        return gateways.keys.sorted().map {
            .publish(.conn(ConnState(gatewayId: "\($0)", state: "OFFLINE")), gateway: $0)
        }
    }

    // MARK: Downlink items

    private mutating func advance(_ downlink: PendingDownlink, status: TxAckStatus, now: Int64) -> [Action] {
        var downlink = downlink
        downlink.statuses.append(status)
        if status == .ok || downlink.statuses.count == downlink.frame.items.count {
            return [finished(downlink)]
        }
        return sendNextItem(downlink, now: now)
    }

    /// Sends the first item not tried yet; items that do not convert count as INTERNAL_ERROR.
    private mutating func sendNextItem(_ downlink: PendingDownlink, now: Int64) -> [Action] {
        var downlink = downlink
        var actions: [Action] = []
        while downlink.statuses.count < downlink.frame.items.count {
            let item = downlink.frame.items[downlink.statuses.count]
            do {
                let txpk = try item.txpk()
                guard let address = gateways[downlink.gateway]?.address else { break }
                let token = freshToken()
                downlink.sentAt = now
                pending[token] = downlink
                actions.append(.send(.pullResp(token: token, PullRespBody(txpk: txpk)), to: address))
                return actions
            } catch {
                actions.append(.dropped(.badDownlink, gateway: downlink.gateway, detail: error.description))
                downlink.statuses.append(.internalError)
            }
        }
        actions.append(finished(downlink))
        return actions
    }

    private func finished(_ downlink: PendingDownlink) -> Action {
        let statuses =
            downlink.statuses + Array(repeating: .ignored, count: downlink.frame.items.count - downlink.statuses.count)
        let ack = DownlinkTxAck(
            gatewayId: "\(downlink.gateway)",
            downlinkId: downlink.frame.downlinkId,
            items: statuses.map { DownlinkTxAck.Item(status: $0) }
        )
        return .publish(.ack(ack), gateway: downlink.gateway)
    }

    /// A random token not in use (PROTOCOL.TXT: "random token"); the pending table is capped far
    /// below 65536, so this ends.
    private mutating func freshToken() -> UInt16 {
        while true {
            let token = UInt16.random(in: .min ... .max, using: &random)
            if pending[token] == nil { return token }
        }
    }
}
