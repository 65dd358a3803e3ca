/// What the next save of broker state must write, and which acknowledgements wait for it.
///
/// The session table and the retained store record what changed (`SessionTable.takeChanged()`,
/// `RetainedStore.takeChanges()`); this journal turns that into a save: which persistent sessions
/// are saved, with only the messages that came and went or with all of them, and which records are
/// deleted because their session ended. It remembers which sessions have records in the store, so
/// that ending one deletes it, and holds the acknowledgements (PUBACK/PUBREC, SUBACK/UNSUBACK tokens)
/// that may go only once that save has committed [design: durability].
struct SaveJournal: Sendable {
    /// Persistent sessions whose records are in the store (so that ending one deletes them).
    private(set) var savedSessions: Set<String> = []
    /// Acknowledgements held until the next save of broker state has committed (`take`).
    private(set) var acknowledgementsAwaitingSave: [UInt64] = []

    /// Whether acknowledgements wait for a save: the owner should save soon rather than at its interval.
    var hasAcknowledgementsAwaitingSave: Bool { !acknowledgementsAwaitingSave.isEmpty }

    /// The acknowledgement `token` is released by the save that `take` hands out next.
    mutating func holdUntilSaved(_ token: UInt64) {
        acknowledgementsAwaitingSave.append(token)
    }

    /// The session's record is in the store already (loaded at start-up, or found there).
    mutating func noteOnDisk(_ clientID: String) {
        savedSessions.insert(clientID)
    }

    /// Nothing is saved any more (change tracking off): forget which records the store holds.
    mutating func forgetSaved() {
        savedSessions.removeAll()
    }

    /// What changed since the last call, with the acknowledgements that wait for it; drains the
    /// session table's and the retained store's change records. Sessions without an expiry interval
    /// are not kept (their records, if any, are deleted).
    mutating func take(from sessions: inout SessionTable, retained: inout RetainedStore) -> PendingChanges {
        var changes = PendingChanges()
        let (changed, journals) = sessions.takeChanged()
        for clientID in changed {
            guard let session = sessions.all[clientID], session.isPersistent else {
                if savedSessions.remove(clientID) != nil { changes.sessions.append(.delete(clientID: clientID)) }
                continue
            }
            let journal = journals[clientID] ?? MessageJournal()
            let rewrite = journal.rewrite || !savedSessions.contains(clientID)
            savedSessions.insert(clientID)
            changes.sessions.append(
                .save(
                    SessionSnapshot(session, clientID: clientID),
                    all: rewrite ? session.outbound.deliveries : nil,
                    added: rewrite ? [] : journal.added.values.sorted { $0.seq < $1.seq },
                    removed: rewrite ? [] : journal.removed.sorted()
                )
            )
        }
        changes.retained = retained.takeChanges()
        changes.acknowledgements = acknowledgementsAwaitingSave
        acknowledgementsAwaitingSave.removeAll(keepingCapacity: true)
        return changes
    }
}
