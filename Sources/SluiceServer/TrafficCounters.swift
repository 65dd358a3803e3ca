import Atomics

/// Bytes in and out over all client connections, and QoS 0 messages dropped for readers whose
/// socket is backed up, for `$SYS` and metrics. Connections on every event loop add to them;
/// relaxed atomics, no lock.
final class TrafficCounters: Sendable {
    let bytesReceived = ManagedAtomic<Int>(0)
    let bytesSent = ManagedAtomic<Int>(0)
    let slowReaderDrops = ManagedAtomic<Int>(0)

    func received(_ count: Int) { bytesReceived.wrappingIncrement(by: count, ordering: .relaxed) }
    func sent(_ count: Int) { bytesSent.wrappingIncrement(by: count, ordering: .relaxed) }
    func droppedForSlowReader() { slowReaderDrops.wrappingIncrement(ordering: .relaxed) }
    var slowReaderDropped: Int { slowReaderDrops.load(ordering: .relaxed) }

    var totals: (received: Int, sent: Int) {
        (bytesReceived.load(ordering: .relaxed), bytesSent.load(ordering: .relaxed))
    }
}
