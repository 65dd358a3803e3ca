import CLMDB

import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

/// A named LMDB database inside an environment (`MDB_dbi`).
public struct LMDBDatabase: Sendable, Hashable {
    let dbi: MDB_dbi
}

/// A thin, typed wrapper over an `MDB_env` opened with `MDB_NOSUBDIR | MDB_NOTLS`.
///
/// - Read transactions may be run from any thread, concurrently.
/// - Write transactions must run on one thread with a synchronous body (the `Store`'s writer thread).
/// - Growing the map needs every transaction of this process to be finished; a readers-writer lock
///   held around every transaction gives the grower that guarantee.
///
/// LMDB must not be opened twice on one file in one process (closing one handle drops the other's
/// POSIX locks and a second open re-initialises the lock file). `shared(path:…)` hands out one
/// environment per file and counts references.
public final class LMDBEnvironment: @unchecked Sendable {
    let env: OpaquePointer
    public let path: String
    /// Opened with `MDB_RDONLY`: no write transactions, nothing created.
    public let readOnly: Bool
    /// What the meta-page check found before the file was mapped (`.empty`: a zero-length file, now a new store).
    public let verdict: StoreFileCheck.Verdict
    /// The ceiling for automatic growth, in bytes.
    public let maxMapSize: Int
    private let resizeLock: UnsafeMutablePointer<pthread_rwlock_t>
    private let sizeLock = ConditionMutex()
    private var _mapSize: Int

    /// The current map size in bytes.
    public var mapSize: Int { sizeLock.withLock { _mapSize } }

