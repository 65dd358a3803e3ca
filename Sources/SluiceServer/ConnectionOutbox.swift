import MQTTCore
import NIOCore

/// What the broker sends network connections over one loop turn, encoded as it comes into one buffer
/// per connection and written at the turn's end: one write per connection and turn, and no packet
/// kept (or copied into a list) past its encoding. A connection finds its buffer by the slot it
/// holds, so no dictionary is looked up per packet.
struct ConnectionOutbox {
    private var pending: [(connection: MQTTConnectionHandler, bytes: ByteBuffer)] = []
    private static let allocator = ByteBufferAllocator()
    private static let noBytes = ByteBuffer()

    var isEmpty: Bool { pending.isEmpty }

    /// Encodes `packet` for `connection`; dropped when the connection is closing (nobody to send to).
    mutating func add(_ packet: Packet, for connection: MQTTConnectionHandler) {
        guard let version = connection.outgoingVersion else { return }
        if connection.outboxSlot == 0 {
            // Sized for this packet: usually the only one of the turn (a PUBACK, a PUBLISH).
            let capacity = MQTTCodec.encodedSize(packet, version: version)
            pending.append((connection, Self.allocator.buffer(capacity: capacity)))
            connection.outboxSlot = UInt32(pending.count)
        }
        MQTTCodec.encode(packet, version: version, into: &pending[Int(connection.outboxSlot) - 1].bytes)
    }

    /// The bytes queued for `connection`, which go before anything sent with its close.
    mutating func take(_ connection: MQTTConnectionHandler) -> ByteBuffer? {
        guard connection.outboxSlot > 0 else { return nil }
        let index = Int(connection.outboxSlot) - 1
        connection.outboxSlot = 0
        var bytes = Self.noBytes
        swap(&bytes, &pending[index].bytes)
        return bytes
    }

    /// Writes what was queued, one write per connection.
    mutating func flush() {
        for (connection, bytes) in pending {
            connection.outboxSlot = 0
            if bytes.readableBytes > 0 { connection.writeQueued(bytes) }
        }
        // A fan-out's list is not kept for the turns that follow it.
        pending.removeAll(keepingCapacity: pending.count <= 64)
    }
}
