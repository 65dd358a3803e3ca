import ArgumentParser
import MQTTCore
import SluiceServer

struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish messages (like mosquitto_pub).",
        helpNames: [.long]
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .customShort("t"), help: "Topic to publish to.")
    var topic: String

    @Option(name: .customShort("m"), help: "Message payload.")
    var message: String?

    @Flag(name: .customShort("l"), help: "Send one message per line read from stdin.")
    var lines = false

    @Flag(name: .customShort("n"), help: "Send a zero-length message.")
    var nullMessage = false

    @Flag(name: .customShort("r"), help: "Set the retain flag.")
    var retain = false

    @Option(name: .customLong("repeat"), help: "Send the message this many times.")
    var count = 1

    func validate() throws {
        let sources = [message != nil, lines, nullMessage].filter { $0 }.count
        guard sources == 1 else { throw failure("give exactly one of -m MESSAGE, -l or -n") }
        guard count >= 1 else { throw failure("--repeat must be at least 1") }
        do {
            try Topic.validateName(topic)
        } catch {
            // The broker would close the connection; a QoS 0 publisher would never hear why.
            throw failure("cannot publish to '\(topic)': \(error.message) (a topic name has no + or # wildcards)")
        }
    }

    func run() async throws {
        let qos = try client.qualityOfService()
        let connect = try client.connectPacket(prefix: "sluice-pub")
        try await client.reportingFailures {
            try await MQTTClient.withConnection(host: client.host, port: client.port, connect: connect) {
                connection in
                // One message at a time, each waiting for its acknowledgement: simple and ordered.
                func send(_ payload: [UInt8]) async throws {
                    try await connection.publish(
                        PublishPacket(topic: topic, payload: ByteBuffer(bytes: payload), qos: qos, retain: retain)
                    )
                }
                if lines {
                    while let line = readLine() { try await send(Array(line.utf8)) }
                } else {
                    let payload = nullMessage ? [] : Array((message ?? "").utf8)
                    for _ in 0..<count { try await send(payload) }
                }
                try await connection.disconnect()
            }
        }
    }
}
