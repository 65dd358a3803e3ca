#if canImport(Glibc)
    import Glibc
#endif

/// One gateway per store: an advisory `flock` on `sluice.lock` beside `sluice.db`, held for the life of
/// the process, with the holder's PID written into the file.
///
/// LMDB itself happily lets two processes write one store (its own `-lock` file only orders
/// transactions), so two `sluice run` on one `persistence_location` would both drain the same queues and
/// take each other's bridge session over at the central. The kernel drops the lock when the process
/// ends, however it ends (kill -9 included), so a stale lock file never blocks a restart. Read-only tools
/// (`sluice queue stats`, `sluice store check`) do not take it.
public final class StoreLock: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    /// The lock file for a store directory.
    public static func lockPath(directory: String) -> String {
        PathText.appending("sluice.lock", to: directory)
    }

    /// Takes the lock at once or throws `.locked` naming the store and the PID holding it.
    public init(directory: String) throws(StoreError) {
        let path = StoreLock.lockPath(directory: directory)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw StoreError(lmdb: errno, "open(\(path))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = StoreLock.readHolder(fd)
            close(fd)
            guard code == EWOULDBLOCK else { throw StoreError(lmdb: code, "flock(\(path))") }
            let store = PathText.appending("sluice.db", to: directory)
            throw StoreError(
                code: .locked,
                message:
                    "the store \(store) is in use by another process (PID \(holder.map(String.init) ?? "unknown"), "
                    + "lock \(path)): stop it first, or give this gateway its own persistence_location"
            )
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.path = path
        self.fd = fd
    }

    /// The PID recorded by the holder, if the file holds one.
    private static func readHolder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 32, 0) }
        guard count > 0 else { return nil }
        // One number, blanks around it allowed ("12 34" is not a PID).
        let words = String(decoding: buffer.prefix(count), as: UTF8.self).split(whereSeparator: \.isWhitespace)
        return words.count == 1 ? Int32(words[0]) : nil
    }

    deinit {
        close(fd)  // releases the flock
    }
}
