import MQTTCore
import Testing

@testable import SluiceBroker

// Mosquitto keys honoured in the broker core: allow_zero_length_clientid, auto_id_prefix, max_qos.

@Suite struct MosquittoSettingsTests {
    @Test func zeroLengthClientIDRefusedWhenNotAllowed() {
        let h = Harness { $0.allowZeroLengthClientID = false }
        let v5 = h.connect(1, "")
        #expect(v5.packets(to: 1) == [.connAck(ConnAckPacket(reasonCode: .clientIdentifierNotValid))])
        #expect(v5.closes(1) != nil)
        let v311 = h.connect(2, "", version: .v3_1_1, clean: true)
        #expect(v311.packets(to: 2) == [.connAck(ConnAckPacket(reasonCode: .clientIdentifierNotValid))])
        guard case .connAck(let named)? = h.connect(3, "named").packets(to: 3).first else {
            return #expect(Bool(false))
        }
        #expect(named.reasonCode == .success)
    }

    @Test func assignedIDsCarryThePrefix() {
        let h = Harness { $0.autoIDPrefix = "gw7-" }
        guard case .connAck(let ack)? = h.connect(1, "").packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.properties.assignedClientIdentifier?.hasPrefix("gw7-") == true)
        guard case .connAck(let other)? = h.connect(2, "").packets(to: 2).first else { return #expect(Bool(false)) }
        #expect(other.properties.assignedClientIdentifier != ack.properties.assignedClientIdentifier)
        // Not the ids of an earlier run: its persistent sessions may be restored from disk.
        guard case .connAck(let nextRun)? = Harness({ $0.autoIDPrefix = "gw7-" }).connect(1, "").packets(to: 1).first
        else { return #expect(Bool(false)) }
        #expect(nextRun.properties.assignedClientIdentifier != ack.properties.assignedClientIdentifier)
        // Mosquitto's default prefix.
        guard case .connAck(let plain)? = Harness().connect(1, "").packets(to: 1).first else {
            return #expect(Bool(false))
        }
        #expect(plain.properties.assignedClientIdentifier?.hasPrefix("auto-") == true)
    }

    @Test func maxQoSIsAnnouncedAndSubscriptionsAreGrantedAtIt() {
        let h = Harness { $0.maxQoS = 1 }
        guard case .connAck(let ack)? = h.connect(1, "a").packets(to: 1).first else { return #expect(Bool(false)) }
        #expect(ack.properties.maximumQoS == 1)
        let subAck = h.subscribe(1, "t/#", qos: .exactlyOnce).packets(to: 1)
        #expect(subAck == [.subAck(SubAckPacket(packetIdentifier: 1, reasonCodes: [ReasonCode(rawValue: 1)]))])
        // Delivered at the granted QoS.
        h.connect(2, "b")
        let seen = h.publish(2, "t/x", "one", qos: .atLeastOnce)
        #expect(seen.publishes(to: 1).map(\.qos) == [.atLeastOnce])
        // The default announces nothing (2 is the protocol's own maximum).
        guard case .connAck(let plain)? = Harness().connect(1, "a").packets(to: 1).first else {
            return #expect(Bool(false))
        }
        #expect(plain.properties.maximumQoS == nil)
    }

    @Test func publishAboveMaxQoSDisconnects() {
        let h = Harness { $0.maxQoS = 1 }
        h.connect(1, "a")
        let seen = h.publish(1, "t", "x", qos: .exactlyOnce)
        #expect(
            seen.closes(1)
                == .some(
                    DisconnectPacket(
                        reasonCode: .qosNotSupported,
                        properties: {
                            var p = Properties()
                            p.reasonString = "QoS 2 above max_qos"
                            return p
                        }()
                    )
                )
        )
        h.connect(2, "old", version: .v3_1_1)
        #expect(h.publish(2, "t", "x", qos: .exactlyOnce).closes(2) == .some(nil))
    }

    @Test func willAboveMaxQoSIsRefused() {
        let h = Harness { $0.maxQoS = 0 }
        let will = Will(topic: "w", payload: ByteBuffer(string: "gone"), qos: .atLeastOnce, retain: false)
        let seen = h.connect(1, "a", will: will)
        #expect(seen.packets(to: 1) == [.connAck(ConnAckPacket(reasonCode: .qosNotSupported))])
    }
}
