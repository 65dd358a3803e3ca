import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOWebSocket

/// The opening handshake's rules for an MQTT-over-WebSocket listener, apart from I/O.
enum WebSocketHandshake {
    /// Subprotocols accepted, as Mosquitto does: `mqtt` (MQTT 3.1.1 and 5 [MQTT-6.0.0-3]) and
    /// `mqttv3.1` (older MQTT 3.1 clients).
    static let subprotocols = ["mqtt", "mqttv3.1"]

    /// Why a request does not open a WebSocket, as the HTTP answer it gets.
    struct Rejection: Error {
        var status: HTTPResponseStatus
        /// One line for the response body and the log.
        var reason: String
        var headers: [(String, String)] = []
    }

    /// The subprotocol to answer with, or why the request is refused [RFC 6455 4.2.1].
    static func evaluate(_ head: HTTPRequestHead) -> Result<String, Rejection> {
        let headers = head.headers
        guard tokens(headers, "Upgrade").contains("websocket") else {
            return .failure(
                Rejection(
                    status: .upgradeRequired,
                    reason: "this port speaks MQTT over WebSocket only",
                    headers: [("Upgrade", "websocket")]
                )
            )
        }
        guard head.method == .GET else {
            return .failure(Rejection(status: .badRequest, reason: "a WebSocket upgrade must be a GET request"))
        }
        guard tokens(headers, "Connection").contains("upgrade") else {
            return .failure(Rejection(status: .badRequest, reason: "Connection: Upgrade is missing"))
        }
        guard headers[canonicalForm: "Sec-WebSocket-Version"].map(String.init) == ["13"] else {
            return .failure(
                Rejection(
                    status: .upgradeRequired,
                    reason: "unsupported WebSocket version",
                    headers: [("Sec-WebSocket-Version", "13")]
                )
            )
        }
        let keys = headers[canonicalForm: "Sec-WebSocket-Key"]
        guard keys.count == 1, let key = keys.first, !key.isEmpty else {
            return .failure(Rejection(status: .badRequest, reason: "one Sec-WebSocket-Key is required"))
        }
        let offered = headers[canonicalForm: "Sec-WebSocket-Protocol"].map { String($0) }
        guard let chosen = offered.first(where: { subprotocols.contains($0) }) else {
            return .failure(
                Rejection(
                    status: .badRequest,
                    reason: "Sec-WebSocket-Protocol must offer \(subprotocols.joined(separator: " or "))"
                )
            )
        }
        return .success(chosen)
    }

    /// A header's comma-separated tokens, lowercased (for the case-insensitive Upgrade and Connection).
    private static func tokens(_ headers: HTTPHeaders, _ name: String) -> [String] {
        headers[canonicalForm: name].map { $0.lowercased() }
    }
}

/// Holds a WebSocket listener's connection until the upgrade completes: answers requests that do
/// not upgrade with an HTTP error and closes, and closes a socket that has not completed the
/// upgrade within the connect timeout (half-open sockets). Leaves the pipeline on upgrade.
final class WebSocketUpgradeGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private let logger: Logger
    private var timer: Scheduled<Void>?
    private var rejection: WebSocketHandshake.Rejection?
    private var answered = false

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) { [logger] in
            let context = loopBoundContext.value
            logger.info(
                "closing WebSocket connection that did not complete the upgrade",
                metadata: ["remote": "\(context.peerLogText)", "log_type": "websockets"]
            )
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case HTTPServerUpgradeEvents.upgradeComplete = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        context.fireUserInboundEventTriggered(event)
        // Bytes that followed the upgrade request are released when the upgrade handler leaves,
        // after this event: the gate must be gone by then so they reach the frame decoder.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Only requests that did not upgrade get here.
        switch unwrapInboundIn(data) {
        case .head(let head):
            if case .failure(let refused) = WebSocketHandshake.evaluate(head) {
                rejection = refused
            } else {
                rejection = .init(status: .badRequest, reason: "bad WebSocket upgrade request")
            }
        case .body:
            break
        case .end:
            guard !answered, let rejection else { return }
            answered = true
            respond(rejection, context: context)
        }
    }

    private func respond(_ rejection: WebSocketHandshake.Rejection, context: ChannelHandlerContext) {
        logger.info(
            "refused WebSocket upgrade",
            metadata: [
                "remote": "\(context.peerLogText)",
                "status": "\(rejection.status.code)", "reason": "\(rejection.reason)", "log_type": "websockets",
            ]
        )
        let body = context.channel.allocator.buffer(string: rejection.reason + "\n")
        var headers = HTTPHeaders(rejection.headers)
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: rejection.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let remote = context.peerLogText
        switch error {
        case is NIOWebSocketUpgradeError:
            // The upgrader refused; the request follows and gets its answer in `channelRead`.
            return
        case is HTTPParserError:
            // Not HTTP at all (often an MQTT client pointed at the WebSocket port): 400, then close.
            if !answered {
                answered = true
                respond(
                    .init(status: .badRequest, reason: "malformed HTTP request: this port speaks MQTT over WebSocket"),
                    context: context
                )
            }
            return
        default:
            let alert = (try? context.pipeline.syncOperations.handler(type: TLSAlertRecorder.self))?.alert
            if !TLSFailure.log(error, remote: remote, alert: alert, to: logger) {
                logger.debug(
                    "WebSocket connection error",
                    metadata: [
                        "remote": "\(remote)", "error": "\(NetworkErrorText.describe(error))", "log_type": "websockets",
                    ]
                )
            }
        }
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension WebSocketUpgradeGate: Sendable {}

/// The pipeline of a `protocol websockets` listener: [TLS] → HTTP/1 with the WebSocket upgrader →
/// (after the upgrade) frame codec → `WebSocketMQTTFraming` → `MQTTConnectionHandler`.
enum WebSocketListener {
    static func configure(
        _ channel: any Channel,
        tls: ListenerTLS?,
        maximumPacketSize: Int,
        connectTimeout: TimeAmount,
        logger: Logger,
        makeMQTTHandler: @escaping @Sendable () -> MQTTConnectionHandler
    ) throws {
        let upgrader = NIOWebSocketServerUpgrader(
            // A frame is buffered whole before it is decoded, so it is bounded like one MQTT packet
            // (plus its 5-byte fixed header); larger frames are closed with 1009.
            maxFrameSize: min(maximumPacketSize + 5, Int(UInt32.max)),
            shouldUpgrade: { channel, head in
                switch WebSocketHandshake.evaluate(head) {
                case .success(let subprotocol):
                    return channel.eventLoop.makeSucceededFuture(
                        HTTPHeaders([("Sec-WebSocket-Protocol", subprotocol)])
                    )
                case .failure:
                    // NIO then hands the request to WebSocketUpgradeGate, which answers it.
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(WebSocketMQTTFraming(), makeMQTTHandler())
                }
            }
        )
        let operations = channel.pipeline.syncOperations
        if let tls {
            try operations.addHandler(TLSAlertRecorder())
            try operations.addHandler(tls.serverHandler(remote: "\(channel.remoteAddress.map { "\($0)" } ?? "?")"))
        }
        try operations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            // The gate answers parse errors itself, with a reason in the body.
            withErrorHandling: false
        )
        try operations.addHandler(WebSocketUpgradeGate(timeout: connectTimeout, logger: logger))
    }
}
