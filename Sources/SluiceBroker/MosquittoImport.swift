import MQTTCore

// Note on importing a mosquitto.db (`sluice import-mosquitto-db`):
// - The import goes through the broker's own state: sessions and retained messages are added to a
//   `Broker` and saved by `takeChanges()`, so the store gets exactly the records a running gateway
//   would have written, and `sluice run` loads them as it loads its own.
// - Mosquitto keeps no protocol level with a session: one that never expires (clean session false)
//   is taken as MQTT 3.1.1, one with an expiry interval as MQTT 5. The client's next CONNECT sets
//   the level anyway.
// - Outgoing messages keep their order. Those Mosquitto had sent and not seen acknowledged stay in
//   flight with their packet identifiers (resent with DUP on reconnect, as Mosquitto would); the rest
//   are queued. A QoS 2 message received from a client and awaiting its PUBREL had not been
//   delivered by Mosquitto yet: Sluice delivers on receipt, so it cannot take it over; it is listed
//   as skipped (its publisher's PUBREL then completes without it).

/// What an import added, and what it left out and why.
public struct MosquittoImportReport: Sendable, Equatable {
    public var retained = 0
    public var sessions = 0
    public var subscriptions = 0
    public var queuedMessages = 0
    public var inflightMessages = 0
    /// One line per thing not imported, with the reason.
    public var skipped: [String] = []

    public init() {}
}

extension Broker {
    /// Adds the retained messages and persistent sessions of `db`; a session or retained topic the
    /// broker already has is kept and the file's one skipped. Call with `tracksChanges` on, then
    /// save with `takeChanges(wallClockOffset:)`. `wallClockMilliseconds` is now on the wall clock.
    public mutating func importMosquitto(
        _ db: MosquittoDB,
        wallClockMilliseconds: UInt64,
        now: BrokerTime
    ) -> MosquittoImportReport {
        var report = MosquittoImportReport()
        let offset = Int64(wallClockMilliseconds) - Int64(now)
        var messages: [UInt64: Message] = [:]
        var unreadable: [UInt64: String] = [:]
        for stored in db.messages {
            do {
                messages[stored.storeID] = try Self.message(stored, offset: offset, now: now)
            } catch {
                unreadable[stored.storeID] = "\(error)"
            }
        }
        func lookup(_ storeID: UInt64, _ what: String) -> Message? {
            if let message = messages[storeID] { return message }
            report.skipped.append("\(what): \(unreadable[storeID] ?? "its message (store id \(storeID)) is missing")")
            return nil
        }

        for storeID in db.retained {
            guard let message = lookup(storeID, "retained message (store id \(storeID))") else { continue }
            guard retained[message.topic] == nil else {
                report.skipped.append("retained message on \(message.topic): the Sluice store already has one")
                continue
            }
            retained.importMessage(message)
            report.retained += 1
        }

        var imported: [String: Session] = [:]
        var order: [String] = []
        for client in db.clients {
            let what = "session \(client.clientID)"
            guard client.sessionExpiryInterval > 0 else {
                report.skipped.append("\(what): it ends at disconnect (session expiry interval 0)")
                continue
            }
            guard sessions[client.clientID] == nil, imported[client.clientID] == nil else {
                report.skipped.append("\(what): the Sluice store already has a session with this client id")
                continue
            }
            var session = Session(
                protocolVersion: client.sessionExpiryInterval == UInt32.max ? .v3_1_1 : .v5,
                expiryInterval: client.sessionExpiryInterval
            )
            session.username = client.username
            session.outbound.lastPacketID = client.lastMid
            // Offline since the expiry time less the interval; a session Mosquitto saved while it
            // was connected (expiry time 0) counts from now, as Sluice's own restore does.
            if client.sessionExpiryTime > 0, client.sessionExpiryInterval != UInt32.max {
                let expiresAtWall = milliseconds(client.sessionExpiryTime)
                guard expiresAtWall > Int64(wallClockMilliseconds) else {
                    report.skipped.append("\(what): it expired")
                    continue
                }
                let offlineSinceWall = expiresAtWall - Int64(client.sessionExpiryInterval) * 1000
                session.presence = .offline(since: BrokerTime(max(0, min(offlineSinceWall - offset, Int64(now)))))
            } else {
                session.presence = .offline(since: now)
            }
            imported[client.clientID] = session
            order.append(client.clientID)
        }

        for sub in db.subscriptions {
            guard imported[sub.clientID] != nil else {
                if sessions[sub.clientID] == nil {
                    report.skipped.append("subscription \(sub.filter) of \(sub.clientID): no session for that client")
                }
                continue
            }
            guard let qos = QoS(rawValue: sub.qos), let handling = RetainHandling(rawValue: (sub.options >> 4) & 0x03)
            else {
                report.skipped.append("subscription \(sub.filter) of \(sub.clientID): bad options")
                continue
            }
            guard !SubscriptionTree.exceedsLevels(filter: sub.filter, limit: settings.maxTopicLevels) else {
                report.skipped.append(
                    "subscription \(sub.filter) of \(sub.clientID): deeper than \(settings.maxTopicLevels) levels"
                )
                continue
            }
            let options = SubscriptionOptions(
                qos: qos,
                noLocal: sub.options & 0x04 != 0,
                retainAsPublished: sub.options & 0x08 != 0,
                retainHandling: handling
            )
            imported[sub.clientID]!.subscriptions[sub.filter] = Subscription(
                options: options,
                identifier: sub.identifier == 0 ? nil : sub.identifier
            )
            report.subscriptions += 1
        }

        for held in db.clientMessages {
            let what = "message \(held.mid) for \(held.clientID)"
            guard imported[held.clientID] != nil else {
                if sessions[held.clientID] == nil {
                    report.skipped.append("\(what): no session for that client")
                }
                continue
            }
            guard held.outgoing else {
                report.skipped.append(
                    "\(what): a QoS 2 message received from the client and not yet released by its PUBREL"
                )
                continue
            }
            guard let message = lookup(held.storeID, what), let qos = QoS(rawValue: held.qos) else { continue }
            var session = imported[held.clientID]!
            let delivery = session.outbound.numbered(
                Delivery(
                    message: message,
                    qos: qos,
                    retain: held.retain,
                    subscriptionIdentifiers: held.subscriptionIdentifier == 0 ? [] : [held.subscriptionIdentifier]
                )
            )
            let sentState: Outgoing.State? =
                switch held.state {
                case .waitForPubAck: .awaitingPubAck
                case .waitForPubRec: .awaitingPubRec
                case .resendPubRel, .waitForPubComp: .awaitingPubComp
                default: nil
                }
            // Messages already sent keep their packet identifier; only the first ones can be in
            // flight, so one sent after a queued one is queued too (order is kept either way).
            if let sentState, qos != .atMostOnce, !session.outbound.hasQueued,
                !session.outbound.isInFlight(held.mid)
            {
                session.outbound.restoreInflight(Outgoing(packetID: held.mid, delivery: delivery, state: sentState))
                report.inflightMessages += 1
            } else {
                session.outbound.restoreQueued(delivery)
                report.queuedMessages += 1
            }
            imported[held.clientID] = session
        }

        for clientID in order {
            let session = imported[clientID]!
            for (filter, subscription) in session.subscriptions {
                subscriptions.insert(filter: filter, clientID: clientID, subscription: subscription)
            }
            sessions[clientID] = session
            timers.setExpiry(clientID, at: session.expiresAt())
            report.sessions += 1
        }
        return report
    }

