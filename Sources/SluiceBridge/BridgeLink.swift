import MQTTCore
import SluicePOSIX

// Note on the bridge link (the durability contract, seen from the link):
// - Messages leave the queue only through `.remove(seqs:)` or `.deadLetter(seqs:reason:)`. For QoS 1
//   `.remove` is produced only by the remote's success PUBACK for the packet that carried them. A
//   failure PUBACK never removes: transient codes hold sending and retry, permanent ones dead-letter
//   (see RefusalPolicy.swift). A message in flight at the head of the window at `maxAttempts`
//   connection losses is a poison message: dead-lettered, named in the log, and the drain goes on.
// - Sending is a window: up to min(maxInflight, remote Receive Maximum) QoS 1 PUBLISHes in flight,
//   the retained notification included, sent in seq order, paced by `bridge_max_rate` if set.
//   Each PUBACK frees a slot and tops the window up with `.fetch(after:limit:)`
//   from the highest seq sent on this connection.
// - On every new connection the link fetches from the queue head (`after: nil`): whatever was not
//   acknowledged is sent again, in order (at-least-once; duplicates bounded by the window). When the
//   remote kept the session (persistent session, session present), such messages go out with DUP
//   set and their previous packet identifiers [MQTT-4.4.0-1].
// - Fetches are answered in order, exactly once each. A fetch asked on a connection that has since
//   closed is discarded when its answer arrives, so the new connection's order is never mixed up.
// - Time comes only from `tick(now:)`: packets are stamped with the latest tick, so timers have the
//   tick's granularity (the I/O layer ticks about once a second).

