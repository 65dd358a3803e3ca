import Logging
import SluiceConfig

#if canImport(Glibc)
    import Glibc
#endif

/// Mosquitto's `user`: a gateway started as root gives root up once its listeners are bound and its
/// store and log files are open (those keep working through their open descriptors).
///
/// glibc's `initgroups`/`setgid`/`setuid` change every thread of the process (glibc signals each thread
/// to make the same system call); a raw `syscall(SYS_setuid)` would change only the calling thread and
/// leave NIO's event loops root. So only the libc functions are used, and every thread is checked in
/// /proc/self/task afterwards: a process with one root thread left does not run.
public enum PrivilegeDrop {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Nothing to do unless running as root and `user` names someone else.
    public static func isNeeded(user: String?) -> Bool {
        guard let user, user != "root" else { return false }
        return geteuid() == 0
    }

    /// The account's uid and primary gid, or a failure that names the missing user.
    public static func account(_ user: String) throws(Failure) -> (uid: uid_t, gid: gid_t) {
        guard let entry = getpwnam(user) else {
            throw Failure(
                description:
                    "user \(user): no such user on this system; cannot drop privileges to it (create it, or name another user)"
            )
        }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    /// `rereadOnReload`: files a SIGHUP reads again, as `user` by then: each it cannot read is warned about.
    public static func drop(to user: String, logger: Logger, rereadOnReload: [String] = []) throws(Failure) {
        let (uid, gid) = try account(user)
        if initgroups(user, gid) != 0 { throw failure("initgroups", user) }
        if setgid(gid) != 0 { throw failure("setgid", user) }
        if setuid(uid) != 0 { throw failure("setuid", user) }
        if setuid(0) == 0 {
            throw Failure(description: "user \(user): root could be regained after dropping privileges")
        }
        let stillPrivileged = threadsNotRunningAs(uid: uid, gid: gid)
        guard stillPrivileged.isEmpty else {
            throw Failure(
                description:
                    "user \(user): threads \(stillPrivileged) still run with other ids after dropping privileges"
            )
        }
        logger.notice("dropped privileges to user \(user) (uid \(uid), gid \(gid))")
        for path in Set(rereadOnReload).sorted() where access(path, R_OK) != 0 {
            logger.warning(
                "user \(user) cannot read \(path): a SIGHUP reload will fail until it can (chown or chmod it)"
            )
        }
    }

    private static func failure(_ call: String, _ user: String) -> Failure {
        Failure(description: "user \(user): \(call) failed: \(String(cString: strerror(errno)))")
    }

    /// Thread ids whose real, effective, saved or filesystem uid or gid differ from the wanted ones.
    static func threadsNotRunningAs(uid: uid_t, gid: gid_t) -> [String] {
        guard let tasks = opendir("/proc/self/task") else { return ["(cannot list /proc/self/task)"] }
        defer { closedir(tasks) }
        var offenders: [String] = []
        while let entry = readdir(tasks) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.first?.isNumber == true else { continue }
            guard let status = readSmallFile("/proc/self/task/\(name)/status") else { continue }  // the thread ended
            let ids = Self.ids(inStatus: status)
            if ids.uids != Array(repeating: UInt32(uid), count: 4)
                || ids.gids != Array(repeating: UInt32(gid), count: 4)
            {
                let threadName = status.split(separator: "\n").first { $0.hasPrefix("Name:") }?.dropFirst(5)
                offenders.append(
                    "\(name) (\(threadName.map { $0.trimmingBlanks() } ?? "?"), uid \(ids.uids), gid \(ids.gids))"
                )
            }
        }
        return offenders
    }

    /// The four ids on the `Uid:` and `Gid:` lines of a /proc status file.
    static func ids(inStatus status: String) -> (uids: [UInt32], gids: [UInt32]) {
        var uids: [UInt32] = []
        var gids: [UInt32] = []
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let key = fields.first else { continue }
            let values = fields.dropFirst().compactMap { UInt32($0) }
            if key == "Uid:" { uids = values }
            if key == "Gid:" { gids = values }
        }
        return (uids, gids)
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: bytes.prefix(count), as: UTF8.self)
    }
}
