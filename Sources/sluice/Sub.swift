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
                connection in
                try await connection.subscribe(
                    topics.map { TopicSubscription(filter: $0, options: SubscriptionOptions(qos: qos)) }
                )
                var received = 0
                // Ends at -C messages, or with an error when the broker ends the connection.
                while true {
                    let publish = try await connection.nextMessage()
                    let payload = String(decoding: publish.payload.readableBytesView, as: UTF8.self)
                    print(verbose ? "\(publish.topic) \(payload)" : payload)
                    received += 1
                    if let count, received >= count {
                        try await connection.disconnect()
                        return
                    }
                }
            }
        }
    }
}