/// The bridge link state machine: one connection to a remote broker, with failover, backoff,
/// keep-alive, the in-flight window over the durable queue and `in` rules.
///
/// Generic over the instant type so tests drive time by hand (`ContinuousClock.Instant` in production).
/// Every event returns the actions to run, in order; the machine does no I/O.
///
/// What the I/O layer must honour:
/// - Run each event's actions in order (e.g. `.send` of a QoS 0 message before its `.remove`).
/// - After `.publishLocally(_:acknowledge:)` with a delivery, call `publishedLocally(_:)` once the
///   local broker has kept the message (committed, where it changed saved state).
/// - Answer every `.fetch(after:limit:)` exactly once with `fetched(_:)`, in the order asked, with
///   messages of seq > `after` in ascending seq order; a fetch must see every `.remove` issued before it.
/// - After `.connect`, call `connected()` or `connectionClosed(error:)`; after `.close`, call
///   `connectionClosed(error:)` once the channel is closed; after `.scheduleReconnect(after:)`, call
///   `reconnectTimerFired()` when the delay has passed (cancel the timer on shutdown).
/// - Call `tick(now:)` about once a second (timers have the tick's granularity); call `queueHasMore()`
///   after new messages for this bridge are committed.
public struct BridgeLink<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    private struct Attempt {
        var addressIndex: Int
        var startedAt: Instant?
        var usedBridgeBit: Bool = false
    }

    private struct Online {
        var addressIndex: Int
        /// This connection's MQTT client session: packet ids, the QoS 1 window (queue messages and the
        /// notification), SUBSCRIBE/UNSUBSCRIBE bookkeeping and inbound QoS 1/2 acknowledgement. One per
        /// connection: after a reconnect the link re-fetches from the queue head instead of resending
        /// the session's copies.
        var session: MQTTClientSession<Instant>
        /// The latest tick, for the session's bookkeeping.
        var clock: Instant
        var since: Instant?
        var sessionPresent: Bool
        var retainAvailable: Bool
        /// False when the remote's CONNACK says Maximum QoS 0: everything goes at QoS 0.
        var remoteAllowsQoS1: Bool
        /// The smaller of `bridge_max_packet_size` and the remote's Maximum Packet Size.
        var maxPacketSize: Int?
        /// packet id → queue seq, for QoS 1 queue messages the session has in flight.
        var inflight: [UInt16: UInt64] = [:]
        /// The highest seq sent (or passed over) on this connection; fetches continue after it.
        var cursor: UInt64? = nil
        var fetchOutstanding = false
        var lastFetchLimit = 0
        /// `queueHasMore()` arrived while a fetch was outstanding.
        var moreSignalled = false
        /// The last fetch came back short: nothing more until `queueHasMore()`.
        var drained = false
        /// The packet id of the link-state notification "1" while it awaits its PUBACK.
        var notificationId: UInt16? = nil
        var lastProgress: Instant?
        /// The last PUBLISH sent or received (`start_type lazy`'s idle timeout).
        var lastMessage: Instant?
        var stable = false
        /// seq → topic and size of QoS 1 messages in flight, for the log when one goes bad.
        var sent: [UInt64: SentMessage] = [:]
        /// Transiently refused seqs waiting to go again.
        var retry: Set<UInt64> = []
        /// While set, nothing is sent: a transient refusal's hold (nil instant: until the next tick).
        var hold: Instant?? = nil
        /// During a replay after a hold: seqs up to here were sent before; only those in `retry` go again.
        var replayEnd: UInt64? = nil
        /// The pacer ran out of tokens: top up at the next tick.
        var paced = false

        /// min(`maxInflight`, the remote's Receive Maximum).
        var window: Int { session.sendWindow }
        /// QoS 1 PUBLISHes awaiting their PUBACK: queue messages and the notification.
        var used: Int { session.inFlightCount }
    }

    private struct Closing {
        var addressIndex: Int
        /// The connection had reached a successful CONNACK.
        var established: Bool
        /// Why the link closed it, for the retry line once the socket is closed.
        var reason: BridgeCloseReason? = nil
    }

    private enum State {
        case idle
        case connecting(Attempt)
        case awaitingConnAck(Attempt)
        case online(Online)
        case closing(Closing)
        case waitingToReconnect(addressIndex: Int)
        case stopped
        /// Only while an event handler has taken the online state out to mutate it in place.
        case modifying
    }

    public private(set) var configuration: BridgeLinkConfiguration
    private var state: State = .idle
    private var backoff: Backoff
    private var random: any RandomNumberGenerator & Sendable
    private var now: Instant?
    /// Fetches asked on connections that have closed; their answers are dropped.
    private var staleFetches = 0
    /// seq → packet id of messages in flight when a connection dropped, for DUP resends.
    private var resendIds: [UInt64: UInt16] = [:]
    /// The remote refused the bridge protocol bit once: stop asking.
    private var bridgeBitRejected = false
    private var reportedConnected = false
    public private(set) var statistics = BridgeLinkStatistics()
    /// seq → connection losses while it was the oldest message in flight (poison detection).
    private var attempts: [UInt64: Int] = [:]
    /// seq → the acknowledged count at its last transient refusal, and refusals in a row without progress.
    private var refusalStrikes: [UInt64: (mark: UInt64, strikes: Int)] = [:]
    private var holdsWithoutProgress = 0
    private var pacer: DrainPacer<Instant>?
    private var warnings = WarningAggregator<Instant>()
    /// `sluice queue pause`: connected, but nothing is sent.
    public private(set) var paused = false

    /// The largest window: leaves packet identifiers for SUBSCRIBE and the notification.
    public static var maximumWindow: Int { 65_000 }

    public init(configuration: BridgeLinkConfiguration, random: some RandomNumberGenerator & Sendable) {
        self.configuration = configuration
        self.backoff = Backoff(base: configuration.restartBase, cap: configuration.restartCap)
        self.random = random
        self.pacer = configuration.maxRate.map {
            DrainPacer(messagesPerSecond: $0, bytesPerSecond: configuration.maxByteRate)
        }
    }

    /// True between a successful CONNACK and the end of that connection.
    public var isConnected: Bool {
        if case .online = state { return true }
        return false
    }

    /// Messages sent and not yet acknowledged on the current connection.
    public var inflightCount: Int {
        if case .online(let online) = state { return online.inflight.count }
        return 0
    }

    /// The current connection's window: min(`maxInflight`, the remote's Receive Maximum); 0 when offline.
    public var window: Int {
        if case .online(let online) = state { return online.window }
        return 0
    }

    // MARK: - Events

    /// `start_type lazy` and not connected or connecting: the runner reports the queue's depth.
    public var awaitsThreshold: Bool {
        guard case .lazy = configuration.startType, case .idle = state else { return false }
        return true
    }

    /// The queue holds `count` messages: a lazy link that waits starts at its threshold.
    public mutating func queued(count: Int) -> [BridgeAction] {
        guard case .lazy(let threshold, _) = configuration.startType, awaitsThreshold, count >= threshold else {
            return []
        }
        return [
            .log(.info, "bridge \(configuration.name): \(count) messages queued (threshold \(threshold)): connecting")
        ] + start()
    }

    /// Start connecting, to the first address.
    public mutating func start() -> [BridgeAction] {
        switch state {
        case .idle:
            state = .connecting(Attempt(addressIndex: 0, startedAt: now))
            return [.connect(addressIndex: 0)]
        case .connecting, .awaitingConnAck, .online, .closing, .waitingToReconnect, .stopped:
            return [.log(.debug, "bridge \(configuration.name): start ignored, already started")]
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// The TCP (and TLS) connection is up: send CONNECT.
    public mutating func connected() -> [BridgeAction] {
        switch state {
        case .connecting(var attempt):
            let bridgeBit = configuration.tryPrivate && configuration.protocolVersion != .v5 && !bridgeBitRejected
            attempt.usedBridgeBit = bridgeBit
            attempt.startedAt = now
            state = .awaitingConnAck(attempt)
            var connect = makeConnect()
            connect.isBridge = bridgeBit
            return [.sendConnect(connect)]
        case .idle, .awaitingConnAck, .online, .closing, .waitingToReconnect, .stopped:
            return [.log(.warning, "bridge \(configuration.name): unexpected connected() event ignored")]
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// A packet from the remote.
    public mutating func received(_ packet: Packet) -> [BridgeAction] {
        switch state {
        case .awaitingConnAck(let attempt):
            guard case .connAck(let connAck) = packet else {
                return close(
                    Closing(addressIndex: attempt.addressIndex, established: false),
                    .protocolError("expected CONNACK, got \(packet.type)")
                )
            }
            if connAck.reasonCode.isFailure {
                noteConnectFailure(
                    "connack_\(connAck.reasonCode.hexLabel)",
                    "CONNACK refused: \(connAck.reasonCode) (\(connAck.reasonCode.name))"
                )
                var actions: [BridgeAction] = []
                if attempt.usedBridgeBit && connAck.reasonCode == .unsupportedProtocolVersion {
                    bridgeBitRejected = true
                    actions.append(
                        .log(
                            .warning,
                            "bridge \(configuration.name): remote refused the bridge protocol bit (try_private); retrying without it"
                        )
                    )
                    if configuration.rules.rules.contains(where: { $0.direction == .both }) {
                        // Without the bridge bit a 3.1.1 remote sends our own publishes back on a
                        // `both` rule (3.1.1 has no no-local), and they come in again locally.
                        actions.append(
                            .log(
                                .warning,
                                "bridge \(configuration.name): without try_private the remote echoes what this bridge publishes on 'both' rules: each such message comes back once; use separate in and out rules on distinct topics, or MQTT 5 (bridge_protocol_version mqttv50, no-local)"
                            )
                        )
                    }
                }
                let reason = BridgeCloseReason.connAckRefused(connAck.reasonCode)
                if let hint = willHint(connAck.reasonCode) { actions.append(.log(.error, hint)) }
                return actions + close(Closing(addressIndex: attempt.addressIndex, established: false), reason)
            }
            return goOnline(attempt, connAck)

        case .online(var online):
            state = .modifying
            var actions: [BridgeAction] = []
            if let reason = handleOnline(packet, &online, &actions) {
                return actions + closeOnline(online, reason)
            }
            state = .online(online)
            return actions

        case .idle, .connecting, .closing, .waitingToReconnect, .stopped:
            return [.log(.debug, "bridge \(configuration.name): \(packet.type) ignored while not connected")]
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// The answer to the oldest outstanding `.fetch`.
    public mutating func fetched(_ items: [QueuedItem]) -> [BridgeAction] {
        if staleFetches > 0 {
            staleFetches -= 1
            return []
        }
        switch state {
        case .online(var online) where online.fetchOutstanding:
            state = .modifying
            var actions: [BridgeAction] = []
            online.fetchOutstanding = false
            if online.hold != nil || paused {
                // Sending stopped while this fetch was out: these go once it resumes.
                online.drained = false
                online.moreSignalled = false
                state = .online(online)
                return actions
            }
            var removable: [UInt64] = []
            var stoppedEarly = false
            if online.cursor == nil && (!resendIds.isEmpty || !attempts.isEmpty || !refusalStrikes.isEmpty) {
                // The first answer from the head: older seqs are gone from the queue (dropped by its bounds).
                let head = items.first?.seq ?? UInt64.max
                resendIds = resendIds.filter { $0.key >= head }
                attempts = attempts.filter { $0.key >= head }
                refusalStrikes = refusalStrikes.filter { $0.key >= head }
            }
            for item in items {
                if let cursor = online.cursor, item.seq <= cursor { continue }  // already sent here
                if let end = online.replayEnd, item.seq <= end, !online.retry.contains(item.seq) {
                    online.cursor = item.seq  // acknowledged or still in flight: not again
                    continue
                }
                var message = item.message
                message.properties = message.properties.forOutgoingPublish
                message.dup = false
                if !online.retainAvailable || !configuration.outgoingRetain { message.retain = false }
                let atMostOnce = message.qos == .atMostOnce || !online.remoteAllowsQoS1
                message.qos = atMostOnce ? .atMostOnce : .atLeastOnce
                message.packetIdentifier = atMostOnce ? nil : 1  // any id: two bytes for the size check
                if let maximum = online.maxPacketSize,
                    case let size = MQTTCodec.encodedSize(.publish(message), version: configuration.protocolVersion),
                    size > maximum
                {
                    // [MQTT-3.1.2-25]: never sendable; retrying would block the queue forever.
                    online.retry.remove(item.seq)
                    deadLetter(
                        item.seq,
                        .tooLarge,
                        SentMessage(topic: message.topic, size: message.payload.readableBytes),
                        detail: "is \(size) bytes, over the maximum packet size \(maximum)",
                        &actions
                    )
                    online.cursor = item.seq
                    continue
                }
                let size = message.topic.utf8.count + message.payload.readableBytes
                if let pacer, pacer.allowance == 0 {
                    online.paced = true
                    stoppedEarly = true
                    break
                }
                if atMostOnce {
                    message.packetIdentifier = nil
                    guard let sending = publishing(message, seq: item.seq, &online, &actions) else {
                        stoppedEarly = true
                        break
                    }
                    pacer?.spend(size: size)
                    online.retry.remove(item.seq)
                    actions.append(.send(.publish(sending)))
                    statistics.published += 1
                    statistics.sentAtMostOnce += 1
                    removable.append(item.seq)
                    online.cursor = item.seq
                    continue
                }
                guard online.used < online.window else {
                    stoppedEarly = true
                    break
                }
                guard let sending = publishing(message, seq: item.seq, &online, &actions),
                    let id = sending.packetIdentifier  // QoS 1: always set
                else {
                    stoppedEarly = true
                    break
                }
                message = sending
                pacer?.spend(size: size)
                online.retry.remove(item.seq)
                resendIds[item.seq] = nil
                if online.inflight.isEmpty { online.lastProgress = now }
                online.inflight[id] = item.seq
                online.sent[item.seq] = SentMessage(topic: message.topic, size: message.payload.readableBytes)
                online.cursor = item.seq
                online.lastMessage = now
                actions.append(.send(.publish(message)))
                statistics.published += 1
            }
            if !removable.isEmpty {
                actions.append(.remove(seqs: removable))  // QoS 0 written, or too large: done
            }
            let short = !stoppedEarly && items.count < online.lastFetchLimit
            if let end = online.replayEnd, short || (online.cursor ?? 0) >= end {
                online.replayEnd = nil  // replay done; refused seqs not met are gone from the queue
                online.retry.removeAll()
            }
            online.drained = short && !online.moreSignalled
            online.moreSignalled = false
            topUp(&online, &actions)
            state = .online(online)
            return actions

        case .online, .idle, .connecting, .awaitingConnAck, .closing, .waitingToReconnect, .stopped:
            return [.log(.warning, "bridge \(configuration.name): fetched() without an outstanding fetch ignored")]
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// The local broker has kept a message from `.publishLocally(_:acknowledge:)`: acknowledge it
    /// to the remote, if it came on this connection.
    public mutating func publishedLocally(_ delivery: LocalDelivery) -> [BridgeAction] {
        guard case .online(var online) = state, delivery.connection == statistics.connections else { return [] }
        state = .modifying
        var actions: [BridgeAction] = []
        if let acknowledgement = online.session.acknowledge(delivery.packetID, now: online.clock) {
            actions.append(.send(acknowledgement))  // PUBACK or PUBREC
        }
        state = .online(online)
        return actions
    }

    /// New messages were appended to the queue.
    public mutating func queueHasMore() -> [BridgeAction] {
        switch state {
        case .online(var online):
            state = .modifying
            var actions: [BridgeAction] = []
            if online.fetchOutstanding {
                online.moreSignalled = true
            } else {
                online.drained = false
                topUp(&online, &actions)
            }
            state = .online(online)
            return actions
        case .idle, .connecting, .awaitingConnAck, .closing, .waitingToReconnect, .stopped:
            return []  // the next connection fetches from the head anyway
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// The connection closed (or the connect attempt failed), whoever closed it. `error` is logged as
    /// its description: the I/O layer passes the cause in the product's words ("connection refused").
    public mutating func connectionClosed(error: (any Error)? = nil) -> [BridgeAction] {
        let cause = error.map { "\($0)" }
        switch state {
        case .connecting(let attempt), .awaitingConnAck(let attempt):
            var awaitingConnAck = false
            if case .awaitingConnAck = state { awaitingConnAck = true }
            let label = Self.failureLabel(error, awaitingConnAck: awaitingConnAck)
            let what = cause ?? (awaitingConnAck ? "closed by the remote before CONNACK" : "connection failed")
            noteConnectFailure(label, what)
            var actions: [BridgeAction] = []
            if awaitingConnAck, let hint = willHint(nil) { actions.append(.log(.warning, hint)) }
            let retry = reconnect(after: Closing(addressIndex: attempt.addressIndex, established: false))
            retryLine("connect-\(label)", attempt.addressIndex, what, retry, &actions)
            return actions + retry
        case .online(let online):
            state = .modifying
            let what = "connection lost\(cause.map { ": \($0)" } ?? "")"
            statistics.lastError = what
            var actions = leaveOnline(online, countAttempt: true)
            let retry = reconnect(after: Closing(addressIndex: online.addressIndex, established: true))
            retryLine("lost", online.addressIndex, what, retry, &actions)
            return actions + retry
        case .closing(let closing):
            var actions: [BridgeAction] = []
            let retry = reconnect(after: closing)
            if let reason = closing.reason, reason != .stopped {
                retryLine("closed-\(reason)", closing.addressIndex, "\(reason)", retry, &actions)
            }
            return actions + retry
        case .idle, .waitingToReconnect, .stopped:
            return []
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// `central (127.0.0.1:1884): connection refused; retrying in 2.1 s`, once per kind of failure and
    /// minute; the rest of the minute's are summed in one line (a central down for hours costs a line a minute).
    private mutating func retryLine(
        _ key: String,
        _ addressIndex: Int,
        _ what: String,
        _ retry: [BridgeAction],
        _ actions: inout [BridgeAction]
    ) {
        let delay = retry.lazy.compactMap { if case .scheduleReconnect(let delay) = $0 { delay } else { nil } }.first
        let retrying = delay.map { "; retrying in \($0.logText)" } ?? ""
        warn(
            key,
            first: "bridge \(configuration.named(address: addressIndex)): \(what)\(retrying)",
            summary: "more connection failures (\(what))",
            &actions
        )
    }

    /// The delay of `.scheduleReconnect` has passed.
    public mutating func reconnectTimerFired() -> [BridgeAction] {
        switch state {
        case .waitingToReconnect(let index):
            state = .connecting(Attempt(addressIndex: index, startedAt: now))
            return [.connect(addressIndex: index)]
        case .idle, .connecting, .awaitingConnAck, .online, .closing, .stopped:
            return []
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// `sluice queue pause|resume`: a paused link stays connected (its `in` rules keep working) and
    /// queues, but sends nothing from the queue; messages in flight still get their PUBACKs.
    public mutating func setPaused(_ paused: Bool) -> [BridgeAction] {
        guard paused != self.paused else { return [] }
        self.paused = paused
        var actions: [BridgeAction] = [
            .log(.info, "bridge \(configuration.name): \(paused ? "paused: queueing, not sending" : "resumed")")
        ]
        if !paused, case .online(var online) = state {
            state = .modifying
            online.drained = false
            topUp(&online, &actions)
            state = .online(online)
        }
        return actions
    }

    /// Shut down: publish the remote notification "0", DISCONNECT, close; no reconnect afterwards.
    public mutating func stop() -> [BridgeAction] {
        switch state {
        case .online(let online):
            state = .modifying
            return disconnect(online, .stopped, then: .stopped)
        case .connecting, .awaitingConnAck:
            state = .stopped
            return [.close(.stopped)]
        case .idle, .closing, .waitingToReconnect:
            state = .stopped
            return []
        case .stopped:
            return []
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// New topic rules (SIGHUP). While connected, the remote subscriptions follow: UNSUBSCRIBE for filters
    /// no longer wanted, SUBSCRIBE for new ones or ones whose QoS changed. Outbound remapping happens
    /// when messages are queued, so messages already queued keep the topic they were queued with.
    public mutating func updateRules(_ rules: BridgeRules) -> [BridgeAction] {
        let noLocal = configuration.protocolVersion == .v5
        let old = configuration.rules.remoteSubscriptions(noLocal: noLocal)
        configuration.rules = rules
        switch state {
        case .online(var online):
            state = .modifying
            var actions: [BridgeAction] = []
            let new = rules.remoteSubscriptions(noLocal: noLocal)
            let removed = old.map(\.filter).filter { filter in !new.contains { $0.filter == filter } }
            unsubscribe(removed, &online, &actions)
            subscribe(new.filter { !old.contains($0) }, &online, &actions)
            state = .online(online)
            return actions
        case .idle, .connecting, .awaitingConnAck, .closing, .waitingToReconnect, .stopped:
            return []  // the next CONNACK subscribes with the new rules
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    /// Time passes. Drives connect timeout, keep-alive, the progress watchdog and backoff reset.
    public mutating func tick(now: Instant) -> [BridgeAction] {
        self.now = now
        pacer?.refill(now: now)
        let summaries: [BridgeAction] = warnings.flush(now: now).map {
            .log(.warning, "bridge \(configuration.name): \($0)")
        }
        return summaries + tickState(now: now)
    }

    private mutating func tickState(now: Instant) -> [BridgeAction] {
        switch state {
        case .connecting(var attempt), .awaitingConnAck(var attempt):
            guard let started = attempt.startedAt else {
                attempt.startedAt = now
                if case .connecting = state { state = .connecting(attempt) } else { state = .awaitingConnAck(attempt) }
                return []
            }
            guard started.duration(to: now) >= configuration.connectTimeout else { return [] }
            noteConnectFailure("timeout", "connect timeout")
            return close(Closing(addressIndex: attempt.addressIndex, established: false), .connectTimeout)

        case .online(var online):
            state = .modifying
            var actions: [BridgeAction] = []
            online.clock = now
            if online.since == nil { online.since = now }
            if online.lastProgress == nil { online.lastProgress = now }
            if online.lastMessage == nil { online.lastMessage = now }
            if case .lazy(_, let idleTimeout) = configuration.startType, online.inflight.isEmpty, online.drained,
                !online.fetchOutstanding, online.session.unacknowledgedDeliveryCount == 0, online.notificationId == nil,
                let last = online.lastMessage, last.duration(to: now) >= idleTimeout
            {
                return [
                    .log(
                        .info,
                        "bridge \(configuration.name): idle for \(idleTimeout) (start_type lazy): disconnecting"
                    )
                ]
                    + disconnect(online, .idle, then: .idle)
            }
            if !online.stable, let since = online.since, since.duration(to: now) >= configuration.stablePeriod {
                online.stable = true
                backoff.reset()
            }
            do throws(MQTTClientSessionError) {
                if let ping = try online.session.tick(now: now) { actions.append(.send(ping)) }
            } catch {
                return closeOnline(online, .keepAliveTimeout)  // the only error `tick` throws
            }
            if let timeout = configuration.progressTimeout, !online.inflight.isEmpty,
                let lastProgress = online.lastProgress, lastProgress.duration(to: now) >= timeout
            {
                return actions
                    + [
                        .log(
                            .warning,
                            "bridge \(configuration.named(address: online.addressIndex)): \(online.inflight.count) messages in flight and no PUBACK for \(timeout.logText), reconnecting"
                        )
                    ]
                    + closeOnline(online, .progressStalled)
            }
            if let hold = online.hold, hold.map({ $0 <= now }) ?? true {
                online.hold = nil
                if let first = online.retry.min() {
                    // Replay: the refused messages first, in seq order, then on from where sending stopped.
                    online.replayEnd = max(online.replayEnd ?? 0, online.cursor ?? 0)
                    online.cursor = first == 0 ? nil : first - 1
                }
                online.drained = false
                topUp(&online, &actions)
            }
            if online.paced {
                online.paced = false
                topUp(&online, &actions)
            }
            state = .online(online)
            return actions

        case .idle, .closing, .waitingToReconnect, .stopped:
            return []
        case .modifying:
            preconditionFailure("BridgeLink re-entered while modifying")
        }
    }

    // MARK: - Helpers

    private func makeConnect() -> ConnectPacket {
        var properties = Properties()
        if configuration.protocolVersion == .v5 {
            if let expiry = configuration.sessionExpiryInterval {
                properties.sessionExpiryInterval = expiry
            } else if !configuration.cleanSession {
                properties.sessionExpiryInterval = UInt32.max
            }
        }
        let will = configuration.notificationTopic.map {
            Will(topic: $0, payload: .init(string: "0"), qos: .atLeastOnce, retain: true)
        }
        return ConnectPacket(
            protocolVersion: configuration.protocolVersion,
            clientIdentifier: configuration.clientIdentifier,
            cleanStart: configuration.cleanSession,
            keepAlive: configuration.keepAliveSeconds,
            username: configuration.username,
            password: configuration.password,
            will: will,
            properties: properties
        )
    }

    private mutating func goOnline(_ attempt: Attempt, _ connAck: ConnAckPacket) -> [BridgeAction] {
        var receiveMaximum = Int(connAck.properties.receiveMaximum ?? UInt16.max)
        // 0 is a protocol error [MQTT-3.2.2.3.3]; be lenient.
        if receiveMaximum == 0 { receiveMaximum = Int(UInt16.max) }
        let window = max(1, min(configuration.maxInflight, receiveMaximum, Self.maximumWindow))
        let sessionPresent = connAck.sessionPresent && !configuration.cleanSession
        guard let now else {
            // The I/O layer ticks before it connects; without a time the session cannot start.
            return close(
                Closing(addressIndex: attempt.addressIndex, established: false),
                .protocolError("CONNACK before the first tick")
            )
        }
        var session = MQTTClientSession<Instant>(
            configuration: .init(maximumInFlight: window, keepAliveCheck: .silence, acknowledgesOnDelivery: false)
        )
        // The session sees the CONNACK as the link reads it: the window above already holds the
        // Receive Maximum (0 leniently ignored), and a session present after a clean start is ignored.
        var accepted = connAck
        accepted.sessionPresent = sessionPresent
        accepted.properties.receiveMaximum = nil
        do throws(MQTTClientSessionError) {
            _ = try session.connect(makeConnect(), now: now)
            _ = try session.received(.connAck(accepted), now: now)
        } catch {
            return close(Closing(addressIndex: attempt.addressIndex, established: false), .protocolError("\(error)"))
        }
        if !sessionPresent { resendIds.removeAll() }
        var online = Online(
            addressIndex: attempt.addressIndex,
            session: session,
            clock: now,
            since: now,
            sessionPresent: sessionPresent,
            retainAvailable: connAck.properties.retainAvailable != 0,
            remoteAllowsQoS1: connAck.properties.maximumQoS != 0,
            maxPacketSize: [configuration.maxPacketSize, connAck.properties.maximumPacketSize].compactMap {
                $0.map(Int.init)
            }.min(),
            lastProgress: now,
            lastMessage: now
        )
        statistics.connections += 1
        statistics.lastError = nil
        let version =
            configuration.protocolVersion == .v5
            ? "MQTT 5.0" : configuration.protocolVersion == .v3_1 ? "MQTT 3.1" : "MQTT 3.1.1"
        var actions: [BridgeAction] = [
            .log(
                .info,
                "bridge \(configuration.named(address: attempt.addressIndex)): connected (\(version), window \(window)\(sessionPresent ? ", session present" : ""))"
            )
        ]
        if connAck.properties.maximumQoS == 0 {
            actions.append(
                .log(
                    .warning,
                    "bridge \(configuration.name): the remote accepts QoS 0 only: queued messages are sent at QoS 0 and removed once written"
                )
            )
        }
        if !reportedConnected {
            reportedConnected = true
            actions.append(.stateChanged(connected: true))
        }
        let subscriptions = configuration.rules.remoteSubscriptions(noLocal: configuration.protocolVersion == .v5)
        subscribe(subscriptions, &online, &actions)
        if configuration.attemptUnsubscribe {
            unsubscribe(configuration.rules.remoteOutboundOnlyFilters, &online, &actions)
        }
        if let topic = configuration.notificationTopic {
            let notification = PublishPacket(
                topic: topic,
                payload: .init(string: "1"),
                qos: .atLeastOnce,
                retain: configuration.outgoingRetain && online.retainAvailable
            )
            do throws(MQTTClientSessionError) {
                let sending = try online.session.publish(notification, now: now)
                online.notificationId = sending.packetIdentifier
                pacer?.spend(size: topic.utf8.count + 1)  // a PUBLISH like any other for a rate-limited central
                actions.append(.send(.publish(sending)))
            } catch {
                actions.append(.log(.error, "bridge \(configuration.name): notification not sent: \(error)"))
            }
        }
        topUp(&online, &actions)
        state = .online(online)
        return actions
    }

    /// Handles a packet while online; returns a close reason when the connection must end.
    private mutating func handleOnline(
        _ packet: Packet,
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) -> BridgeCloseReason? {
        switch packet {
        case .publish(let publish):
            if publish.properties.topicAlias != nil {
                // The link's CONNECT allows no topic aliases [MQTT-3.3.2-9].
                return .protocolError("topic alias from the remote, none allowed")
            }
            online.lastMessage = now
            statistics.received += 1
        case .disconnect(let disconnect):
            // The retry line names the reason code; the remote's own words, if any, come first.
            if let text = disconnect.properties.reasonString {
                actions.append(
                    .log(
                        .warning,
                        "bridge \(configuration.named(address: online.addressIndex)): the remote's DISCONNECT says: \(text)"
                    )
                )
            }
            return .remoteDisconnected(disconnect.reasonCode)
        case .connect, .connAck, .pubRec, .pubComp, .subscribe, .unsubscribe, .pingReq, .auth:
            // The link sends no QoS 2: a PUBREC or PUBCOMP is as unexpected as a SUBSCRIBE.
            return .protocolError("unexpected \(packet.type) from the remote")
        case .pubAck, .pubRel, .subAck, .unsubAck, .pingResp:
            break
        }
        let reaction: MQTTClientSession<Instant>.Reaction
        do throws(MQTTClientSessionError) {
            reaction = try online.session.received(packet, now: online.clock)
        } catch {
            return tolerate(error, &actions)
        }
        if let reply = reaction.reply { actions.append(.send(reply)) }  // PUBCOMP, or PUBREC for a QoS 2 resend
        switch reaction.event {
        case .published(let id, let code):
            acknowledged(id, code, &online, &actions)
        case .subscribed(_, let results):
            for result in results where result.reasonCode.isFailure {
                actions.append(
                    .log(
                        .error,
                        "bridge \(configuration.name): remote refused subscription '\(result.filter)' with reason \(result.reasonCode) (\(result.reasonCode.name))"
                    )
                )
            }
        case .message(let publish):
            handleInbound(publish, &online, &actions)
        case .unsubscribed, .connected, .connectionRefused, .disconnected, nil:
            break
        }
        return nil
    }

    /// The remote acknowledged `id`: the notification, or a queue message (removed on success,
    /// held or dead-lettered on a refusal).
    private mutating func acknowledged(
        _ id: UInt16,
        _ code: ReasonCode,
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) {
        if id == online.notificationId {
            online.notificationId = nil
            topUp(&online, &actions)  // its slot in the window is free
            return
        }
        guard let seq = online.inflight.removeValue(forKey: id) else { return }  // the session knew it: not reached
        online.lastProgress = now
        let sentMessage = online.sent.removeValue(forKey: seq)
        if code.isFailure {
            refused(seq, code, sentMessage, &online, &actions)
        } else {
            statistics.acknowledged += 1
            attempts[seq] = nil
            refusalStrikes[seq] = nil
            holdsWithoutProgress = 0
            backoff.reset()  // the connection makes progress: the next reconnect starts quick
            actions.append(.remove(seqs: [seq]))
        }
        topUp(&online, &actions)
    }

    /// Where the link is lenient with a remote's slip (an acknowledgement for nothing in flight):
    /// warn and go on; any other violation ends the connection.
    private mutating func tolerate(_ error: MQTTClientSessionError, _ actions: inout [BridgeAction])
        -> BridgeCloseReason?
    {
        switch error {
        case .unknownPacketIdentifier(.pubAck, let id), .wrongAcknowledgement(.pubAck, let id):
            warn(
                "unknown-puback",
                first: "bridge \(configuration.name): PUBACK for unknown packet id \(id) ignored",
                summary: "PUBACKs for unknown packet ids ignored",
                &actions
            )
            return nil
        case .unknownPacketIdentifier(.subAck, _), .reasonCodeCount(.subAck, _, _, _):
            actions.append(.log(.warning, "bridge \(configuration.name): \(error); ignored"))
            return nil
        case .unknownPacketIdentifier(.unsubAck, _), .reasonCodeCount(.unsubAck, _, _, _):
            return nil  // nothing rides on an UNSUBACK
        default:
            return .protocolError(error.description)
        }
    }

    /// A message from the remote (once per QoS 2 flow): to the local broker through its `in` rule,
    /// acknowledged once kept there [design: nothing lost]; without a rule, dropped and acknowledged.
    private mutating func handleInbound(
        _ publish: PublishPacket,
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) {
        let acknowledgedId = publish.qos == .atMostOnce ? nil : publish.packetIdentifier
        guard let mapping = configuration.rules.inbound(forRemote: publish.topic) else {
            actions.append(
                .log(
                    .warning,
                    "bridge \(configuration.name): remote message on '\(publish.topic)' matches no in rule; dropped"
                )
            )
            if let id = acknowledgedId, let acknowledgement = online.session.acknowledge(id, now: online.clock) {
                actions.append(.send(acknowledgement))
            }
            return
        }
        var local = publish
        local.topic = mapping.topic
        local.qos = min(publish.qos, mapping.qos)
        local.dup = false
        local.packetIdentifier = nil
        // Per-connection properties do not travel.
        local.properties.topicAlias = nil
        local.properties.subscriptionIdentifiers = []
        let delivery = acknowledgedId.map { LocalDelivery(packetID: $0, connection: statistics.connections) }
        actions.append(.publishLocally(local, acknowledge: delivery))
    }

    private mutating func subscribe(
        _ subscriptions: [TopicSubscription],
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) {
        guard !subscriptions.isEmpty else { return }
        do throws(MQTTClientSessionError) {
            let packet = try online.session.subscribe(subscriptions, now: online.clock)
            actions.append(.send(.subscribe(packet)))
        } catch {
            actions.append(.log(.error, "bridge \(configuration.name): SUBSCRIBE not sent: \(error)"))
        }
    }

    private mutating func unsubscribe(_ filters: [String], _ online: inout Online, _ actions: inout [BridgeAction]) {
        guard !filters.isEmpty else { return }
        do throws(MQTTClientSessionError) {
            let packet = try online.session.unsubscribe(filters, now: online.clock)
            actions.append(.send(.unsubscribe(packet)))
        } catch {
            actions.append(.log(.error, "bridge \(configuration.name): UNSUBSCRIBE not sent: \(error)"))
        }
    }

    /// A queued message through the session (packet identifier, window, activity for the keep-alive),
    /// again with its old identifier where the remote kept the session; nil, logged, when it refuses.
    private func publishing(
        _ message: PublishPacket,
        seq: UInt64,
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) -> PublishPacket? {
        do throws(MQTTClientSessionError) {
            if online.sessionPresent, let id = resendIds[seq] {
                return try online.session.publish(message, resending: id, now: online.clock)
            }
            return try online.session.publish(message, now: online.clock)
        } catch {
            // Not expected (connected, window checked); the message stays queued.
            actions.append(.log(.error, "bridge \(configuration.name): queued message \(seq) not sent: \(error)"))
            return nil
        }
    }

    /// Fill the window: fetch what it has room for, unless a fetch is out or the queue is drained.
    private func topUp(_ online: inout Online, _ actions: inout [BridgeAction]) {
        var free = online.window - online.used
        guard free > 0, !online.fetchOutstanding, !online.drained, online.hold == nil, !paused else { return }
        if let pacer {
            let allowance = pacer.allowance
            guard allowance > 0 else {
                online.paced = true
                return
            }
            free = min(free, allowance)
        }
        online.fetchOutstanding = true
        online.lastFetchLimit = free
        actions.append(.fetch(after: online.cursor, limit: free))
    }

    /// Bookkeeping when an online connection ends, however it ends.
    /// `countAttempt`: the connection was lost (not stopped): the oldest message in flight gets one
    /// attempt more, and a poison message is dead-lettered here.
    private mutating func leaveOnline(_ online: Online, countAttempt: Bool) -> [BridgeAction] {
        if online.fetchOutstanding { staleFetches += 1 }
        var actions: [BridgeAction] = []
        var inflight = online.inflight
        if countAttempt, let head = inflight.values.min() {
            let count = (attempts[head] ?? 0) + 1
            if count >= configuration.maxAttempts {
                inflight = inflight.filter { $0.value != head }
                deadLetter(
                    head,
                    .maxAttempts,
                    online.sent[head],
                    detail: "was the oldest message in flight at \(count) connection losses (a poison message?)",
                    &actions
                )
            } else {
                attempts[head] = count
            }
        }
        for (id, seq) in inflight { resendIds[seq] = id }
        guard reportedConnected else { return actions }
        reportedConnected = false
        return actions + [.stateChanged(connected: false)]
    }

    /// A clean end of an online connection: the remote notification "0", DISCONNECT, close.
    private mutating func disconnect(_ online: Online, _ reason: BridgeCloseReason, then next: State) -> [BridgeAction]
    {
        var actions: [BridgeAction] = []
        if let topic = configuration.notificationTopic {
            // A normal DISCONNECT discards the will, so say "0" ourselves.
            actions.append(.send(.publish(PublishPacket(topic: topic, payload: .init(string: "0"), retain: true))))
        }
        actions.append(.send(.disconnect(DisconnectPacket())))
        actions += leaveOnline(online, countAttempt: false)
        actions.append(.close(reason))
        state = next
        return actions
    }

    private mutating func closeOnline(_ online: Online, _ reason: BridgeCloseReason) -> [BridgeAction] {
        statistics.lastError = reason.description
        let actions = leaveOnline(online, countAttempt: true)
        return close(Closing(addressIndex: online.addressIndex, established: true), reason) + actions
    }

    private mutating func close(_ closing: Closing, _ reason: BridgeCloseReason) -> [BridgeAction] {
        var closing = closing
        closing.reason = reason
        state = .closing(closing)
        return [.close(reason)]
    }

    /// A failure PUBACK: hold and retry (transient), or dead-letter (permanent, or refused
    /// `maxAttempts` times in a row with nothing else getting through).
    private mutating func refused(
        _ seq: UInt64,
        _ code: ReasonCode,
        _ sentMessage: SentMessage?,
        _ online: inout Online,
        _ actions: inout [BridgeAction]
    ) {
        statistics.rejected += 1
        statistics.rejectedByReason[code.rawValue, default: 0] += 1
        switch RefusalPolicy.classify(code) {
        case .permanent:
            deadLetter(seq, .refused(code), sentMessage, detail: nil, &actions)
        case .transient:
            let previous = refusalStrikes[seq]
            let strikes = previous.map { $0.mark == statistics.acknowledged ? $0.strikes + 1 : 1 } ?? 1
            if strikes >= configuration.maxAttempts {
                refusalStrikes[seq] = nil
                deadLetter(
                    seq,
                    .maxAttempts,
                    sentMessage,
                    detail: "was refused with \(code) \(strikes) times in a row with nothing else getting through",
                    &actions
                )
                return
            }
            refusalStrikes[seq] = (statistics.acknowledged, strikes)
            online.retry.insert(seq)
            var delay = Duration.zero
            if online.hold == nil {
                delay = RefusalPolicy.hold(
                    base: configuration.refusalHold,
                    cap: configuration.restartCap,
                    holdsWithoutProgress: holdsWithoutProgress
                )
                holdsWithoutProgress += 1
                online.hold = .some(now.map { $0.advanced(by: delay) })
            }
            warn(
                "refused-\(code.hexLabel)",
                first:
                    "bridge \(configuration.name): remote refused queued message \(seq)\(sentMessage.map { " on '\($0.topic)'" } ?? "") with reason \(code) (\(code.name)); kept, sending paused for \(delay)",
                summary: "messages refused with \(code) (\(code.name)), kept for retry",
                &actions
            )
        }
    }

    /// Moves one message to the dead letters and says so, once, with everything an operator needs.
    private mutating func deadLetter(
        _ seq: UInt64,
        _ reason: DeadLetterReason,
        _ sentMessage: SentMessage?,
        detail: String?,
        _ actions: inout [BridgeAction]
    ) {
        statistics.deadLettered += 1
        attempts[seq] = nil
        refusalStrikes[seq] = nil
        resendIds[seq] = nil
        let what = sentMessage.map { " on '\($0.topic)' (\($0.size) bytes of payload)" } ?? ""
        actions.append(
            .log(
                .error,
                "bridge \(configuration.name): queued message \(seq)\(what) \(detail ?? reason.description); moved to the dead letters (see 'sluice queue dead \(configuration.name)')"
            )
        )
        actions.append(.deadLetter(seqs: [seq], reason: reason))
    }

    private mutating func warn(_ key: String, first: String, summary: String, _ actions: inout [BridgeAction]) {
        if let line = warnings.note(key, now: now, first: first, summary: summary) {
            actions.append(.log(.warning, line))
        }
    }

    private mutating func noteConnectFailure(_ label: String, _ text: String) {
        statistics.failedAttempts += 1
        statistics.connectFailuresByReason[label, default: 0] += 1
        statistics.lastError = text
    }

    /// A connect failure's cause, for `sluice_bridge_connect_failures_total{reason}`.
    static func failureLabel(_ error: (any Error)?, awaitingConnAck: Bool) -> String {
        let text = error.map { "\(type(of: $0)) \($0)".lowercased() } ?? ""
        let says = { (words: String...) in words.contains { text.containsText($0) } }
        if says("ssl", "tls", "certificate", "handshake") { return "tls" }
        if says("refused") { return "refused" }
        if says("reset", "broken pipe") { return "reset" }
        if says("timeout", "timed out") { return "timeout" }
        if awaitingConnAck { return text.isEmpty ? "closed_before_connack" : "bad_connack" }
        return "other"
    }

    /// When a CONNECT is refused and the link sends a will, the will topic is a likely culprit
    /// (ejabberd, clouds with topic policies refuse `$SYS/...`). nil for refusals that name another
    /// cause (credentials, protocol version, availability). `code` nil: the CONNACK was unreadable.
    private func willHint(_ code: ReasonCode?) -> String? {
        guard let topic = configuration.notificationTopic else { return nil }
        if let code, [0x84, 0x85, 0x86, 0x88, 0x89, 0x8A, 0x8C, 0x9C, 0x9D, 0x9F].contains(code.rawValue) {
            return nil
        }
        return
            "bridge \(configuration.name): hint: the remote may refuse the will on '\(topic)' (the link-state notification); set notification_topic to a topic it accepts, or notifications false"
    }

    /// Pick the next address (Mosquitto's `round_robin`) and wait out the backoff.
    private mutating func reconnect(after closing: Closing) -> [BridgeAction] {
        if configuration.startType == .once {
            state = .stopped
            return [.log(.warning, "bridge \(configuration.name): connection ended; start_type once: not reconnecting")]
        }
        let count = configuration.addressCount
        let next: Int
        if configuration.roundRobin || !closing.established {
            next = (closing.addressIndex + 1) % count
        } else {
            next = 0  // back to the primary after a connection that worked
        }
        let delay = backoff.next(using: &random)
        state = .waitingToReconnect(addressIndex: next)
        return [.scheduleReconnect(after: delay)]
    }
}

/// What the log says about a message in flight.
struct SentMessage: Sendable, Hashable {
    var topic: String
    var size: Int
}
