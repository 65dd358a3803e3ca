import ArgumentParser
import MQTTCore
import SluiceServer

struct Sub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe and print messages (like mosquitto_sub).",
        helpNames: [.long]
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .customShort("t"), help: "Topic filter to subscribe to (repeatable).")
    var topics: [String]

    @Option(name: .customShort("C"), help: "Exit after this many messages.")
    var count: Int?

    @Flag(name: .customShort("c"), help: "Persistent session (clean session off; MQTT 5: session never expires).")
    var persistent = false

    @Flag(name: .customShort("v"), help: "Print the topic before each payload.")
    var verbose = false

    func validate() throws {
        guard !topics.isEmpty else { throw failure("give at least one -t TOPIC") }
        if persistent && client.id == nil { throw failure("-c needs a client id (-i ID)") }
    }

    func run() async throws {
        let qos = try client.qualityOfService()
        let connect = try client.connectPacket(
            prefix: "sluice-sub",
            cleanStart: !persistent,
            sessionExpiry: persistent ? UInt32.max : nil
        )
        try await client.reportingFailures {
            try await MQTTClient.withConnection(host: client.host, port: client.port, connect: connect) {
                _,
                inbound,
                outbound in
                let subscriptions = topics.map { TopicSubscription(filter: $0, options: SubscriptionOptions(qos: qos)) }
                try await outbound.write(.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: subscriptions)))
                var received = 0
                while let packet = try await inbound.next() {
                    switch packet {
                    case .subAck(let ack):
                        if let index = ack.reasonCodes.firstIndex(where: \.isFailure) {
                            let filter = index < topics.count ? topics[index] : topics.joined(separator: " ")
                            throw MQTTClient.ClientError.subscribeRefused(filter: filter, ack.reasonCodes[index])
                        }
                    case .publish(let publish):
                        let payload = String(decoding: publish.payload.readableBytesView, as: UTF8.self)
                        print(verbose ? "\(publish.topic) \(payload)" : payload)
                        if let id = publish.packetIdentifier {
                            let ack = PubAckPacket(packetIdentifier: id)
                            try await outbound.write(publish.qos == .atLeastOnce ? .pubAck(ack) : .pubRec(ack))
                        }
                        received += 1
                        if let count, received >= count {
                            try await outbound.write(.disconnect(DisconnectPacket()))
                            return
                        }
                    case .pubRel(let rel):
                        try await outbound.write(.pubComp(PubAckPacket(packetIdentifier: rel.packetIdentifier)))
                    case .disconnect(let disconnect):
                        throw MQTTClient.ClientError.disconnected(disconnect.reasonCode)
                    default:
                        continue
                    }
                }
                throw MQTTClient.ClientError.closed  // the broker ended the connection before -C was reached
            }
        }
    }
}
