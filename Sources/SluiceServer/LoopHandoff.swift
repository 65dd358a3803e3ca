import NIOConcurrencyHelpers
import NIOCore

/// Work for the broker loop from the connections of one event loop, handed over in one task per
/// turn of that loop: under a steady load one cross-loop wake-up carries the batches of every
/// connection read in the turn, instead of one wake-up per connection. Items run in the order
/// they were sent, so a connection's packets still reach the broker before its close.
/// Used only on its own loop (reached through `NIOLoopBound`).
final class LoopHandoff {
    private let loop: any EventLoop
    private let target: any EventLoop
    /// This loop is the broker's: items are already where they run.
    private let onTarget: Bool
    private var items: [@Sendable () -> Void] = []

    init(loop: any EventLoop, target: any EventLoop) {
        self.loop = loop
        self.target = target
        self.onTarget = loop === target
    }

    func send(_ item: @escaping @Sendable () -> Void) {
        items.append(item)
        // The first item of the turn schedules the hand-off; it runs after this turn's reads.
        if items.count == 1 { loop.assumeIsolated().execute { self.handOver() } }
    }

    private func handOver() {
        let batch = items
        items = []
        // Connections on the broker's own loop are already there, in a task of their own (not inside a
        // read): run the batch now instead of queueing a second task (issue 17, instructions per message).
        if onTarget {
            for item in batch { item() }
        } else {
            target.execute { for item in batch { item() } }
        }
    }
}

@available(*, unavailable)
extension LoopHandoff: Sendable {}

/// One `LoopHandoff` per event loop towards one broker loop; looked up when a connection is set up.
final class LoopHandoffs: Sendable {
    private let target: any EventLoop
    private let byLoop = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<LoopHandoff>]>([:])

    init(target: any EventLoop) { self.target = target }

    /// The hand-off of `loop`; call on `loop`.
    func handoff(on loop: any EventLoop) -> LoopHandoff {
        byLoop.withLockedValue { handoffs in
            if let existing = handoffs[ObjectIdentifier(loop)] { return existing.value }
            let created = LoopHandoff(loop: loop, target: target)
            handoffs[ObjectIdentifier(loop)] = NIOLoopBound(created, eventLoop: loop)
            return created
        }
    }
}
