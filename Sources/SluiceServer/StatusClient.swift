import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceConfig

/// `sluice status` asking a running gateway for `/status.json` on its metrics listener: one GET, one
/// answer, bounded in time and size.
public enum StatusClient {
    /// Why the gateway gave no snapshot, in words for one line.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Larger answers are refused: a snapshot of many bridges with an hour of history is well below it.
    static let maximumBody = 8 << 20

    public static func fetch(
        _ address: HostPort,
        timeout: TimeAmount = .seconds(3),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(Failure) -> GatewayStatusSnapshot {
        let body: [UInt8]
        do {
            body = try await get(address, path: "/status.json", timeout: timeout, group: group)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: describe(error, timeout: timeout))
        }
        do {
            return try GatewayStatusSnapshot(json: body)
        } catch {
            throw Failure(description: "\(address) answered /status.json with something that is not a status snapshot")
        }
    }

    private static func get(_ address: HostPort, path: String, timeout: TimeAmount, group: any EventLoopGroup)
        async throws -> [UInt8]
    {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.pipeline.addHTTPClientHandlers().flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandler(
                            ResponseCollector(promise: promise, address: address)
                        )
                    }
                }
                .connect(host: address.host, port: address.port)
                .get()
        } catch {
            promise.fail(error)  // every promise is completed, also when no connection was made
            throw error
        }
        let deadline = loop.scheduleTask(in: timeout) {
            promise.fail(
                Failure(description: "\(address) did not answer within \(timeout.nanoseconds / 1_000_000_000) s")
            )
        }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: address.description)
        head.headers.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    /// `connection refused`, `no answer within 3 s`, or the error's own words.
    static func describe(_ error: any Error, timeout: TimeAmount) -> String {
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error, timeout: timeout)
        }
        if let io = error as? IOError {
            return io.errnoCode == ECONNREFUSED ? "connection refused" : String(cString: strerror(io.errnoCode))
        }
        if case ChannelError.connectTimeout = error {
            return "no answer within \(timeout.nanoseconds / 1_000_000_000) s"
        }
        return "\(error)"
    }
}

/// Collects one HTTP response: a 200 gives its body, anything else a failure naming the status.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<[UInt8]>
    private let address: HostPort
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<[UInt8]>, address: HostPort) {
        self.promise = promise
        self.address = address
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= StatusClient.maximumBody else {
                promise.fail(
                    StatusClient.Failure(description: "\(address) sent more than \(StatusClient.maximumBody) bytes")
                )
                context.close(promise: nil)
                return
            }
            body += buffer.readableBytesView
        case .end:
            if status == .ok {
                promise.succeed(body)
            } else {
                let code = status.map { "\($0.code) \($0.reasonPhrase)" } ?? "no status"
                promise.fail(
                    StatusClient.Failure(
                        description:
                            "\(address) answered /status.json with \(code) (a gateway older than sluice status?)"
                    )
                )
            }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(StatusClient.Failure(description: "\(address) closed the connection before answering"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(StatusClient.Failure(description: StatusClient.describe(error, timeout: .seconds(0))))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ResponseCollector: Sendable {}
