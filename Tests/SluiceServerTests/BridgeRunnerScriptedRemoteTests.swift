import Foundation
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceBroker
import SluiceConfig
import SluiceStore
import Testing

@testable import SluiceServer

/// A remote broker that answers by script on a loopback port: CONNACK, SUBACK, PINGRESP, and PUBACK
/// for each QoS 1 PUBLISH until its connection's budget is spent, then it closes that socket without
/// acknowledging. It records every PUBLISH it read, with the connection it came on. The runner's real
/// channel glue (ClientBootstrap, decoder, inbound handler, reconnect) is what it talks to.
final class ScriptedRemote: Sendable {
    struct Received: Equatable {
        var connection: Int
        var topic: String
        var acknowledged: Bool
    }

    /// Per connection (1, 2, …): how many PUBLISHes it acknowledges before it closes; absent = all.
    let budgets: [Int: Int]
    let received = NIOLockedValueBox<[Received]>([])
    let connections = NIOLockedValueBox(0)
    private let server = NIOLockedValueBox<(any Channel)?>(nil)

    init(budgets: [Int: Int] = [:]) {
        self.budgets = budgets
    }

    func start(group: any EventLoopGroup) async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ScriptedRemoteHandler(remote: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        server.withLockedValue { $0 = channel }
        return channel.localAddress!.port!
    }

    func stop() async {
        try? await server.withLockedValue { $0 }?.close()
    }

    /// The topics read so far, in order.
    var topics: [String] { received.withLockedValue { $0.map(\.topic) } }
}

private final class ScriptedRemoteHandler: ChannelInboundHandler {
    typealias InboundIn = Packet
    typealias OutboundOut = ByteBuffer

    let remote: ScriptedRemote
    private var version = ProtocolVersion.v3_1_1
    private var connection = 0
    private var acknowledged = 0

    init(remote: ScriptedRemote) { self.remote = remote }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connect(let connect):
            version = connect.protocolVersion
            connection = remote.connections.withLockedValue {
                $0 += 1
                return $0
            }
            reply(.connAck(ConnAckPacket()), context: context)
        case .subscribe(let subscribe):
            let granted = subscribe.subscriptions.map { _ in ReasonCode.grantedQoS1 }
            reply(
                .subAck(SubAckPacket(packetIdentifier: subscribe.packetIdentifier, reasonCodes: granted)),
                context: context
            )
        case .publish(let publish):
            let withinBudget = remote.budgets[connection].map { acknowledged < $0 } ?? true
            remote.received.withLockedValue {
                $0.append(.init(connection: connection, topic: publish.topic, acknowledged: withinBudget))
            }
            guard withinBudget else { return context.close(promise: nil) }
            acknowledged += 1
            if let id = publish.packetIdentifier {
                reply(.pubAck(PubAckPacket(packetIdentifier: id)), context: context)
            }
        case .pingReq:
            reply(.pingResp, context: context)
        case .disconnect:
            context.close(promise: nil)
        default:
            break
        }
    }

    private func reply(_ packet: Packet, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 16)
        MQTTCodec.encode(packet, version: version, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}

/// One bridge runner on a real event loop and a real store in a temporary folder, bridged to a
/// scripted remote on loopback.
private struct RunnerUnderTest {
    let group: MultiThreadedEventLoopGroup
    let folder: URL
    let store: Store
    let runner: BridgeRunner
    let remote: ScriptedRemote

    init(remote: ScriptedRemote, messages: Int) async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.remote = remote
        let port = try await remote.start(group: group)
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-runner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // The store's events reach the runner's cache as in GatewayService.
        let storeChanges = StoreChangeSignal()
        store = try Store(
            path: folder.appendingPathComponent("store.lmdb").path,
            onEvent: { storeChanges.note($0) }
        )
        let text = """
            connection edge
            address 127.0.0.1:\(port)
            topic # out 1 "" central/
            notifications false
            restart_timeout 1
            """
        let config = try GatewayConfig.parse(text, fileName: "runner.conf").bridges[0]
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let loop = group.next()
        let host = BrokerHost(loop: loop, settings: BrokerSettings(), logger: quiet)
        runner = try BridgeRunner(
            config: config,
            loop: loop,
            store: store,
            host: host,
            logger: quiet,
            storeChanges: storeChanges
        )
        // Queued as the broker's durable path queues them: routed by a broker holding the runner's `out` rules.
        var broker = Broker()
        broker.setBridgeOutbound([runner.initialOutbound])
        let publisher = ConnectionID(1)
        let connect = ConnectPacket(
            protocolVersion: .v5,
            clientIdentifier: "pub",
            cleanStart: true,
            keepAlive: 60,
            will: nil,
            properties: .none
        )
        _ = broker.connect(publisher, connect, now: 0)
        for index in 0..<messages {
            let packet = PublishPacket(
                topic: "t/\(index)",
                payload: ByteBuffer(string: "m\(index)"),
                qos: .atLeastOnce,
                retain: false,
                packetIdentifier: UInt16(index % 60_000 + 1)
            )
            let actions = broker.receive(.publish(packet), from: publisher, now: 0)
            let routed = actions.lazy.compactMap { action -> (UInt64, Message, [DurableAppend])? in
                if case .persist(let token, let message, let appends) = action { return (token, message, appends) }
                return nil
            }.first
            let (token, message, appends) = try #require(routed)
            let append = try #require(appends.first)
            let queued = try #require(runner.queuedMessage(for: message, append: append))
            _ = try await store.append(queue: append.queue.queue, messages: [queued], limits: runner.limits)
            _ = broker.persisted(token: token, accepted: true, now: 0)
        }
    }

    /// Waits (bounded) until the queue is empty; returns its depth at the end.
    func waitForEmptyQueue(seconds: Int = 30) async throws -> UInt64 {
        var depth = try store.bridgeStats(bridge: "edge").depth
        for _ in 0..<(seconds * 20) where depth > 0 {
            try await Task.sleep(for: .milliseconds(50))
            depth = try store.bridgeStats(bridge: "edge").depth
        }
        return depth
    }

    func finish() async throws {
        try await runner.stop().get()
        await remote.stop()
        store.close()
        try await group.shutdownGracefully()
        try? FileManager.default.removeItem(at: folder)
    }
}

