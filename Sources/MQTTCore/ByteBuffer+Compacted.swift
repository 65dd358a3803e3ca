import NIOCore

extension ByteBuffer {
    /// Itself when it owns its storage tightly, else a copy of its readable bytes that does.
    ///
    /// A payload the codec decoded is a slice of the buffer its packet was read into (up to 64 KiB,
    /// shared with every other packet of that read): sent at once, the slice dies with the write, but a
    /// slice kept for later (a queued, retained or will message, a cached record) would keep that whole
    /// read buffer alive. Whoever keeps a payload beyond the read it came in calls this once, where it
    /// keeps it. A copy's storage is at most twice its bytes (NIO rounds up to a power of two), so a
    /// copy is never copied again.
    public func compacted() -> ByteBuffer {
        guard storageCapacity > readableBytes * 2 + 256 else { return self }
        return ByteBuffer(bytes: readableBytesView)
    }
}