    /// A Mosquitto stored message as Sluice keeps messages; throws when it cannot be used.
    private static func message(_ stored: MosquittoDB.StoredMessage, offset: Int64, now: BrokerTime) throws
        -> Message
    {
        guard let qos = QoS(rawValue: stored.qos) else {
            throw PersistenceError(description: "message on \(stored.topic): QoS \(stored.qos)")
        }
        let properties: Properties
        do {
            properties = try Properties(storageBytes: stored.properties)
        } catch {
            throw PersistenceError(description: "message on \(stored.topic): damaged MQTT 5 properties (\(error))")
        }
        var expiresAt: BrokerTime?
        if stored.expiryTime > 0 {
            let brokerTime = milliseconds(stored.expiryTime) - offset
            guard brokerTime > Int64(now) else {
                throw PersistenceError(description: "message on \(stored.topic): it expired")
            }
            expiresAt = BrokerTime(brokerTime)
        }
        return Message(
            topic: stored.topic,
            payload: ByteBuffer(bytes: stored.payload),
            qos: qos,
            retain: stored.retain,
            properties: properties,
            expiresAt: expiresAt,
            origin: stored.sourceID.isEmpty ? nil : stored.sourceID,
            // Mosquitto checks a retained message's source when it has one (check_retain_source).
            publisher: stored.sourceID.isEmpty
                ? nil
                : Publisher(
                    clientID: stored.sourceID,
                    username: stored.sourceUsername.isEmpty ? nil : stored.sourceUsername
                )
        )
    }
}

/// Wall-clock seconds from the file in milliseconds, saturating: a damaged time must not trap.
private func milliseconds(_ seconds: Int64) -> Int64 {
    let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
    return overflow ? (seconds < 0 ? Int64.min / 2 : Int64.max / 2) : product
}