    /// Opens (creating if needed) the environment file at `path`.
    ///
    /// Opens a new handle every time: never open one file twice in a process this way (use `Store`, which
    /// shares one environment per file).
    public init(path: String, mapSize: Int, maxMapSize: Int, maxDatabases: Int = 8, readOnly: Bool = false)
        throws(StoreError)
    {
        // Before LMDB maps the file: a truncated file or one without valid meta pages would otherwise
        // end the process with SIGBUS on first access.
        let verdict = try StoreFileCheck.inspect(path: path)
        if readOnly && verdict == .missing { throw StoreError(lmdb: ENOENT, "open(\(path))") }
        self.verdict = verdict
        self.readOnly = readOnly
        var envPointer: OpaquePointer?
        try check(mdb_env_create(&envPointer), "mdb_env_create")
        guard let env = envPointer else { throw StoreError.invalid("mdb_env_create returned no environment") }
        let ceiling = max(mapSize, maxMapSize)
        do throws(StoreError) {
            try check(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
            // Must come before mdb_env_open: Debian's default map is 1 MiB.
            try check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize(\(mapSize))")
            let flags = MDB_NOSUBDIR | MDB_NOTLS | (readOnly ? MDB_RDONLY : 0)
            let rc = mdb_env_open(env, path, UInt32(flags), 0o640)
            if rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND {
                throw StoreError.damagedFile(path: path, "LMDB refused it: \(LMDBResultCode(rawValue: rc).message)")
            }
            try check(rc, "mdb_env_open(\(path))")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.env = env
        self.path = path
        self.maxMapSize = ceiling
        self.resizeLock = .allocate(capacity: 1)
        pthread_rwlock_init(resizeLock, nil)
        // Free reader slots left by processes that died inside a read transaction (kill -9 of a CLI):
        // a stale slot would pin old pages and make the map grow.
        var dead: Int32 = 0
        if !readOnly { mdb_reader_check(env, &dead) }
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        // An existing file larger than the requested map makes LMDB use the file's size.
        self._mapSize = info.me_mapsize
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(resizeLock)
        resizeLock.deallocate()
    }

    // MARK: Sharing one environment per file within the process

    private struct Entry {
        var environment: LMDBEnvironment
        var references: Int
    }
    nonisolated(unsafe) private static var registry: [String: Entry] = [:]
    private static let registryLock = ConditionMutex()

    static func canonicalPath(_ path: String) -> String {
        FileSystem.canonicalPath(path)
    }

    /// Returns the process-wide environment for `path`, opening it on first use. Balance with `release()`.
    static func shared(path: String, mapSize: Int, maxMapSize: Int, readOnly: Bool = false) throws(StoreError)
        -> LMDBEnvironment
    {
        let key = canonicalPath(path)
        registryLock.lock()
        defer { registryLock.unlock() }
        if var entry = registry[key] {
            entry.references += 1
            registry[key] = entry
            return entry.environment
        }
        let environment = try LMDBEnvironment(path: key, mapSize: mapSize, maxMapSize: maxMapSize, readOnly: readOnly)
        registry[key] = Entry(environment: environment, references: 1)
        return environment
    }

    /// Drops one reference taken by `shared`; the last one closes the environment.
    func release() {
        let key = LMDBEnvironment.canonicalPath(path)
        LMDBEnvironment.registryLock.lock()
        defer { LMDBEnvironment.registryLock.unlock() }
        guard var entry = LMDBEnvironment.registry[key], entry.environment === self else { return }
        entry.references -= 1
        if entry.references == 0 {
            LMDBEnvironment.registry[key] = nil
        } else {
            LMDBEnvironment.registry[key] = entry
        }
    }

    // MARK: Map size

    /// Doubles the map (capped at `maxMapSize`). Returns false when already at the ceiling.
    /// Call with no transaction of this thread open.
    func grow() throws(StoreError) -> Bool {
        pthread_rwlock_wrlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        let current = sizeLock.withLock { _mapSize }
        guard current < maxMapSize else { return false }
        let next = current > maxMapSize / 2 ? maxMapSize : current * 2
        try check(mdb_env_set_mapsize(env, next), "mdb_env_set_mapsize(\(next))")
        refreshMapSize()
        return true
    }

    /// Adopts a map size grown by another process (`MDB_MAP_RESIZED`).
    private func adoptResizedMap() throws(StoreError) {
        pthread_rwlock_wrlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        try check(mdb_env_set_mapsize(env, 0), "mdb_env_set_mapsize(0)")
        refreshMapSize()
    }

    /// Pages still allocatable at the current map size: never-used pages beyond the high-water mark plus
    /// pages on LMDB's free list (database 0), and the total pages of the map.
    func spacePages() throws(StoreError) -> (available: Int, total: Int) {
        try read { txn throws(StoreError) in
            var stat = MDB_stat()
            try check(mdb_env_stat(env, &stat), "mdb_env_stat")
            var info = MDB_envinfo()
            try check(mdb_env_info(env, &info), "mdb_env_info")
            let pageSize = max(1, Int(stat.ms_psize))
            let total = info.me_mapsize / pageSize
            var free = 0
            try txn.withCursor(LMDBDatabase(dbi: 0)) { cursor throws(StoreError) in
                // Each free-list record is an ID list: a count word then that many page numbers.
                var entry = try cursor.first()
                while let current = entry {
                    free += max(0, current.value.count / MemoryLayout<Int>.size - 1)
                    entry = try cursor.next()
                }
            }
            return (max(0, total - info.me_last_pgno - 1) + free, total)
        }
    }

    private func refreshMapSize() {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        sizeLock.withLock { _mapSize = info.me_mapsize }
    }

    // MARK: Transactions

    private func begin(flags: UInt32) throws(StoreError) -> OpaquePointer {
        var attempts = 0
        while true {
            var txn: OpaquePointer?
            pthread_rwlock_rdlock(resizeLock)
            let rc = mdb_txn_begin(env, nil, flags, &txn)
            if rc == 0, let txn { return txn }
            pthread_rwlock_unlock(resizeLock)
            if rc == MDB_MAP_RESIZED && attempts < 3 {
                attempts += 1
                try adoptResizedMap()
                continue
            }
            throw StoreError(lmdb: rc, flags == 0 ? "mdb_txn_begin(write)" : "mdb_txn_begin(read)")
        }
    }

    /// Runs `body` in a read-only transaction. Anything returned must be copied out of the map.
    public func read<T>(_ body: (Transaction) throws(StoreError) -> T) throws(StoreError) -> T {
        let txn = try begin(flags: UInt32(MDB_RDONLY))
        defer {
            mdb_txn_abort(txn)
            pthread_rwlock_unlock(resizeLock)
        }
        return try body(Transaction(txn: txn))
    }

    /// Runs `body` in a read-only transaction and commits it, so database handles it opened stay open
    /// (a read-only environment cannot open them in a write transaction).
    func readCommitted<T>(_ body: (Transaction) throws(StoreError) -> T) throws(StoreError) -> T {
        try committed(flags: UInt32(MDB_RDONLY), "mdb_txn_commit(read)", body)
    }

    /// Runs `body` in a write transaction and commits it; aborts if `body` or the commit throws.
    /// Must be called from the thread that owns writes (write transactions belong to their OS thread).
    public func write<T>(_ body: (Transaction) throws(StoreError) -> T) throws(StoreError) -> T {
        try committed(flags: 0, "mdb_txn_commit", body)
    }

    /// Begins a transaction with `flags`, runs `body`, and commits; aborts if `body` throws.
    private func committed<T>(
        flags: UInt32,
        _ label: String,
        _ body: (Transaction) throws(StoreError) -> T
    ) throws(StoreError) -> T {
        let txn = try begin(flags: flags)
        defer { pthread_rwlock_unlock(resizeLock) }
        let value: T
        do {
            value = try body(Transaction(txn: txn))
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        // mdb_txn_commit frees the transaction whatever it returns.
        try check(mdb_txn_commit(txn), label)
        return value
    }

    /// Opens (creating if needed) a named database, or the main one for nil. Call once at start-up, before other
    /// transactions.
    public func openDatabase(_ name: String?) throws(StoreError) -> LMDBDatabase {
        try write { txn throws(StoreError) in
            var dbi: MDB_dbi = 0
            try check(mdb_dbi_open(txn.txn, name, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open(\(name ?? "main"))")
            return LMDBDatabase(dbi: dbi)
        }
    }
}

/// A transaction handle, valid only inside the `read`/`write` closure that provided it.
public struct Transaction {
    let txn: OpaquePointer

    /// The value for `key`, copied out of the map, or nil.
    public func get(_ db: LMDBDatabase, _ key: [UInt8]) throws(StoreError) -> [UInt8]? {
        try withValue(db, key) { $0.map { Array($0) } }
    }

    /// Calls `body` with the value's bytes in the map (nil if absent). The buffer dies with the transaction.
    func withValue<T>(_ db: LMDBDatabase, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws(StoreError) -> T)
        throws(StoreError) -> T
    {
        var data = MDB_val()
        let rc = key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_get(txn, db.dbi, &k, &data)
        }
        if rc == MDB_NOTFOUND { return try body(nil) }
        try check(rc, "mdb_get")
        return try body(UnsafeRawBufferPointer(start: data.mv_data, count: data.mv_size))
    }

    /// Stores `value` under `key`.
    public func put(_ db: LMDBDatabase, _ key: [UInt8], _ value: [UInt8], flags: Int32 = 0) throws(StoreError) {
        let rc = key.withUnsafeBytes { keyBytes in
            value.withUnsafeBytes { valueBytes in
                var k = MDB_val(
                    mv_size: keyBytes.count,
                    mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress)
                )
                var v = MDB_val(
                    mv_size: valueBytes.count,
                    mv_data: UnsafeMutableRawPointer(mutating: valueBytes.baseAddress)
                )
                return mdb_put(txn, db.dbi, &k, &v, UInt32(flags))
            }
        }
        try check(rc, "mdb_put")
    }

    /// Stores a value of `size` bytes under `key` that `body` writes straight into the database page
    /// (`MDB_RESERVE`), saving the value's own buffer and mdb_put's copy of it. `body` must write all `size`
    /// bytes: LMDB does not initialise them, and the commit stores whatever is there. The pointer is valid only
    /// until the next write in the transaction (a later put may split or move the page): use it inside `body`.
    public func reserve<T>(
        _ db: LMDBDatabase,
        _ key: [UInt8],
        size: Int,
        body: (UnsafeMutableRawBufferPointer) -> T
    ) throws(StoreError) -> T {
        var v = MDB_val(mv_size: size, mv_data: nil)
        let rc = key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_put(txn, db.dbi, &k, &v, UInt32(MDB_RESERVE))
        }
        try check(rc, "mdb_put(reserve)")
        guard let data = v.mv_data, v.mv_size == size else {
            throw StoreError.invalid("mdb_put(MDB_RESERVE) gave no space for \(size) bytes")
        }
        return body(UnsafeMutableRawBufferPointer(start: data, count: size))
    }

    /// Deletes `key`; returns false if it was absent.
    @discardableResult
    public func delete(_ db: LMDBDatabase, _ key: [UInt8]) throws(StoreError) -> Bool {
        let rc = key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_del(txn, db.dbi, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del")
        return true
    }

    /// Runs `body` with a cursor on `db`; the cursor is closed afterwards.
    public func withCursor<T>(_ db: LMDBDatabase, _ body: (Cursor) throws(StoreError) -> T) throws(StoreError) -> T {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open")
        guard let cursor else { throw StoreError.invalid("mdb_cursor_open returned no cursor") }
        defer { mdb_cursor_close(cursor) }
        return try body(Cursor(cursor: cursor))
    }
}

/// A cursor, valid only inside `Transaction.withCursor`. Positions return buffers into the map that are
/// valid until the next cursor operation; copy them (`Array(…)`) to keep them.
public struct Cursor {
    let cursor: OpaquePointer

    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    private func op(_ operation: MDB_cursor_op, key: [UInt8]? = nil) throws(StoreError) -> Entry? {
        var k = MDB_val()
        var v = MDB_val()
        let rc: Int32
        if let key {
            rc = key.withUnsafeBytes { keyBytes in
                k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, operation)
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, operation)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get")
        return (
            UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
            UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
        )
    }

    public func first() throws(StoreError) -> Entry? { try op(MDB_FIRST) }
    public func last() throws(StoreError) -> Entry? { try op(MDB_LAST) }
    public func next() throws(StoreError) -> Entry? { try op(MDB_NEXT) }
    public func previous() throws(StoreError) -> Entry? { try op(MDB_PREV) }
    public func current() throws(StoreError) -> Entry? { try op(MDB_GET_CURRENT) }
    /// Positions at the first key greater than or equal to `key`.
    public func seek(atLeast key: [UInt8]) throws(StoreError) -> Entry? { try op(MDB_SET_RANGE, key: key) }

    /// Deletes the entry under the cursor (write transactions only). The cursor then points at the next entry.
    public func deleteCurrent() throws(StoreError) {
        try check(mdb_cursor_del(cursor, 0), "mdb_cursor_del")
    }
}

extension UnsafeRawBufferPointer {
    /// True if these bytes begin with `prefix`.
    func hasPrefix(_ prefix: [UInt8]) -> Bool {
        guard count >= prefix.count else { return false }
        for i in 0..<prefix.count where self[i] != prefix[i] { return false }
        return true
    }
}
