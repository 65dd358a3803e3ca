import NIOCore
import NIOHTTP1
import NIOWebSocket

// Note on MQTT over WebSocket (MQTT 5.0 §6, MQTT 3.1.1 §6, RFC 6455).
// MQTT is a byte stream: WebSocket frame boundaries carry no meaning. A frame may hold part of a
// packet or several packets [MQTT-6.0.0-2], so binary and continuation payloads are handed to
// `MQTTConnectionHandler` as plain bytes and its own framing does the rest. Only binary data
// frames are allowed: any other data frame closes the connection [MQTT-6.0.0-1]. Client frames
// must be masked [RFC 6455 5.1]; reserved bits need a negotiated extension and none is offered
// [RFC 6455 5.2]. Control frames (ping, pong, close) may arrive between the fragments of a message
// [RFC 6455 5.4]; their size and fin bit are already checked by NIO's `WebSocketFrameDecoder`.

/// The receiving side of an MQTT-over-WebSocket connection as a pure state machine: one frame in,
/// one action out.
struct WebSocketFramingState {
    enum Action {
        /// MQTT bytes for the connection handler (never empty).
        case deliver(ByteBuffer)
        /// Answer a ping with a pong carrying the same application data [RFC 6455 5.5.2].
        case pong(ByteBuffer)
        /// Send a close frame with this code (nil: no code, for a close that carried none), then
        /// close the connection.
        case close(WebSocketErrorCode?)
        /// Nothing to do.
        case ignore
    }

    private enum State {
        /// Between messages.
        case idle
        /// A binary message arrived without its final fragment; continuations belong to it.
        case inBinaryMessage
        /// A close frame was sent; nothing more is read [RFC 6455 5.5.1].
        case closed
    }

    private var state: State = .idle

    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// The connection is closing for a reason outside the frames (our own close, an error).
    mutating func markClosed() {
        state = .closed
    }

    mutating func receive(_ frame: WebSocketFrame) -> Action {
        if case .closed = state { return .ignore }
        guard frame.reservedBits.isEmpty, frame.maskKey != nil else { return fail(.protocolError) }
        switch frame.opcode {
        case .binary:
            guard case .idle = state else { return fail(.protocolError) }
            state = frame.fin ? .idle : .inBinaryMessage
            return deliver(frame)
        case .continuation:
            guard case .inBinaryMessage = state else { return fail(.protocolError) }
            if frame.fin { state = .idle }
            return deliver(frame)
        case .text:
            return fail(.unacceptableData)
        case .ping:
            return .pong(frame.unmaskedData)
        case .pong:
            return .ignore
        case .connectionClose:
            var body = frame.unmaskedData
            switch body.readableBytes {
            case 0: return fail(nil)
            case 1: return fail(.protocolError)
            default:
                // Echo the peer's status code [RFC 6455 5.5.1].
                return fail(body.readWebSocketErrorCode())
            }
        default:
            // Reserved opcodes 0x3-0x7 and 0xB-0xF [RFC 6455 5.2].
            return fail(.protocolError)
        }
    }

    private func deliver(_ frame: WebSocketFrame) -> Action {
        frame.length == 0 ? .ignore : .deliver(frame.unmaskedData)
    }

    private mutating func fail(_ code: WebSocketErrorCode?) -> Action {
        state = .closed
        return .close(code)
    }
}

/// Sits between NIO's WebSocket frame codec and `MQTTConnectionHandler`: binary frames in become
/// MQTT bytes, MQTT bytes out become one binary frame per write. Answers pings and closes.
final class WebSocketMQTTFraming: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    private var framing = WebSocketFramingState()

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The MQTT connection starts when the WebSocket session opens, not when TCP connected:
        // this also starts the handler's connect timeout.
        if case HTTPServerUpgradeEvents.upgradeComplete = event {
            context.fireChannelActive()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch framing.receive(unwrapInboundIn(data)) {
        case .deliver(let bytes):
            context.fireChannelRead(wrapInboundOut(bytes))
        case .pong(let payload):
            // A peer that pings but does not read must not make pongs pile up; answering only some
            // pings is allowed [RFC 6455 5.5.3].
            guard context.channel.isWritable else { return }
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)),
                promise: nil
            )
        case .close(let code):
            sendCloseAndClose(context: context, code: code)
        case .ignore:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = WebSocketFrame(fin: true, opcode: .binary, data: unwrapOutboundIn(data))
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // The MQTT side closes (DISCONNECT, protocol error, takeover): say so in WebSocket terms first.
        guard mode == .all, !framing.isClosed else {
            context.close(mode: mode, promise: promise)
            return
        }
        framing.markClosed()
        var body = context.channel.allocator.buffer(capacity: 2)
        body.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body)),
            promise: nil
        )
        context.close(mode: mode, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's WebSocketProtocolErrorHandler has already sent a close frame for decoding errors.
        if error is NIOWebSocketError { framing.markClosed() }
        context.fireErrorCaught(error)
    }

    private func sendCloseAndClose(context: ChannelHandlerContext, code: WebSocketErrorCode?) {
        var body = context.channel.allocator.buffer(capacity: 2)
        if let code { body.write(webSocketErrorCode: code) }
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: body)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension WebSocketMQTTFraming: Sendable {}