@Suite("Bridge runner against a scripted remote (loopback)")
struct BridgeRunnerScriptedRemoteTests {
    @Test func queuedMessagesReachTheRemoteOnceInOrderAndLeaveTheQueueOnPubAck() async throws {
        let remote = ScriptedRemote()
        let test = try await RunnerUnderTest(remote: remote, messages: 50)
        test.runner.start()
        let depth = try await test.waitForEmptyQueue()
        try await test.finish()
        #expect(depth == 0)
        #expect(remote.topics == (0..<50).map { "central/t/\($0)" })
        #expect(remote.connections.withLockedValue { $0 } == 1)
    }

    /// The remote acknowledges 10, then closes on the next PUBLISH: what it acknowledged is never sent
    /// again; the rest comes on the next connection (after `restart_timeout`), from the first
    /// unacknowledged one, in order.
    @Test func aDroppedConnectionResendsOnlyWhatWasNotAcknowledged() async throws {
        let remote = ScriptedRemote(budgets: [1: 10])
        let test = try await RunnerUnderTest(remote: remote, messages: 40)
        test.runner.start()
        let depth = try await test.waitForEmptyQueue()
        try await test.finish()
        #expect(depth == 0)
        let received = remote.received.withLockedValue { $0 }
        let acknowledged = received.filter(\.acknowledged).map(\.topic)
        #expect(acknowledged == (0..<40).map { "central/t/\($0)" }, "each acknowledged once, in order")
        #expect(received.filter { $0.connection == 1 && $0.acknowledged }.count == 10)
        // Duplicates: only what the first connection read and did not acknowledge (the rest of the burst
        // already in its socket), at most the 30 in flight.
        let unacknowledged = received.filter { $0.connection == 1 && !$0.acknowledged }.map(\.topic)
        #expect((1...30).contains(unacknowledged.count))
        let second = received.filter { $0.connection == 2 }.map(\.topic)
        #expect(second == (10..<40).map { "central/t/\($0)" })
        #expect(Set(unacknowledged).isSubset(of: Set(second)))
        #expect(remote.connections.withLockedValue { $0 } == 2)
    }

    /// The queued form keeps the payload buffer as received, and property bytes only when there is something
    /// to keep: none for a message without properties and without a rule TTL (nothing to encode on append
    /// or to parse on send), the TTL and the publisher's properties otherwise.
    @Test func queuedMessagesKeepThePayloadAndPropertiesOnlyWhenThereAreAny() async throws {
        let test = try await RunnerUnderTest(remote: ScriptedRemote(), messages: 0)
        var received = ByteBuffer(string: "header|payload|next")
        received.moveReaderIndex(forwardBy: 7)
        let payload = received.getSlice(at: received.readerIndex, length: 7)!
        let plain = Message(topic: "t", payload: payload, qos: .atLeastOnce)
        var withUser = plain
        withUser.properties.userProperties = [UserProperty("k", "v")]
        let append = { (ttl: UInt32?) in
            DurableAppend(
                bridge: 0,
                rule: 0,
                topic: "central/t",
                qos: .atLeastOnce,
                queue: DurableQueueClass(queue: "edge", ttl: ttl)
            )
        }
        let bare = test.runner.queuedMessage(for: plain, append: append(nil))
        let timed = test.runner.queuedMessage(for: plain, append: append(30))
        let user = test.runner.queuedMessage(for: withUser, append: append(nil))
        try await test.finish()
        #expect(bare?.payload == payload)
        #expect(bare?.properties == [])
        #expect(try Properties(storageBytes: try #require(timed?.properties)).messageExpiryInterval == 30)
        let userProperties = try Properties(storageBytes: try #require(user?.properties))
        #expect(userProperties.userProperties == [UserProperty("k", "v")])
        #expect(userProperties.messageExpiryInterval == nil)
    }
}
