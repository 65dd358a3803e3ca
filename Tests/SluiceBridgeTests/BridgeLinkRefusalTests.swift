import MQTTCore
import Testing

@testable import SluiceBridge

private let notification = "$SYS/broker/connection/gw-1/state"
private let notAuthorized = ReasonCode(rawValue: 0x87)
private let quota = ReasonCode(rawValue: 0x97)

private struct Boom: Error, CustomStringConvertible {
    var description: String
}

/// Event → action traces for refusals, dead letters, poison messages, the window, pacing and pause.
@Suite struct BridgeLinkRefusalTests {
    @Test func classification() {
        for code: UInt8 in [0x80, 0x83, 0x89, 0x97] {
            #expect(RefusalPolicy.classify(ReasonCode(rawValue: code)) == .transient)
        }
        for code: UInt8 in [0x87, 0x90, 0x91, 0x95, 0x99, 0x9A] {
            #expect(RefusalPolicy.classify(ReasonCode(rawValue: code)) == .permanent)
        }
        #expect(DeadLetterCodes.label(0x87) == "0x87")
        #expect(DeadLetterCodes.label(DeadLetterReason.tooLarge.code) == "too_large")
        #expect(DeadLetterCodes.label(DeadLetterReason.maxAttempts.code) == "max_attempts")
        #expect(DeadLetterReason.refused(quota).code == 0x97)
        #expect(RefusalPolicy.hold(base: .seconds(1), cap: .seconds(30), holdsWithoutProgress: 0) == .seconds(1))
        #expect(RefusalPolicy.hold(base: .seconds(1), cap: .seconds(30), holdsWithoutProgress: 3) == .seconds(8))
        #expect(RefusalPolicy.hold(base: .seconds(1), cap: .seconds(30), holdsWithoutProgress: 40) == .seconds(30))
    }

    @Test func transientRefusalHoldsThenReplaysTheRefusedFirstInOrder() {
        var h = Harness(config(maxInflight: 3))
        _ = h.connect()
        #expect(h.link.fetched(items(1...3)) == [sent(1, id: 1), sent(2, id: 2), sent(3, id: 3)])
        let refused = h.link.received(puback(1, quota))
        #expect(refused.withoutLogs == [])  // kept, and nothing new goes during the hold
        #expect(h.link.received(puback(2)) == [.remove(seqs: [2])])
        #expect(h.advance(.milliseconds(500)) == [])
        // Hold over: from just before the oldest refused seq; 3 is still in flight: two free slots.
        #expect(h.advance(.milliseconds(500)) == [.fetch(after: 0, limit: 2)])
        // 1 goes again; 3 (in flight) is not resent; 4 is new.
        #expect(h.link.fetched([item(1), item(3), item(4)]) == [sent(1, id: 4), sent(4, id: 5)])
        #expect(h.link.received(puback(4)) == [.remove(seqs: [1]), .fetch(after: 4, limit: 1)])
        #expect(h.link.statistics.rejected == 1)
        #expect(h.link.statistics.rejectedByReason == [0x97: 1])
        #expect(h.link.statistics.deadLettered == 0)
    }

    @Test func holdDoublesWithoutProgressAndResetsOnASuccess() {
        var h = Harness(config(maxInflight: 1))
        _ = h.connect()
        #expect(h.link.fetched([item(1)]) == [sent(1, id: 1)])
        _ = h.link.received(puback(1, quota))
        #expect(h.advance(.seconds(1)) == [.fetch(after: 0, limit: 1)])
        #expect(h.link.fetched([item(1)]) == [sent(1, id: 2)])
        _ = h.link.received(puback(2, quota))
        #expect(h.advance(.seconds(1)) == [])  // now 2 s
        #expect(h.advance(.seconds(1)) == [.fetch(after: 0, limit: 1)])
        #expect(h.link.fetched([item(1)]) == [sent(1, id: 3)])
        #expect(h.link.received(puback(3)) == [.remove(seqs: [1]), .fetch(after: 1, limit: 1)])
        #expect(h.link.fetched([item(2)]) == [sent(2, id: 4)])
        _ = h.link.received(puback(4, quota))
        #expect(h.advance(.seconds(1)) == [.fetch(after: 1, limit: 1)])  // back to 1 s
    }

