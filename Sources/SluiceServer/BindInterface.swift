import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// `bind_interface`: a listening socket bound to one network interface by name (SO_BINDTODEVICE,
/// set before the bind), so connections arriving on any other interface are refused, as in Mosquitto.
enum BindInterface {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// IFNAMSIZ bytes: the name, NUL-padded (the kernel reads up to IFNAMSIZ).
    typealias InterfaceName = (
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
    )

    static func apply(_ interface: String?, to channel: any Channel) -> EventLoopFuture<Void> {
        guard let interface else { return channel.eventLoop.makeSucceededVoidFuture() }
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(Failure(description: "bind_interface \(interface): not a socket"))
        }
        var name: InterfaceName = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &name) { bytes in
            for (index, byte) in interface.utf8.prefix(15).enumerated() { bytes[index] = byte }
        }
        return provider.unsafeSetSocketOption(
            level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET),
            name: NIOBSDSocket.Option(rawValue: SO_BINDTODEVICE),
            value: name
        ).flatMapErrorThrowing { error in
            throw Failure(
                description:
                    "bind_interface \(interface): \(error) (is it the name of a network interface here? see 'ip link')"
            )
        }
    }
}
