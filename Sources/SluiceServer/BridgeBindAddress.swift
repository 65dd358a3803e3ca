import NIOCore
import NIOPosix
import SluiceConfig

#if canImport(Glibc)
    import Glibc
#endif

/// `bridge_bind_address`: an address that is not (or no longer) one of this machine's makes every connect
/// fail with EADDRNOTAVAIL. Mosquitto just retries; Sluice retries too, but says which key is the cause,
/// and `sluice check` warns before the gateway runs.
public enum BridgeBindAddress {
    /// A connect failure, with the key named when the bind address is what failed.
    static func explain(_ error: any Error, bindAddress: SocketAddress?) -> DescribedNetworkError {
        var described = DescribedNetworkError(error)
        if let address = bindAddress?.ipAddress, Self.isAddressNotAvailable(error) {
            described = DescribedNetworkError(
                text: "\(described.description) (bridge_bind_address \(address) is not an address of this machine)"
            )
        }
        return described
    }

    /// `sluice check`: one warning per bridge whose bind address this machine cannot bind now.
    public static func warnings(_ config: GatewayConfig) -> [String] {
        config.bridges.compactMap { bridge in
            guard let text = bridge.bindAddress, let address = try? SocketAddress(ipAddress: text, port: 0) else {
                return nil
            }
            let family = address.protocol.rawValue
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            let result = address.withSockAddr { pointer, size in bind(fd, pointer, socklen_t(size)) }
            guard result != 0, errno == EADDRNOTAVAIL else { return nil }
            return "bridge '\(bridge.name)': bridge_bind_address \(text) is not an address of this machine now:"
                + " the bridge cannot connect until it is (it retries)"
        }
    }

    private static func isAddressNotAvailable(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == EADDRNOTAVAIL }
        if let error = error as? NIOConnectionError {
            return error.connectionErrors.contains { isAddressNotAvailable($0.error) }
        }
        return false
    }
}
