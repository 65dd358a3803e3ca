import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket
import Testing

@testable import SluiceServer

extension WebSocketFramingState.Action: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.deliver(let a), .deliver(let b)), (.pong(let a), .pong(let b)): a == b
        case (.close(let a), .close(let b)): a == b
        case (.ignore, .ignore): true
        default: false
        }
    }
}

private let mask: WebSocketMaskingKey = [1, 2, 3, 4]

/// A client frame: masked like a browser's, unless `masked` is false.
private func frame(
    _ opcode: WebSocketOpcode,
    _ bytes: [UInt8] = [],
    fin: Bool = true,
    masked: Bool = true,
    rsv1: Bool = false
) -> WebSocketFrame {
    var data = ByteBuffer(bytes: bytes)
    if masked { data.webSocketMask(mask) }
    return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: masked ? mask : nil, data: data)
}

private func bytes(_ values: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: values) }

@Suite struct WebSocketFramingStateTests {
    @Test func binaryFramesDeliverTheirUnmaskedBytes() {
        var state = WebSocketFramingState()
        #expect(state.receive(frame(.binary, [0x10, 0x02])) == .deliver(bytes([0x10, 0x02])))
        #expect(state.receive(frame(.binary, [0xC0])) == .deliver(bytes([0xC0])))
        #expect(state.receive(frame(.binary)) == .ignore)
    }

    @Test func fragmentsAreDeliveredAsTheyComeWithControlFramesBetween() {
        var state = WebSocketFramingState()
        #expect(state.receive(frame(.binary, [1], fin: false)) == .deliver(bytes([1])))
        #expect(state.receive(frame(.ping, [9])) == .pong(bytes([9])))
        #expect(state.receive(frame(.continuation, [2], fin: false)) == .deliver(bytes([2])))
        #expect(state.receive(frame(.continuation, [3])) == .deliver(bytes([3])))
        #expect(state.receive(frame(.binary, [4])) == .deliver(bytes([4])))
    }

    @Test func continuationWithoutAMessageIsAProtocolError() {
        var state = WebSocketFramingState()
        #expect(state.receive(frame(.continuation, [1])) == .close(.protocolError))
        #expect(state.receive(frame(.binary, [1])) == .ignore)
        #expect(state.isClosed)
    }

    @Test func newMessageInsideAFragmentedOneIsAProtocolError() {
        var state = WebSocketFramingState()
        _ = state.receive(frame(.binary, [1], fin: false))
        #expect(state.receive(frame(.binary, [2])) == .close(.protocolError))
    }

    @Test func textFramesAreRefused() {
        var state = WebSocketFramingState()
        #expect(state.receive(frame(.text, [0x41])) == .close(.unacceptableData))
    }

    @Test func unmaskedFramesAndReservedBitsAreProtocolErrors() {
        var unmasked = WebSocketFramingState()
        #expect(unmasked.receive(frame(.binary, [1], masked: false)) == .close(.protocolError))
        var reserved = WebSocketFramingState()
        #expect(reserved.receive(frame(.binary, [1], rsv1: true)) == .close(.protocolError))
        var opcode = WebSocketFramingState()
        #expect(opcode.receive(frame(WebSocketOpcode(encodedWebSocketOpcode: 0x3)!)) == .close(.protocolError))
    }

    @Test func closeIsEchoed() {
        var withCode = WebSocketFramingState()
        #expect(withCode.receive(frame(.connectionClose, [0x03, 0xE9, 0x68, 0x69])) == .close(.goingAway))
        var empty = WebSocketFramingState()
        #expect(empty.receive(frame(.connectionClose)) == .close(nil))
        var oneByte = WebSocketFramingState()
        #expect(oneByte.receive(frame(.connectionClose, [0x03])) == .close(.protocolError))
        #expect(oneByte.receive(frame(.ping)) == .ignore)
    }

    @Test func pongsAreIgnored() {
        var state = WebSocketFramingState()
        #expect(state.receive(frame(.pong, [1])) == .ignore)
    }
}

