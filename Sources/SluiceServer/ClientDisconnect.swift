import NIOCore

extension BrokerHost {
    /// Shutdown's first half for clients: every client gets the server's DISCONNECT (MQTT 5: 0x8B)
    /// and its socket closes; returns once they have all closed, or after `limit` (a TLS peer that
    /// never answers close_notify does not hold the exit: the event loops' shutdown closes it), and
    /// once the last broker save has committed.
    func disconnectClients(within limit: TimeAmount) async {
        guard
            let (saved, closedOrLimit) = try? await loop.submit({
                let done = self.loop.makePromise(of: Void.self)
                let closes = self.clientChannels.map(\.closeFuture)
                // Whichever comes first completes `done`; NIO ignores the second completion.
                EventLoopFuture.andAllComplete(closes, on: self.loop).cascade(to: done)
                let deadline = self.loop.scheduleTask(in: limit) { done.succeed() }
                done.futureResult.whenComplete { _ in deadline.cancel() }
                return (self.shutdown(), done.futureResult)
            }).get()
        else { return }
        try? await closedOrLimit.get()
        try? await saved.get()
    }
}
