import MQTTCore
import Testing

@testable import SluiceBroker

private let persistentSession: Properties = {
    var properties = Properties()
    properties.sessionExpiryInterval = 3600
    return properties
}()

private func because(_ text: String) -> Properties {
    var properties = Properties()
    properties.reasonString = text
    return properties
}

/// A commit that should hold a QoS 1/2 message failed: the publisher never hears success. One event
/// (the commit's outcome), one expected action, per path and protocol version.
@Suite struct AcknowledgementTests {
    // MARK: The decision table

    @Test(arguments: [QoS.atLeastOnce, .exactlyOnce])
    func committedIsSuccessForEveryVersion(qos: QoS) {
        for version in [ProtocolVersion.v3_1, .v3_1_1, .v5] {
            let decision = AcknowledgementDecision(outcome: .committed, version: version, qos: qos, packetID: 9)
            let ack = PubAckPacket(packetIdentifier: 9)
            #expect(decision.action == .send(qos == .atLeastOnce ? .pubAck(ack) : .pubRec(ack)))
        }
    }

    @Test func mqtt5HearsQuotaExceededForAPolicyRefusalAndUnspecifiedErrorForAFailingDevice() {
        let refused = AcknowledgementDecision(
            outcome: .refused("disk full"),
            version: .v5,
            qos: .atLeastOnce,
            packetID: 1
        )
        #expect(
            refused.action
                == .send(
                    .pubAck(
                        PubAckPacket(packetIdentifier: 1, reasonCode: .quotaExceeded, properties: because("disk full"))
                    )
                )
        )
        let failed = AcknowledgementDecision(outcome: .failed("EIO"), version: .v5, qos: .exactlyOnce, packetID: 2)
        #expect(
            failed.action
                == .send(
                    .pubRec(
                        PubAckPacket(packetIdentifier: 2, reasonCode: .unspecifiedError, properties: because("EIO"))
                    )
                )
        )
    }

    @Test(arguments: [ProtocolVersion.v3_1, .v3_1_1])
    func olderClientsAreDisconnectedWithoutAnAcknowledgement(version: ProtocolVersion) {
        for outcome in [CommitOutcome.refused("full"), .failed("EIO")] {
            for qos in [QoS.atLeastOnce, .exactlyOnce] {
                #expect(
                    AcknowledgementDecision(outcome: outcome, version: version, qos: qos, packetID: 1).action
                        == .disconnect(nil)
                )
            }
        }
    }

    @Test func aHeldSubAckIsNotSentWhenTheSaveFailed() {
        let suback = Packet.subAck(SubAckPacket(packetIdentifier: 4, reasonCodes: [.grantedQoS1]))
        #expect(
            AcknowledgementDecision(outcome: .committed, version: .v3_1_1, qos: .atMostOnce, packetID: 0, reply: suback)
                .action == .send(suback)
        )
        #expect(
            AcknowledgementDecision(
                outcome: .failed("EIO"),
                version: .v3_1_1,
                qos: .atMostOnce,
                packetID: 0,
                reply: suback
            ).action == .disconnect(nil)
        )
        #expect(
            AcknowledgementDecision(
                outcome: .refused("full"),
                version: .v5,
                qos: .atMostOnce,
                packetID: 0,
                reply: suback
            ).action
                == .disconnect(DisconnectPacket(reasonCode: .quotaExceeded, properties: because("full")))
        )
    }

    @Test func theWorstOfSeveralCommitsDecides() {
        #expect(CommitOutcome.committed.combined(with: .committed) == .committed)
        #expect(CommitOutcome.committed.combined(with: .refused("a")) == .refused("a"))
        #expect(CommitOutcome.refused("a").combined(with: .failed("b")) == .failed("b"))
        #expect(CommitOutcome.failed("b").combined(with: .refused("a")) == .failed("b"))
    }

    // MARK: Traces through the broker, one per path

    @Test func bridgeAppendFailedFor311ClosesTheConnectionAndTheResendIsKeptAnew() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v311", version: .v3_1_1, clean: false)
        #expect(h.publish(1, "t", "x", qos: .exactlyOnce, packetID: 5) == [.persist(1, "t")])
        #expect(
            h.broker.persisted(token: 1, outcome: .failed("EIO"), now: h.now).map(Seen.init) == [
                .close(ConnectionID(1), nil)
            ]
        )
        #expect(!h.broker.isConnected(ConnectionID(1)))
        #expect(h.broker.stats.publishFailed == 1)
        // It reconnects and sends the QoS 2 message again: kept anew, not answered as a duplicate.
        h.connect(2, "v311", version: .v3_1_1, clean: false)
        #expect(h.publish(2, "t", "x", qos: .exactlyOnce, packetID: 5) == [.persist(2, "t")])
        #expect(
            h.broker.persisted(token: 2, outcome: .committed, now: h.now).map(Seen.init) == [
                .send(ConnectionID(2), .pubRec(PubAckPacket(packetIdentifier: 5)))
            ]
        )
    }

    @Test func aQoS2ResendOnTheNextConnectionWaitsForTheFirstCopysCommit() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v311", version: .v3_1_1, clean: false)
        #expect(h.publish(1, "t", "x", qos: .exactlyOnce, packetID: 5) == [.persist(1, "t")])
        h.closed(1)  // the link drops before the commit is in
        h.connect(2, "v311", version: .v3_1_1, clean: false)
        // The resend: no PUBREC while the first copy is not on disk.
        #expect(h.publish(2, "t", "x", qos: .exactlyOnce, packetID: 5).isEmpty)
        #expect(
            h.broker.persisted(token: 1, outcome: .committed, now: h.now).map(Seen.init) == [
                .send(ConnectionID(2), .pubRec(PubAckPacket(packetIdentifier: 5)))
            ]
        )
        #expect(
            h.receive(.pubRel(PubAckPacket(packetIdentifier: 5)), from: 2).packets(to: 2) == [
                .pubComp(PubAckPacket(packetIdentifier: 5))
            ]
        )
    }

    @Test func aQoS2MessageWhoseCommitFailedAfterItsConnectionLeftIsKeptAnewWhenResent() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v311", version: .v3_1_1, clean: false)
        h.publish(1, "t", "x", qos: .exactlyOnce, packetID: 5)
        h.closed(1)
        #expect(h.broker.persisted(token: 1, outcome: .refused("disk full"), now: h.now).isEmpty)
        #expect(h.broker.stats.publishRefused == 1)
        h.connect(2, "v311", version: .v3_1_1, clean: false)
        // Not answered as a duplicate of a message that was never kept: kept anew.
        #expect(h.publish(2, "t", "x", qos: .exactlyOnce, packetID: 5) == [.persist(2, "t")])
        // And a resend that waited for a commit that then failed is refused like the first copy.
        h.closed(2)
        h.connect(3, "v311", version: .v3_1_1, clean: false)
        #expect(h.publish(3, "t", "x", qos: .exactlyOnce, packetID: 5).isEmpty)
        #expect(
            h.broker.persisted(token: 2, outcome: .failed("EIO"), now: h.now).map(Seen.init) == [
                .close(ConnectionID(3), nil)
            ]
        )
        h.connect(4, "v311", version: .v3_1_1, clean: false)
        #expect(h.publish(4, "t", "x", qos: .exactlyOnce, packetID: 5) == [.persist(3, "t")])
    }

    @Test func aFailedCommitOfAnEndedSessionLeavesTheNextSessionsQoS2FlowAlone() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v5", version: .v5)  // session expiry 0: the session ends with the connection
        h.publish(1, "t", "x", qos: .exactlyOnce, packetID: 5)
        h.closed(1)
        h.connect(2, "v5", version: .v5)
        #expect(h.publish(2, "t", "y", qos: .exactlyOnce, packetID: 5) == [.persist(2, "t")])
        #expect(h.broker.persisted(token: 1, outcome: .failed("EIO"), now: h.now).isEmpty)
        _ = h.broker.persisted(token: 2, outcome: .committed, now: h.now)
        #expect(
            h.receive(.pubRel(PubAckPacket(packetIdentifier: 5)), from: 2).packets(to: 2) == [
                .pubComp(PubAckPacket(packetIdentifier: 5))
            ]
        )
    }

    @Test func bridgeAppendRefusedForMQTT5IsQuotaExceededAndTheConnectionStays() {
        let h = Harness(durable: ["#"])
        h.connect(1, "v5")
        h.publish(1, "t", "x", qos: .atLeastOnce, packetID: 3)
        #expect(
            h.broker.persisted(token: 1, outcome: .refused("bridge queue full"), now: h.now).map(Seen.init) == [
                .send(
                    ConnectionID(1),
                    .pubAck(
                        PubAckPacket(
                            packetIdentifier: 3,
                            reasonCode: .quotaExceeded,
                            properties: because("bridge queue full")
                        )
                    )
                )
            ]
        )
        #expect(h.broker.isConnected(ConnectionID(1)))
        #expect(h.broker.stats.publishRefused == 1)
    }

    @Test func retainedSaveFailedFor311ClosesTheConnection() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "pub", version: .v3_1_1)
        #expect(h.publish(1, "r", "x", qos: .atLeastOnce, packetID: 2, retain: true).isEmpty)
        let tokens = h.broker.takeChanges().acknowledgements
        #expect(tokens.count == 1)
        #expect(
            h.broker.persisted(token: tokens[0], outcome: .refused("disk full"), now: h.now).map(Seen.init) == [
                .close(ConnectionID(1), nil)
            ]
        )
    }

    @Test func persistentSessionSaveFailedForMQTT5IsUnspecifiedError() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", properties: persistentSession)
        h.subscribe(1, "t")
        for token in h.broker.takeChanges().acknowledgements {
            _ = h.broker.persisted(token: token, outcome: .committed, now: h.now)
        }
        _ = h.broker.closed(ConnectionID(1), now: h.now)
        h.connect(2, "pub")
        #expect(h.publish(2, "t", "x", qos: .atLeastOnce, packetID: 8).isEmpty)
        let tokens = h.broker.takeChanges().acknowledgements
        #expect(
            tokens.flatMap { h.broker.persisted(token: $0, outcome: .failed("EIO"), now: h.now).map(Seen.init) } == [
                .send(
                    ConnectionID(2),
                    .pubAck(
                        PubAckPacket(packetIdentifier: 8, reasonCode: .unspecifiedError, properties: because("EIO"))
                    )
                )
            ]
        )
    }

    @Test func aMessageHeldByTwoCommitsIsNotAcknowledgedWhenOneFails() {
        let h = Harness(durable: ["t"])
        h.broker.tracksChanges = true
        h.connect(1, "pub", version: .v3_1_1)
        #expect(h.publish(1, "t", "x", qos: .atLeastOnce, packetID: 1, retain: true) == [.persist(1, "t")])
        let tokens = h.broker.takeChanges().acknowledgements
        #expect(tokens == [1])
        #expect(h.broker.persisted(token: 1, outcome: .committed, now: h.now).isEmpty)  // the bridge queue kept it
        #expect(
            h.broker.persisted(token: 1, outcome: .failed("EIO"), now: h.now).map(Seen.init) == [
                .close(ConnectionID(1), nil)
            ]
        )
    }

    @Test func aSubAckWaitingForAFailedSaveClosesTheConnection() {
        let h = Harness()
        h.broker.tracksChanges = true
        h.connect(1, "keeper", version: .v3_1_1, clean: false)
        #expect(h.subscribe(1, "t").isEmpty)  // the SUBACK waits for the save
        let tokens = h.broker.takeChanges().acknowledgements
        #expect(
            tokens.flatMap { h.broker.persisted(token: $0, outcome: .failed("EIO"), now: h.now).map(Seen.init) } == [
                .close(ConnectionID(1), nil)
            ]
        )
        #expect(h.broker.stats.publishFailed == 0)  // not a publish
    }

    @Test func anInternalPublishLearnsWhetherItsSaveCommitted() {
        let h = Harness()
        h.broker.tracksChanges = true
        let message = Message(topic: "in/r", payload: .init(string: "x"), qos: .atLeastOnce, retain: true)
        let (_, token) = h.broker.publishAwaitingSave(message, now: h.now)
        #expect(token != nil)
        #expect(h.broker.takeChanges().acknowledgements == [token!])
    }
}