@Suite struct WebSocketHandshakeTests {
    static func head(
        method: HTTPMethod = .GET,
        _ headers: [(String, String)] = [
            ("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Protocol", "mqtt"),
        ]
    ) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/mqtt", headers: HTTPHeaders(headers))
    }

    static func replacing(_ name: String, with value: String?) -> HTTPRequestHead {
        var request = head()
        request.headers.remove(name: name)
        if let value { request.headers.add(name: name, value: value) }
        return request
    }

    static func status(_ head: HTTPRequestHead) -> HTTPResponseStatus? {
        if case .failure(let rejection) = WebSocketHandshake.evaluate(head) { return rejection.status }
        return nil
    }

    @Test func acceptsMQTTAndMQTTv31InTheClientsOrder() throws {
        #expect(try WebSocketHandshake.evaluate(Self.head()).get() == "mqtt")
        let v31 = Self.replacing("Sec-WebSocket-Protocol", with: "mqttv3.1")
        #expect(try WebSocketHandshake.evaluate(v31).get() == "mqttv3.1")
        let listed = Self.replacing("Sec-WebSocket-Protocol", with: "chat, mqttv3.1, mqtt")
        #expect(try WebSocketHandshake.evaluate(listed).get() == "mqttv3.1")
    }

    @Test func refusesWhatIsNotAnMQTTWebSocketUpgrade() {
        #expect(Self.status(Self.replacing("Upgrade", with: nil)) == .upgradeRequired)
        #expect(Self.status(Self.replacing("Upgrade", with: "h2c")) == .upgradeRequired)
        #expect(Self.status(Self.head(method: .POST)) == .badRequest)
        #expect(Self.status(Self.replacing("Connection", with: "keep-alive")) == .badRequest)
        #expect(Self.status(Self.replacing("Sec-WebSocket-Key", with: nil)) == .badRequest)
        #expect(Self.status(Self.replacing("Sec-WebSocket-Protocol", with: nil)) == .badRequest)
        #expect(Self.status(Self.replacing("Sec-WebSocket-Protocol", with: "chat")) == .badRequest)
        var twoKeys = Self.head()
        twoKeys.headers.add(name: "Sec-WebSocket-Key", value: "AAAAAAAAAAAAAAAAAAAAAA==")
        #expect(Self.status(twoKeys) == .badRequest)
    }

    @Test func wrongVersionNamesTheSupportedOne() throws {
        let result = WebSocketHandshake.evaluate(Self.replacing("Sec-WebSocket-Version", with: "8"))
        guard case .failure(let rejection) = result else {
            Issue.record("accepted version 8")
            return
        }
        #expect(rejection.status == .upgradeRequired)
        #expect(rejection.headers.contains { $0 == ("Sec-WebSocket-Version", "13") })
    }
}

@Suite struct WebSocketMQTTFramingTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(WebSocketMQTTFraming())
        return channel
    }

    @Test func bytesInAndFramesOut() throws {
        let channel = try Self.channel()
        try channel.writeInbound(frame(.binary, [0x10, 0x00], fin: false))
        try channel.writeInbound(frame(.continuation, [0x04]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == bytes([0x10, 0x00]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == bytes([0x04]))
        try channel.writeOutbound(bytes([0x20, 0x02, 0x00, 0x00]))
        let out = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(out.opcode == .binary && out.fin && out.maskKey == nil)
        #expect(out.data == bytes([0x20, 0x02, 0x00, 0x00]))
    }

    @Test func pingIsAnsweredAndTheUpgradeStartsTheMQTTConnection() throws {
        let channel = try Self.channel()
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        var activated = false
        try channel.pipeline.syncOperations.addHandler(ActiveRecorder { activated = true })
        channel.pipeline.fireUserInboundEventTriggered(
            HTTPServerUpgradeEvents.upgradeComplete(toProtocol: "websocket", upgradeRequest: head)
        )
        #expect(activated)
        try channel.writeInbound(frame(.ping, [7, 7]))
        let pong = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(pong.opcode == .pong && pong.data == bytes([7, 7]))
    }

    @Test func textFrameIsClosedWith1003() throws {
        let channel = try Self.channel()
        try channel.writeInbound(frame(.text, [0x41]))
        let close = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        var data = close.data
        #expect(close.opcode == .connectionClose && data.readWebSocketErrorCode() == .unacceptableData)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(!channel.isActive)
    }

    @Test func mqttSideCloseSendsOneNormalCloseFrame() throws {
        let channel = try Self.channel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.close().wait()
        let close = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        var data = close.data
        #expect(close.opcode == .connectionClose && data.readWebSocketErrorCode() == .normalClosure)
        #expect(try channel.readOutbound(as: WebSocketFrame.self) == nil)
    }
}

/// Records channelActive, as MQTTConnectionHandler starts its connect timer there.
private final class ActiveRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onActive: () -> Void
    init(_ onActive: @escaping () -> Void) { self.onActive = onActive }
    func channelActive(context: ChannelHandlerContext) { onActive() }
}
