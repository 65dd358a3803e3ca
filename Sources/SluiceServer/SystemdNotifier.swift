#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A minimal `sd_notify(3)` for `Type=notify` units, with no dependency on libsystemd.
///
/// systemd passes the path of a datagram unix socket in `NOTIFY_SOCKET` (a leading `@` means
/// an abstract socket). Each call sends one datagram of newline-separated `KEY=VALUE` states:
///
/// - `READY=1` once the listeners are bound and the store is open;
/// - `WATCHDOG=1` every `watchdogInterval / 2` when `WatchdogSec=` is set;
/// - `RELOADING=1` on SIGHUP, then `READY=1` when the reload is done;
/// - `STOPPING=1` when shutdown begins.
///
/// Outside systemd (`NOTIFY_SOCKET` unset) every call is a cheap no-op returning `false`.
/// Errors are never thrown and never crash: they return `false`.
public enum SystemdNotifier {
    /// Sends `state` (for example `"READY=1"` or `"STATUS=Listening\nREADY=1"`) to systemd.
    /// Returns `true` when the datagram was sent, `false` when `NOTIFY_SOCKET` is unset or
    /// invalid, or on any socket error.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        #if canImport(Glibc) || canImport(Musl)
            guard let socketPath = environment("NOTIFY_SOCKET"), !socketPath.isEmpty else { return false }
            guard !state.isEmpty else { return false }
            guard socketPath.hasPrefix("/") || socketPath.hasPrefix("@") else { return false }

            var pathBytes = Array(socketPath.utf8)
            let abstract = pathBytes[0] == UInt8(ascii: "@")
            if abstract { pathBytes[0] = 0 }

            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            // A filesystem path needs room for its terminating NUL; an abstract name does not.
            guard pathBytes.count <= (abstract ? capacity : capacity - 1) else { return false }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                raw.copyBytes(from: pathBytes)
            }
            let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
            let addressLength = socklen_t(pathOffset + pathBytes.count + (abstract ? 0 : 1))

            #if canImport(Glibc)
                let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            #else
                let fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)
            #endif
            guard fd >= 0 else { return false }
            defer { close(fd) }

            let payload = Array(state.utf8)
            while true {
                let sent = payload.withUnsafeBytes { buffer in
                    withUnsafePointer(to: &address) { addressPointer in
                        addressPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                            sendto(
                                fd,
                                buffer.baseAddress,
                                buffer.count,
                                Int32(MSG_NOSIGNAL),
                                socketAddress,
                                addressLength
                            )
                        }
                    }
                }
                if sent >= 0 { return sent == payload.count }
                if errno != EINTR { return false }
            }
        #else
            return false
        #endif
    }

    /// The watchdog timeout systemd expects (`WatchdogSec=`), from `WATCHDOG_USEC`; `nil` when
    /// the watchdog is off, the value is invalid, or `WATCHDOG_PID` names another process.
    /// Send `WATCHDOG=1` every half of this interval.
    public static var watchdogInterval: Duration? {
        #if canImport(Glibc) || canImport(Musl)
            guard let usecText = environment("WATCHDOG_USEC"), let usec = UInt64(usecText), usec > 0 else {
                return nil
            }
            if let pidText = environment("WATCHDOG_PID"), !pidText.isEmpty {
                guard let pid = Int64(pidText), pid == Int64(getpid()) else { return nil }
            }
            guard usec <= UInt64(Int64.max) else { return nil }
            return .microseconds(Int64(usec))
        #else
            return nil
        #endif
    }

    private static func environment(_ name: String) -> String? {
        #if canImport(Glibc) || canImport(Musl)
            guard let value = getenv(name) else { return nil }
            return String(cString: value)
        #else
            return nil
        #endif
    }
}