    @Test func transientRefusalsInARowWithoutProgressEndInTheDeadLetters() {
        var c = config(maxInflight: 1)
        c.maxAttempts = 3
        var h = Harness(c)
        _ = h.connect()
        var id: UInt16 = 1
        var last: [BridgeAction] = []
        for round in 1...3 {
            #expect(h.link.fetched([item(1)]) == [sent(1, id: id)])
            last = h.link.received(puback(id, quota))
            id += 1
            if round < 3 { _ = h.advance(.seconds(60)) }
        }
        #expect(last.withoutLogs == [.deadLetter(seqs: [1], reason: .maxAttempts), .fetch(after: 1, limit: 1)])
        #expect(last.logs.contains { $0.contains("queued message 1 on 'r/t'") && $0.contains("3 times") })
        #expect(h.link.statistics.deadLettered == 1)
    }

    @Test func permanentRefusalMovesToTheDeadLettersAndTheDrainGoesOn() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()
        _ = h.link.fetched(items(1...2))
        let refused = h.link.received(puback(1, notAuthorized))
        #expect(
            refused.withoutLogs == [
                .deadLetter(seqs: [1], reason: .refused(notAuthorized)), .fetch(after: 2, limit: 1),
            ]
        )
        #expect(refused.logs.filter { $0.contains("queued message 1 on 'r/t'") && $0.contains("0x87") }.count == 1)
        #expect(h.link.fetched([item(3)]) == [sent(3, id: 3)])
        #expect(h.link.statistics.deadLettered == 1)
        #expect(h.link.statistics.rejectedByReason == [0x87: 1])
    }

    /// Connect (again) and return the CONNACK's actions.
    private func reconnect(_ h: inout Harness) -> [BridgeAction] {
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        return h.link.received(.connAck(ConnAckPacket()))
    }

    @Test func poisonMessageIsDeadLetteredAfterMaxAttemptsConnectionLosses() {
        var c = config(maxInflight: 2)
        c.maxAttempts = 3
        var h = Harness(c)
        _ = h.connect()
        // 1 was acknowledged every time; 2 is the head in flight when the remote cuts.
        for loss in 1...3 {
            #expect(h.link.fetched(items(2...3)).count == 2)
            let closed = h.link.connectionClosed(error: Boom(description: "Connection reset by peer"))
            if loss < 3 {
                #expect(!closed.contains { if case .deadLetter = $0 { true } else { false } })
                #expect(reconnect(&h).withoutLogs.last == .fetch(after: nil, limit: 2))
            } else {
                #expect(closed.contains(.deadLetter(seqs: [2], reason: .maxAttempts)))
                #expect(
                    closed.logs.contains {
                        $0.contains("queued message 2 on 'r/t'") && $0.contains("3 connection losses")
                    }
                )
            }
        }
        // The store moved 2; the drain goes on with 3.
        #expect(reconnect(&h).withoutLogs.last == .fetch(after: nil, limit: 2))
        #expect(h.link.fetched(items(3...4)) == [sent(3, id: 1), sent(4, id: 2)])
        #expect(h.link.statistics.deadLettered == 1)
    }

    @Test func anAcknowledgedHeadStartsTheCountAfresh() {
        var c = config(maxInflight: 1)
        c.maxAttempts = 2
        var h = Harness(c)
        _ = h.connect()
        _ = h.link.fetched([item(1)])
        _ = h.link.connectionClosed()
        _ = reconnect(&h)
        _ = h.link.fetched([item(1)])
        _ = h.link.received(puback(1))  // got through: 2 is the head now
        _ = h.link.fetched([item(2)])
        let closed = h.link.connectionClosed()
        #expect(!closed.contains { if case .deadLetter = $0 { true } else { false } })
    }

    @Test func notificationCountsAgainstTheWindow() {
        var h = Harness(config(notificationTopic: notification, maxInflight: 1))
        let online = h.connect().withoutLogs
        #expect(!online.contains { if case .fetch = $0 { true } else { false } })  // the window is full
        #expect(h.link.received(puback(1)) == [.fetch(after: nil, limit: 1)])
        #expect(h.link.fetched(items(1...1)) == [sent(1, id: 2)])
        #expect(h.link.inflightCount == 1)
    }

    @Test func aPubAckResetsTheBackoff() {
        var h = Harness(config(), seed: 5)
        var reference = Backoff(base: .seconds(1), cap: .seconds(30))
        var rng = SeededGenerator(seed: 5)
        _ = h.link.start()
        for _ in 0..<6 {
            #expect(h.link.connectionClosed(error: nil).scheduledDelay == reference.next(using: &rng))
            _ = h.link.reconnectTimerFired()
        }
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        _ = h.link.fetched([item(1)])
        _ = h.link.received(puback(1))  // progress, long before the 60 s stable period
        reference.reset()
        #expect(h.link.connectionClosed().scheduledDelay == reference.next(using: &rng))
    }

    @Test func pausedLinkSendsNothingUntilResumed() {
        var h = Harness(config(maxInflight: 3))
        _ = h.connect()
        #expect(h.link.setPaused(true).withoutLogs == [])
        #expect(h.link.fetched(items(1...3)) == [])  // the answer to the fetch out before the pause
        #expect(h.link.queueHasMore() == [])
        #expect(h.link.setPaused(false).withoutLogs == [.fetch(after: nil, limit: 3)])
        #expect(h.link.fetched(items(1...3)) == [sent(1, id: 1), sent(2, id: 2), sent(3, id: 3)])
    }

    @Test func pacingHoldsTheRate() {
        var c = config(maxInflight: 100)
        c.maxRate = 20  // burst 1
        var h = Harness(c)
        var next: UInt64 = 1
        var sends = 0
        var acks: [UInt16] = []
        func drive(_ actions: [BridgeAction], _ h: inout Harness) {
            var queue = actions
            while !queue.isEmpty {
                let action = queue.removeFirst()
                switch action {
                case .fetch(_, let limit):
                    let batch = (0..<UInt64(limit)).map { item(next + $0) }
                    next += UInt64(limit)
                    queue += h.link.fetched(batch)
                case .send(.publish(let p)):
                    sends += 1
                    if let id = p.packetIdentifier { acks.append(id) }
                default: break
                }
            }
        }
        drive(h.connect(), &h)
        for _ in 0..<200 {  // 10 s in 50 ms ticks, every PUBLISH acknowledged at once
            drive(h.advance(.milliseconds(50)), &h)
            while !acks.isEmpty { drive(h.link.received(puback(acks.removeFirst())), &h) }
        }
        #expect(sends >= 195 && sends <= 201, "sent \(sends) in 10 s at 20/s")
    }

    /// 90/s in 50 ms ticks is 4.5 tokens a tick: whole sends must not throw the half away (they did: 80/s).
    @Test func pacingKeepsAFractionalRatePerTick() {
        func run(ticks: [Int64]) -> (total: Int, seconds: Double, busiestSecond: Int) {
            var bucket = TokenBucket<TestInstant>(rate: 90)
            var sends: [(at: Int64, count: Int)] = []
            var now: Int64 = 0
            for step in ticks {
                now += step
                bucket.refill(now: TestInstant(now))
                let n = bucket.available
                bucket.take(Double(n))
                sends.append((now, n))
            }
            var busiest = 0
            for i in sends.indices {
                let window = sends[i...].prefix { $0.at - sends[i].at < 1_000_000_000 }
                busiest = max(busiest, window.reduce(0) { $0 + $1.count })
            }
            return (sends.reduce(0) { $0 + $1.count }, Double(now) / 1e9, busiest)
        }
        // Paced links tick every 25 ms; a loaded machine runs them late, up to 50 ms here.
        let steady = Array(repeating: Int64(50_000_000), count: 400)
        let jittery = (0..<600).map { Int64($0 % 2 == 0 ? 25 : 45) * 1_000_000 }
        for ticks in [steady, jittery] {
            let (total, seconds, busiest) = run(ticks: ticks)
            let expected = 90 * seconds
            #expect(
                Double(total) >= expected - 1 && Double(total) <= expected + 6,
                "sent \(total) in \(seconds) s at 90/s"
            )
            #expect(busiest <= 96, "\(busiest) in one second")  // 1.05 × 90 + 1
        }
    }

    @Test func repeatedWarningsAreSummarised() {
        var h = Harness(config(maxInflight: 2))
        _ = h.connect()
        var logged = 0
        for id: UInt16 in 100..<105 { logged += h.link.received(puback(id)).logs.count }
        #expect(logged == 1)
        let summary = h.advance(.seconds(60)).logs
        #expect(summary == ["bridge cloud: 4 PUBACKs for unknown packet ids ignored in the last 60 s"])
        #expect(h.link.received(puback(200)).logs.count == 1)  // a new period logs its first again
    }

    @Test func connectFailuresAreCountedByCauseAndTheWillIsHinted() {
        var h = Harness(config(notificationTopic: notification))
        _ = h.link.start()
        _ = h.link.connectionClosed(error: Boom(description: "connection refused (errno: 111)"))
        #expect(h.link.statistics.connectFailuresByReason == ["refused": 1])
        #expect(h.link.statistics.lastError != nil)
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        let refused = h.link.received(.connAck(ConnAckPacket(reasonCode: ReasonCode(rawValue: 0x90))))
        #expect(refused.logs.contains { $0.contains("notification_topic") && $0.contains(notification) })
        #expect(h.link.statistics.connectFailuresByReason == ["refused": 1, "connack_0x90": 1])
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        // Bad credentials name their own cause: no hint.
        let credentials = h.link.received(.connAck(ConnAckPacket(reasonCode: .badUserNameOrPassword)))
        #expect(!credentials.logs.contains { $0.contains("notification_topic") })
        _ = h.link.connectionClosed()
        _ = h.link.reconnectTimerFired()
        _ = h.link.connected()
        _ = h.link.received(.connAck(ConnAckPacket()))
        #expect(h.link.statistics.lastError == nil)
    }

    @Test func refusedBridgeBitOnABothRuleWarnsAboutEchoes() throws {
        let both = BridgeRules([try TopicRule(pattern: "a/#", direction: .both, qos: .atLeastOnce)])
        for (rules, warns) in [(both, true), (outRules(), false)] {
            var h = Harness(config(tryPrivate: true, rules: rules))
            _ = h.link.start()
            _ = h.link.connected()
            let refused = h.link.received(.connAck(ConnAckPacket(reasonCode: .unsupportedProtocolVersion)))
            #expect(refused.logs.contains { $0.contains("echoes") } == warns)
        }
    }

    @Test func tokenBucket() {
        var bucket = TokenBucket<TestInstant>(rate: 100)
        #expect(bucket.burst == 5)
        bucket.refill(now: TestInstant(0))
        #expect(bucket.available == 5)
        bucket.take(5)
        #expect(bucket.available == 0)
        bucket.refill(now: TestInstant(30_000_000))  // 30 ms: 3 tokens
        #expect(bucket.available == 3)
        bucket.refill(now: TestInstant(10_000_000_000))  // capped at the burst plus one token of change
        #expect(bucket.available == 6)
        var pacer = DrainPacer<TestInstant>(messagesPerSecond: 100, bytesPerSecond: 1000)
        pacer.refill(now: TestInstant(0))
        pacer.spend(size: 150)  // over the byte burst (50): allowed once, then nothing
        #expect(pacer.allowance == 0)
    }
}
