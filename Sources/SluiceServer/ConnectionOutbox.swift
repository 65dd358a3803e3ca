import MQTTCore
import NIOCore

/// What the broker sends network connections over one loop turn, encoded as it comes into one buffer
/// per connection and written at the turn's end: one write per connection and turn, and no packet
/// kept (or copied into a list) past its encoding. A connection finds its buffer by the slot it
/// holds, so no dictionary is looked up per packet.
struct ConnectionOutbox {
    /// Each connection's bytes for the turn, in the order the connections got their first packet.
    typealias Batch = [(connection: MQTTConnectionHandler, bytes: ByteBuffer)]

    private var pending: Batch = []
    /// The list of a batch written earlier, emptied: the room the next `takeAll` starts a turn in.
    private var spare: Batch = []
    /// Buffers of written batches, emptied: a turn's buffers are not allocated and freed anew per
    /// connection. A few small ones only, for an idle gateway's memory.
    private var spareBuffers: [ByteBuffer] = []
    private static let spareBufferCount = 16
    private static let spareBufferCapacity = 4096
    private static let allocator = ByteBufferAllocator()
    private static let noBytes = ByteBuffer()

    var isEmpty: Bool { pending.isEmpty }

    /// Encodes `packet` for `connection`; dropped when the connection is closing (nobody to send to).
    mutating func add(_ packet: Packet, for connection: MQTTConnectionHandler) {
        guard let version = connection.outgoingVersion else { return }
        if connection.outboxSlot == 0 {
            // A buffer written in an earlier turn (it grows if this turn needs more), or one sized for
            // this packet: usually the only one of the turn (a PUBACK, a PUBLISH).
            let bytes =
                spareBuffers.popLast()
                ?? Self.allocator.buffer(capacity: MQTTCodec.encodedSize(packet, version: version))
            pending.append((connection, bytes))
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

    /// Hands over what was queued, one buffer per connection, and starts the next turn empty. The
    /// caller writes it outside the outbox because a write can run the broker again (a failed write
    /// reads what the peer sent last and hands it on at once): what that run sends joins the next turn.
    mutating func takeAll() -> Batch {
        for entry in pending { entry.connection.outboxSlot = 0 }
        var taken = spare
        swap(&taken, &pending)
        spare = []
        return taken
    }

    /// Takes a written batch back, so its room serves a later turn (a fan-out's large list is let go),
    /// and keeps a few of its buffers, emptied, for the next turn's connections.
    mutating func recycle(_ written: inout Batch) {
        guard written.count <= 64 else { return }
        // Popped, not `removeAll(keepingCapacity:)`: its generic range replacement costs more than the
        // one or two entries of a turn.
        while var entry = written.popLast() {
            guard spareBuffers.count < Self.spareBufferCount, entry.bytes.capacity <= Self.spareBufferCapacity else {
                continue
            }
            // Written, NIO has let it go and clearing keeps its memory (else clearing allocates afresh);
            // in place, as a copy would share it.
            entry.bytes.clear()
            spareBuffers.append(entry.bytes)
        }
        swap(&spare, &written)
    }
}
