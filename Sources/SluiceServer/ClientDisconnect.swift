import NIOCore

extension BrokerHost {
    /// Shutdown's first half for clients: every client gets the server's DISCONNECT (MQTT 5: 0x8B)
    /// and its socket closes; returns once they have all closed, or after `limit` (a TLS peer that
    /// never answers close_notify does not hold the exit: the event loops' shutdown closes it), and
    /// once the last broker save has committed.
    func disconnectClients(within limit: Duration) async {
        guard
            let (saved, closed) = try? await loop.submit({
                let closed = EventLoopFuture.andAllComplete(self.clientChannels.map(\.closeFuture), on: self.loop)
                return (self.shutdown(), closed)
            }).get()
        else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await closed.get() }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
        try? await saved.get()
    }
}
