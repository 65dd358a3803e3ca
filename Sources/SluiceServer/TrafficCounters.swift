import Atomics

/// Bytes in and out over all client connections, for `$SYS` and metrics. The connections add to
/// them on the broker's loop and the metrics endpoint reads them on its own: relaxed atomics, no lock.
final class TrafficCounters: Sendable {
    let bytesReceived = ManagedAtomic<Int>(0)
    let bytesSent = ManagedAtomic<Int>(0)

    func received(_ count: Int) { bytesReceived.wrappingIncrement(by: count, ordering: .relaxed) }
    func sent(_ count: Int) { bytesSent.wrappingIncrement(by: count, ordering: .relaxed) }

    var totals: (received: Int, sent: Int) {
        (bytesReceived.load(ordering: .relaxed), bytesSent.load(ordering: .relaxed))
    }
}
