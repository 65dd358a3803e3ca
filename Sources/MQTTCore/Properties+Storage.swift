extension Properties {
    /// The PUBLISH properties as MQTT 5 writes them (length + list): the compact, versioned-by-the-
    /// spec form the store keeps with queued and retained messages.
    public func storageBytes() -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: encodedSize(context: .publish))
        encode(into: &buffer, context: .publish)
        return Array(buffer.readableBytesView)
    }

    /// Reads what `storageBytes()` wrote; throws on damaged bytes (never traps).
    public init(storageBytes: [UInt8]) throws(MQTTError) {
        if storageBytes.isEmpty {
            self = .none
            return
        }
        var buffer = ByteBufferAllocator().buffer(capacity: storageBytes.count)
        buffer.writeBytes(storageBytes)
        self = try Properties.decode(from: &buffer, context: .publish)
        guard buffer.readableBytes == 0 else { throw .malformed("trailing bytes after stored properties") }
    }
}