/// Saving broker state while the store fails: nothing is dropped, retries back off, waiting
/// acknowledgements are answered at once meanwhile.
@Suite struct StateSaverTests {
    private func changes(_ h: Harness, retained topic: String) -> PendingChanges {
        _ = h.broker.publish(
            Message(topic: topic, payload: .init(string: "v"), qos: .atMostOnce, retain: true),
            now: h.now
        )
        return h.broker.takeChanges()
    }

    @Test func aFailedSaveIsKeptAndWrittenAheadOfNewerChanges() {
        let h = Harness()
        h.broker.tracksChanges = true
        var saver = StateSaver()
        let first = changes(h, retained: "a")
        guard case .save(let batch) = saver.next(first) else {
            Issue.record("expected a save")
            return
        }
        #expect(saver.finished(batch, .refused("disk full")) == 1_000)
        // Before the retry is due: answered at once, changes kept.
        let second = changes(h, retained: "b")
        guard case .answerNow(let failure) = saver.next(second) else {
            Issue.record("expected answerNow")
            return
        }
        #expect(failure == .refused("disk full"))
        #expect(saver.unsavedCount == 2)
        // The retry writes both, oldest first.
        saver.retryIsDue()
        guard case .save(let retry) = saver.next(PendingChanges()) else {
            Issue.record("expected a save")
            return
        }
        #expect(
            retry.flatMap { $0.encoded(wallClockOffset: 0) }
                == [first, second].flatMap { $0.encoded(wallClockOffset: 0) }
        )
        #expect(saver.finished(retry, .committed) == nil)
        #expect(saver.failure == nil && saver.unsavedCount == 0)
        guard case .nothing = saver.next(PendingChanges()) else {
            Issue.record("expected nothing")
            return
        }
    }

    @Test func retriesBackOffToThirtySeconds() {
        var saver = StateSaver()
        let h = Harness()
        h.broker.tracksChanges = true
        var delays: [BrokerTime] = []
        var pending = changes(h, retained: "a")
        for _ in 0..<7 {
            guard case .save(let batch) = saver.next(pending) else {
                Issue.record("expected a save")
                return
            }
            delays.append(saver.finished(batch, .failed("EIO"))!)
            saver.retryIsDue()
            pending = PendingChanges()
        }
        #expect(delays == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000])
        #expect(saver.unsavedCount == 1)  // the one change set, kept through every failure
    }

    @Test func shutdownSavesWhateverTheBackoffSays() {
        var saver = StateSaver()
        let h = Harness()
        h.broker.tracksChanges = true
        guard case .save(let batch) = saver.next(changes(h, retained: "a")) else {
            Issue.record("expected a save")
            return
        }
        _ = saver.finished(batch, .failed("EIO"))
        guard case .save(let forced) = saver.next(PendingChanges(), force: true) else {
            Issue.record("expected a save")
            return
        }
        #expect(forced.count == 1)
    }
}
