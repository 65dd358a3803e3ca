// Note on acknowledged messages whose removal has not committed yet (issue 14, "a window of one is fast").
//
// A message leaves the durable queue in a write transaction after the remote's PUBACK; until that commits, a
// crash sends it again. Counting such messages against the in-flight window kept duplicates within the window,
// but a small window (`bridge_max_inflight 1`, a remote Receive Maximum of 1) then waited for one commit, two
// device flushes, per message: ~615 msg/s on loopback. So the bound is taken over both together instead:
//
//     in flight + acknowledged-but-not-yet-removed ≤ max(window, minimumBound)
//
// with in flight ≤ window as before. Windows of at least `minimumBound` keep exactly the old rule (and the old
// contract: at most the window is sent again after a crash); a smaller window sends on while up to
// `minimumBound` acknowledged messages wait to be removed in one commit. What a crash can send again is the
// messages in those two sets, so the bound is also the most duplicates one interruption can cause.

/// How much the bridge may fetch and send while acknowledged messages wait for their removal to commit, and
/// when those removals must commit rather than wait for an append to ride (see the note above).
public struct ResendBound: Sendable, Equatable {
    /// The floor of the bound: a window smaller than this still lets this many messages be in flight or
    /// acknowledged-but-unremoved, so removals commit in batches while sending goes on. A drain at a window of
    /// one then moves up to about half of it per removal commit (two device flushes): 32 gave 3.2–9.2k msg/s
    /// on the loaded 2-core bench machine (commits of 2–3 ms), 50 keeps it above 5,000. Windows of 50 and more
    /// (the default is 1000) are unaffected.
    public static let minimumBound = 50

    /// The connection's window: min(`bridge_max_inflight`, the remote's Receive Maximum).
    public var window: Int

    public init(window: Int) {
        self.window = max(1, window)
    }

    /// After a crash, at most this many messages go again: those in flight and those acknowledged whose
    /// removal had not committed.
    public var bound: Int { max(window, Self.minimumBound) }

    /// How many more messages may be fetched and sent now.
    public func room(inflight: Int, unremoved: Int) -> Int {
        max(0, min(window - inflight, bound - inflight - unremoved))
    }

    /// Whether removals may wait for the next append's commit (lazy) rather than commit now: only while they
    /// hold back nobody, i.e. the bound is not reached and they are less than half of it.
    public func removesLazily(inflight: Int, unremoved: Int) -> Bool {
        unremoved + inflight < bound && unremoved * 2 < bound
    }
}
