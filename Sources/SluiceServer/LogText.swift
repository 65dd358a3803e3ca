import NIOCore
import NIOPosix
import NIOSSL
import SluiceConfig

#if canImport(Glibc)
    import Glibc
#endif

// Note on log words: every log line and CLI message names a peer as `127.0.0.1:49380` or `[::1]:1883`
// (`SocketAddress.logText`, which is `HostPort`'s form), and a network failure by its cause in plain
// words (`NetworkErrorText.describe`), never by SwiftNIO's `[IPv4]127.0.0.1/127.0.0.1:49380` or its
// nested error dumps.

extension SocketAddress {
    /// `127.0.0.1:49380`, `[::1]:1883`, or a Unix socket's path.
    public var logText: String {
        guard let ip = ipAddress else { return pathname ?? "\(self)" }
        return HostPort(host: ip, port: port ?? 0).description
    }
}

extension Optional where Wrapped == SocketAddress {
    /// The peer's address, `?` when the socket no longer knows it.
    var logText: String { map(\.logText) ?? "?" }
}

extension ChannelHandlerContext {
    /// The peer's address. The channel keeps the one it read at accept (shared, and still known once
    /// the peer has reset the socket); the context asks the socket anew.
    var peerAddress: SocketAddress? { channel.remoteAddress ?? remoteAddress }

    /// `peerAddress` for a log line.
    var peerLogText: String { peerAddress.logText }
}

/// A network failure in the product's words: `connection refused`, `host name 'x' not found`.
public enum NetworkErrorText {
    public static func describe(_ error: any Error) -> String {
        switch error {
        case let error as NIOConnectionError:
            if error.dnsAError != nil || error.dnsAAAAError != nil {
                return "host name '\(error.host)' not found"
            }
            // Every address of the name failed; the first one's cause stands for them.
            return error.connectionErrors.first.map { describe($0.error) }
                ?? "cannot connect to \(error.host):\(error.port)"
        case let error as IOError:
            return String(cString: strerror(error.errnoCode)).lowercased()
        case let error as ChannelError:
            switch error {
            case .connectTimeout(let amount):
                return "no answer within \(amount.nanoseconds / 1_000_000_000) s (connect timeout)"
            case .eof, .outputClosed, .inputClosed, .alreadyClosed, .ioOnClosedChannel:
                return "connection closed by the peer"
            default: return "\(error)"
            }
        case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError:
            return "TLS handshake failed: \(error)"
        default:
            return "\(error)"
        }
    }
}

/// A failure carried to the bridge link: its description is the cause in the product's words.
struct DescribedNetworkError: Error, CustomStringConvertible {
    let description: String

    init(_ error: any Error) {
        description = NetworkErrorText.describe(error)
    }

    init(text: String) {
        description = text
    }
}

/// A start-up failure in one line (`cannot listen on 127.0.0.1:1883 (listener): address already in use`).
struct StartError: Error, CustomStringConvertible {
    let description: String
}

/// Runs a bind; its failure names the setting, the address and the cause instead of SwiftNIO's dump.
func binding<T>(_ setting: String, _ address: String, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        throw StartError(description: "cannot listen on \(address) (\(setting)): \(NetworkErrorText.describe(error))")
    }
}
