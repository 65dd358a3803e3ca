import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The save journal alone: from what the session table and the retained store recorded, which
// records a save writes or deletes, and which acknowledgements it releases.

private func delivery(_ text: String) -> Delivery {
    Delivery(
        message: Message(topic: "t", payload: ByteBuffer(string: text), qos: .atLeastOnce),
        qos: .atLeastOnce,
        retain: false,
        subscriptionIdentifiers: []
    )
}

/// A session kept for an hour after its connection ends (persistent) or ended with it (not).
private func session(persistent: Bool = true) -> Session {
    Session(protocolVersion: .v5, expiryInterval: persistent ? 3600 : 0)
}

/// One session change, readable: "save c all=[1,2]", "save c added=[3] removed=[1]", "delete c".
private func describe(_ change: PendingChanges.SessionChange) -> String {
    switch change {
    case .delete(let clientID):
        return "delete \(clientID)"
    case .save(let snapshot, let all, let added, let removed):
        if let all { return "save \(snapshot.clientID) all=\(all.map(\.seq))" }
        return "save \(snapshot.clientID) added=\(added.map(\.seq)) removed=\(removed)"
    }
}

@Suite struct SaveJournalTests {
    /// A tracking table holding `clientID`'s session with `count` stored messages, all recorded.
    func table(_ clientID: String, messages count: Int) -> SessionTable {
        var sessions = SessionTable()
        sessions.tracksChanges = true
        var stored = session()
        for index in 0..<count { stored.outbound.restoreQueued(stored.outbound.numbered(delivery("m\(index)"))) }
        sessions[clientID] = stored
        let slot = sessions.slot(of: clientID)!
        for queued in stored.outbound.queue { sessions.noteStored(queued, at: slot) }
        return sessions
    }

    @Test func aSessionNotYetInTheStoreIsSavedWithAllItsMessages() {
        var journal = SaveJournal()
        var sessions = table("c", messages: 2)
        var retained = RetainedStore()
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.sessions.map(describe) == ["save c all=[1, 2]"])
        #expect(journal.savedSessions == ["c"])
    }

    @Test func aSavedSessionIsSavedWithOnlyTheMessagesThatCameAndWent() throws {
        var journal = SaveJournal()
        var sessions = table("c", messages: 2)
        var retained = RetainedStore()
        _ = journal.take(from: &sessions, retained: &retained)

        var stored = sessions["c"]!
        let taken = stored.outbound.next(.bounds())
        let first = try #require(taken).delivery
        let third = stored.outbound.numbered(delivery("m2"))
        stored.outbound.restoreQueued(third)
        sessions["c"] = stored
        sessions.noteReleased(first, at: sessions.slot(of: "c")!)
        sessions.noteStored(third, at: sessions.slot(of: "c")!)
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.sessions.map(describe) == ["save c added=[3] removed=[1]"])
    }

    @Test func aMessageThatCameAndWentBetweenSavesIsNeitherWrittenNorDeleted() {
        var journal = SaveJournal()
        var sessions = table("c", messages: 0)
        var retained = RetainedStore()
        _ = journal.take(from: &sessions, retained: &retained)

        var stored = sessions["c"]!
        let passing = stored.outbound.numbered(delivery("m"))
        sessions["c"] = stored
        sessions.noteStored(passing, at: sessions.slot(of: "c")!)
        sessions.noteReleased(passing, at: sessions.slot(of: "c")!)
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.sessions.map(describe) == ["save c added=[] removed=[]"])
    }

    @Test func aRewriteReplacesEveryMessageOfASavedSession() {
        var journal = SaveJournal()
        var sessions = table("c", messages: 2)
        var retained = RetainedStore()
        _ = journal.take(from: &sessions, retained: &retained)

        sessions.noteRewrite("c")
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.sessions.map(describe) == ["save c all=[1, 2]"])
    }

    @Test func anEndedSessionWhoseRecordIsInTheStoreIsDeletedOnce() {
        var journal = SaveJournal()
        var sessions = table("c", messages: 1)
        var retained = RetainedStore()
        _ = journal.take(from: &sessions, retained: &retained)

        _ = sessions.removeValue(forKey: "c")
        #expect(journal.take(from: &sessions, retained: &retained).sessions.map(describe) == ["delete c"])
        #expect(journal.savedSessions.isEmpty)
        _ = sessions.removeValue(forKey: "c")
        #expect(journal.take(from: &sessions, retained: &retained).sessions.isEmpty)
    }

    @Test func anEndedSessionNeverSavedWritesNothing() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        sessions.tracksChanges = true
        var retained = RetainedStore()
        sessions["c"] = session()
        _ = sessions.removeValue(forKey: "c")
        #expect(journal.take(from: &sessions, retained: &retained).sessions.isEmpty)
    }

    @Test func aSessionThatStopsBeingPersistentHasItsRecordDeleted() {
        var journal = SaveJournal()
        var sessions = table("c", messages: 1)
        var retained = RetainedStore()
        _ = journal.take(from: &sessions, retained: &retained)

        sessions["c"]?.expiryInterval = 0
        #expect(journal.take(from: &sessions, retained: &retained).sessions.map(describe) == ["delete c"])
    }

    @Test func aNonPersistentSessionIsNeverSaved() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        sessions.tracksChanges = true
        var retained = RetainedStore()
        sessions["c"] = session(persistent: false)
        #expect(journal.take(from: &sessions, retained: &retained).sessions.isEmpty)
        #expect(journal.savedSessions.isEmpty)
    }

    @Test func aRecordFoundOnDiskIsDeletedWhenItsSessionEnds() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        sessions.tracksChanges = true
        var retained = RetainedStore()
        journal.noteOnDisk("restored")
        _ = sessions.removeValue(forKey: "restored")
        #expect(journal.take(from: &sessions, retained: &retained).sessions.map(describe) == ["delete restored"])
    }

    @Test func forgettingTheStoreMeansNoDeleteForARecordItHeld() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        sessions.tracksChanges = true
        var retained = RetainedStore()
        journal.noteOnDisk("c")
        journal.forgetSaved()
        _ = sessions.removeValue(forKey: "c")
        #expect(journal.take(from: &sessions, retained: &retained).sessions.isEmpty)
    }

    @Test func theRetainedStoresChangesComeWithTheSave() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        var retained = RetainedStore()
        retained.tracksChanges = true
        retained.store(Message(topic: "a", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, retain: true))
        retained.store(Message(topic: "$SYS/uptime", payload: ByteBuffer(string: "1"), qos: .atMostOnce, retain: true))
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.retained.map(\.topic) == ["a"])
        #expect(changes.retained.first?.message != nil)
        #expect(journal.take(from: &sessions, retained: &retained).retained.isEmpty)
    }

    @Test func heldAcknowledgementsAreReleasedInOrderByTheNextSaveOnly() {
        var journal = SaveJournal()
        var sessions = SessionTable()
        var retained = RetainedStore()
        #expect(!journal.hasAcknowledgementsAwaitingSave)
        journal.holdUntilSaved(7)
        journal.holdUntilSaved(3)
        #expect(journal.hasAcknowledgementsAwaitingSave)
        let changes = journal.take(from: &sessions, retained: &retained)
        #expect(changes.acknowledgements == [7, 3])
        // Acknowledgements travel even with nothing to write: the save still has to commit in order.
        #expect(changes.isEmpty)
        #expect(!journal.hasAcknowledgementsAwaitingSave)
        #expect(journal.take(from: &sessions, retained: &retained).acknowledgements.isEmpty)
    }
}
