import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// A payload the codec decoded is a slice of the buffer its packet was read into (up to 64 KiB, shared
// with the other packets of that read). Whatever the broker keeps beyond that read — a queued message, a
// retained one, a will, what an offline session had in flight — must not keep the whole read buffer.

/// `text` sliced out of a 64 KiB read buffer, as the codec hands a payload over.
private func sliceOfBigRead(_ text: String) -> ByteBuffer {
    var read = ByteBufferAllocator().buffer(capacity: 65536)
    read.writeString(text)
    read.writeRepeatingByte(0, count: 65536 - read.readableBytes)
    return read.getSlice(at: 0, length: text.utf8.count)!
}

/// Whether `payload` holds `text` in storage of its own size, not in a read buffer's.
private func keptTightly(_ payload: ByteBuffer?, _ text: String) -> Bool {
    guard let payload else { return false }
    return String(buffer: payload) == text && payload.storageCapacity < 512
}

/// Where a buffer's bytes live: the same address means the same storage.
private func address(_ payload: ByteBuffer?) -> UnsafeRawPointer? {
    payload?.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
}

extension Harness {
    /// A QoS 1 PUBLISH from `id` whose payload is a slice of a big read.
    @discardableResult
    fileprivate func publishFromBigRead(_ id: UInt64, _ topic: String, _ text: String, retain: Bool = false) -> [Seen] {
        let packet = PublishPacket(
            topic: topic,
            payload: sliceOfBigRead(text),
            qos: .atLeastOnce,
            retain: retain,
            packetIdentifier: 1
        )
        return receive(.publish(packet), from: id)
    }

    /// A session that outlives its connection (an hour), subscribed at QoS 1 to `filter`.
    fileprivate func persistentSubscriber(_ id: UInt64, _ clientID: String, _ filter: String) {
        var properties = Properties()
        properties.sessionExpiryInterval = 3600
        connect(id, clientID, clean: false, properties: properties)
        subscribe(id, filter)
    }
}

@Suite struct KeptPayloadTests {
    @Test func compactedCopiesOnlyASliceOfABiggerBuffer() {
        let slice = sliceOfBigRead("hello")
        #expect(slice.storageCapacity == 65536)
        #expect(keptTightly(slice.compacted(), "hello"))
        let own = ByteBuffer(string: "hello")
        #expect(address(own.compacted()) == address(own))
        // A copy is tight by the same rule: never copied again.
        let copy = slice.compacted()
        #expect(address(copy.compacted()) == address(copy))
    }

    @Test func anOfflineSessionsQueueKeepsNoReadBuffer() {
        let h = Harness()
        h.persistentSubscriber(1, "sub", "t/#")
        h.closed(1)
        h.connect(2, "pub")
        h.publishFromBigRead(2, "t/1", "queued while away")
        let queued = h.broker.sessions["sub"]?.outbound.queue.first?.message.payload
        #expect(keptTightly(queued, "queued while away"))
    }

    @Test func sessionsThatQueueOneMessageShareOneCopy() {
        let h = Harness()
        h.persistentSubscriber(1, "a", "t/#")
        h.persistentSubscriber(2, "b", "t/#")
        h.closed(1)
        h.closed(2)
        h.connect(3, "pub")
        h.publishFromBigRead(3, "t/1", "for both")
        let a = h.broker.sessions["a"]?.outbound.queue.first?.message.payload
        let b = h.broker.sessions["b"]?.outbound.queue.first?.message.payload
        #expect(keptTightly(a, "for both") && keptTightly(b, "for both"))
        #expect(address(a) == address(b))
    }

    @Test func inFlightIsNotCopiedWhileOnlineButIsOnceTheClientLeaves() {
        let h = Harness { $0.maxInflightMessages = 1 }
        h.persistentSubscriber(1, "sub", "t/#")
        h.connect(2, "pub")
        h.publishFromBigRead(2, "t/1", "in flight")
        h.publishFromBigRead(2, "t/2", "beyond the window")
        let window = { h.broker.sessions["sub"]?.outbound }
        // Sent at once: the hot path copies nothing, the slice waits one round trip.
        #expect(window()?.inflight.first?.delivery.message.payload.storageCapacity == 65536)
        #expect(keptTightly(window()?.queue.first?.message.payload, "beyond the window"))
        h.closed(1)
        #expect(keptTightly(window()?.inflight.first?.delivery.message.payload, "in flight"))
    }

    @Test func aRetainedMessageKeepsNoReadBuffer() {
        let h = Harness()
        h.connect(1, "pub")
        h.publishFromBigRead(1, "status/a", "online", retain: true)
        #expect(keptTightly(h.broker.retained["status/a"]?.payload, "online"))
    }

    @Test func aWillKeepsNoReadBuffer() {
        let h = Harness()
        var properties = Properties()
        properties.willDelayInterval = 60
        let will = Will(
            topic: "wills/a",
            payload: sliceOfBigRead("gone"),
            qos: .atLeastOnce,
            retain: false,
            properties: properties
        )
        var sessionProperties = Properties()
        sessionProperties.sessionExpiryInterval = 3600
        h.connect(1, "a", will: will, properties: sessionProperties)
        h.closed(1)
        #expect(keptTightly(h.broker.sessions["a"]?.delayedWill?.message.payload, "gone"))
    }
}
