import Atomics
import SluiceStore

/// Counts the store events after which a bridge's committed-record cache may hold records the store no longer
/// has (head drops by a bound or age, quarantines, a write failure): each bridge compares it with the value it
/// last saw before serving a fetch from memory. The store emits these before the completions of the same
/// commit, so a cache never hands out a record whose drop it could have seen.
final class StoreChangeSignal: Sendable {
    private let changes = ManagedAtomic<UInt64>(0)

    var value: UInt64 { changes.load(ordering: .acquiring) }

    /// From the store's writer thread.
    func note(_ event: StoreEvent) {
        switch event {
        case .dropped, .quarantined: changes.wrappingIncrement(ordering: .releasing)
        case .health(let health) where !health.isWritable: changes.wrappingIncrement(ordering: .releasing)
        case .health, .rejected, .mapGrew, .lowSpace: break
        }
    }
}
