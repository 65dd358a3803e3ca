import CLMDB

#if canImport(Glibc)
    import Glibc
#endif

// Note on storage pressure (design: "out of space is a policy, never a loss or a crash"):
// - A commit can fail because there is no room (the map at `store_max_size`, ENOSPC, EDQUOT, or, on a
//   full tmpfs or SD card, EIO from a short write) or because the device fails (EIO with room to
//   spare, MDB_PANIC...). `StorageSpace.classify` tells them apart: an EIO counts as "out of space"
//   only while the filesystem has (almost) nothing free at that moment (statvfs).
// - "Out of space" becomes `.storeFull`, and appends apply their queue's `queue_overflow` policy
//   (drop_oldest drops the oldest and retries; reject_new refuses). A failing device is reported as
//   such: nothing is acknowledged, nothing is dropped.
// - The free-space guard (`store_min_free`) applies the same policy before the filesystem is full:
//   when the filesystem's free bytes plus the store's own free pages (which it reuses without growing
//   the file) fall below the guard, the writer works as at the map's ceiling (appends make room or are
//   refused, table puts wait). The OS and its logs keep their room.

/// How much of the store's filesystem must stay free (`store_min_free`).
public struct FreeSpaceGuard: Sendable, Hashable {
    /// Bytes to keep free, or nil.
    public var bytes: UInt64?
    /// Percent of the filesystem's size to keep free, or nil. With both, the smaller applies.
    public var percent: Double?

    public init(bytes: UInt64? = nil, percent: Double? = nil) {
        self.bytes = bytes
        self.percent = percent
    }

    /// No guard: only the map's ceiling and a full filesystem stop appends.
    public static let none = FreeSpaceGuard()

    /// The threshold in bytes for a filesystem of `total` bytes; nil when there is no guard.
    public func threshold(total: UInt64) -> UInt64? {
        let fromPercent = percent.map { UInt64(Double(total) * $0 / 100) }
        switch (bytes, fromPercent) {
        case (nil, nil): return nil
        case (let b?, nil): return b == 0 ? nil : b
        case (nil, let p?): return p == 0 ? nil : p
        case (let b?, let p?): return min(b, p) == 0 ? nil : min(b, p)
        }
    }
}

/// Free and total bytes of a filesystem, from statvfs.
public struct FilesystemSpace: Sendable, Hashable {
    /// Bytes an unprivileged process may still allocate (`f_bavail`).
    public var available: UInt64
    public var total: UInt64

    /// The filesystem holding `path` (a file or directory); nil if statvfs fails.
    public static func of(_ path: String) -> FilesystemSpace? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let unit = UInt64(info.f_frsize == 0 ? info.f_bsize : info.f_frsize)
        return FilesystemSpace(available: UInt64(info.f_bavail) * unit, total: UInt64(info.f_blocks) * unit)
    }
}

/// What the store's writer last saw: whether writes commit, and if not, why.
public enum StoreWriteHealth: Sendable, Hashable, CustomStringConvertible {
    case writable
    /// Out of space (the map's ceiling, the free-space guard, a full filesystem): `queue_overflow` applies.
    case full(String)
    /// The device reported an error: commits fail.
    case failing(String)

    public var isWritable: Bool { self == .writable }

    /// The state without its reason.
    var state: Int {
        switch self {
        case .writable: return 0
        case .full: return 1
        case .failing: return 2
        }
    }

    public var description: String {
        switch self {
        case .writable: return "writable"
        case .full(let why): return "full: \(why)"
        case .failing(let why): return "failing: \(why)"
        }
    }
}

enum StorageSpace {
    /// An EIO while the filesystem has less than this free is a short write on a full filesystem.
    static let nearlyFull: UInt64 = 4 << 20

    static let errnoIO: Int32 = 5
    static let errnoQuota: Int32 = 122  // EDQUOT on Linux

    /// Whether `error` means "no room" rather than "the device failed". `directory` is where the
    /// store's file lives (for statvfs at the moment of the failure).
    static func isOutOfSpace(_ error: StoreError, directory: String) -> Bool {
        if error.isOutOfSpace || error.code == .lmdb(LMDBResultCode(rawValue: errnoQuota)) { return true }
        guard error.code == .lmdb(LMDBResultCode(rawValue: errnoIO)), let space = FilesystemSpace.of(directory) else {
            return false
        }
        return space.available < nearlyFull
    }

    static func directory(of path: String) -> String {
        let directory = PathText.parent(of: path)
        return directory.isEmpty ? "." : directory
    }
}

extension LMDBEnvironment {
    /// Bytes on LMDB's free list: pages inside the file that the store reuses without growing it.
    func freeListBytes() throws(StoreError) -> UInt64 {
        try read { txn throws(StoreError) in
            var stat = MDB_stat()
            try check(mdb_env_stat(env, &stat), "mdb_env_stat")
            var free = 0
            try txn.withCursor(LMDBDatabase(dbi: 0)) { cursor throws(StoreError) in
                // Each free-list record is an ID list: a count word then that many page numbers.
                var entry = try cursor.first()
                while let current = entry {
                    free += max(0, current.value.count / MemoryLayout<Int>.size - 1)
                    entry = try cursor.next()
                }
            }
            return UInt64(free) * UInt64(max(1, stat.ms_psize))
        }
    }
}
