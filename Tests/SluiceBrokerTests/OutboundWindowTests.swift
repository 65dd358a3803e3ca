import MQTTCore
import NIOCore
import Testing

@testable import SluiceBroker

// The outbound flow's rules alone: the in-flight window (Receive Maximum, max_inflight_messages,
// max_inflight_bytes) and the queue bounds (max_queued_messages, max_queued_bytes).

private func delivery(bytes: Int) -> Delivery {
    Delivery(
        message: Message(topic: "t", payload: ByteBuffer(repeating: 0x61, count: bytes), qos: .atLeastOnce),
        qos: .atLeastOnce,
        retain: false,
        subscriptionIdentifiers: []
    )
}

/// A session with messages of these payload sizes in flight and these queued.
private func session(inflight: [Int] = [], queued: [Int] = []) -> Session {
    var session = Session(clientID: "c", protocolVersion: .v5, expiryInterval: 0)
    for bytes in inflight {
        let packetID = session.nextPacketID()
        session.inflight.append(Outgoing(packetID: packetID, delivery: delivery(bytes: bytes), state: .awaitingPubAck))
    }
    for bytes in queued {
        session.queue.append(delivery(bytes: bytes))
        session.queuedBytes += bytes
    }
    return session
}

private func settings(_ configure: (inout BrokerSettings) -> Void) -> BrokerSettings {
    var settings = BrokerSettings()
    configure(&settings)
    return settings
}

@Suite struct OutboundWindowTests {
    @Test func theWindowIsTheClientsReceiveMaximumWithinOurs() {
        let ours = settings { $0.maxInflightMessages = 20 }
        #expect(OutboundWindow.size(clientReceiveMaximum: 5, settings: ours) == 5)
        #expect(OutboundWindow.size(clientReceiveMaximum: 100, settings: ours) == 20)
        #expect(OutboundWindow.size(clientReceiveMaximum: nil, settings: ours) == 20)
        // max_inflight_messages 0 is no bound of ours: the protocol's 65,535.
        let unbounded = settings { $0.maxInflightMessages = 0 }
        #expect(OutboundWindow.size(clientReceiveMaximum: nil, settings: unbounded) == 65535)
        #expect(OutboundWindow.size(clientReceiveMaximum: 7, settings: unbounded) == 7)
    }

    @Test func aFullCountWindowHasNoRoom() {
        let plain = BrokerSettings()
        #expect(OutboundWindow.hasRoomInFlight(session(inflight: [1]), window: 2, settings: plain))
        #expect(!OutboundWindow.hasRoomInFlight(session(inflight: [1, 1]), window: 2, settings: plain))
        #expect(OutboundWindow.hasRoomInFlight(session(), window: 1, settings: plain))
    }

    @Test func inflightBytesAdmitOneMoreWhileBelowTheBound() {
        let bounded = settings { $0.maxInflightBytes = 10 }
        #expect(OutboundWindow.hasRoomInFlight(session(inflight: [9]), window: 20, settings: bounded))
        #expect(!OutboundWindow.hasRoomInFlight(session(inflight: [10]), window: 20, settings: bounded))
        #expect(!OutboundWindow.hasRoomInFlight(session(inflight: [4, 6]), window: 20, settings: bounded))
        // A message larger than the bound still goes, alone.
        #expect(OutboundWindow.hasRoomInFlight(session(), window: 20, settings: bounded))
        // 0 is no bound.
        let unbounded = settings { $0.maxInflightBytes = 0 }
        #expect(OutboundWindow.hasRoomInFlight(session(inflight: [1_000_000]), window: 20, settings: unbounded))
    }

    @Test func theQueueTakesMessagesUpToItsCount() {
        let bounded = settings {
            $0.maxQueuedMessages = 2
            $0.maxQueuedBytes = 0
        }
        #expect(OutboundWindow.queueAccepts(session(queued: [1]), size: 1_000_000, settings: bounded))
        #expect(!OutboundWindow.queueAccepts(session(queued: [1, 1]), size: 1, settings: bounded))
        let unbounded = settings { $0.maxQueuedMessages = 0 }
        let long = session(queued: Array(repeating: 1, count: 5000))
        #expect(OutboundWindow.queueAccepts(long, size: 1, settings: unbounded))
    }

    @Test func theQueueTakesMessagesUpToItsBytesIncludingTheNewOne() {
        let bounded = settings {
            $0.maxQueuedMessages = 0
            $0.maxQueuedBytes = 10
        }
        #expect(OutboundWindow.queueAccepts(session(queued: [4]), size: 6, settings: bounded))
        #expect(!OutboundWindow.queueAccepts(session(queued: [4]), size: 7, settings: bounded))
        #expect(!OutboundWindow.queueAccepts(session(), size: 11, settings: bounded))
        #expect(OutboundWindow.queueAccepts(session(), size: 10, settings: bounded))
    }

    @Test func eitherQueueBoundRefuses() {
        let both = settings {
            $0.maxQueuedMessages = 1
            $0.maxQueuedBytes = 100
        }
        #expect(!OutboundWindow.queueAccepts(session(queued: [1]), size: 1, settings: both))
        #expect(!OutboundWindow.queueAccepts(session(), size: 101, settings: both))
        #expect(OutboundWindow.queueAccepts(session(), size: 100, settings: both))
    }
}
