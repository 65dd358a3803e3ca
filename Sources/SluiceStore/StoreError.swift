import CLMDB

/// An LMDB result code (`MDB_*` or a system `errno` value), as returned by the C library.
///
/// Modelled after GRDB's `ResultCode`: a `RawRepresentable` wrapper rather than a closed enum, because
/// LMDB also passes `errno` values (`ENOSPC`, `EACCES`, …) through the same channel.
public struct LMDBResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let keyExist = LMDBResultCode(rawValue: MDB_KEYEXIST)
    public static let notFound = LMDBResultCode(rawValue: MDB_NOTFOUND)
    public static let pageNotFound = LMDBResultCode(rawValue: MDB_PAGE_NOTFOUND)
    public static let corrupted = LMDBResultCode(rawValue: MDB_CORRUPTED)
    public static let panic = LMDBResultCode(rawValue: MDB_PANIC)
    public static let versionMismatch = LMDBResultCode(rawValue: MDB_VERSION_MISMATCH)
    public static let invalid = LMDBResultCode(rawValue: MDB_INVALID)
    public static let mapFull = LMDBResultCode(rawValue: MDB_MAP_FULL)
    public static let dbsFull = LMDBResultCode(rawValue: MDB_DBS_FULL)
    public static let readersFull = LMDBResultCode(rawValue: MDB_READERS_FULL)
    public static let tlsFull = LMDBResultCode(rawValue: MDB_TLS_FULL)
    public static let txnFull = LMDBResultCode(rawValue: MDB_TXN_FULL)
    public static let cursorFull = LMDBResultCode(rawValue: MDB_CURSOR_FULL)
    public static let pageFull = LMDBResultCode(rawValue: MDB_PAGE_FULL)
    public static let mapResized = LMDBResultCode(rawValue: MDB_MAP_RESIZED)
    public static let incompatible = LMDBResultCode(rawValue: MDB_INCOMPATIBLE)
    public static let badReaderSlot = LMDBResultCode(rawValue: MDB_BAD_RSLOT)
    public static let badTxn = LMDBResultCode(rawValue: MDB_BAD_TXN)
    public static let badValueSize = LMDBResultCode(rawValue: MDB_BAD_VALSIZE)
    public static let badDbi = LMDBResultCode(rawValue: MDB_BAD_DBI)
    /// `ENOSPC`: the disk is full. Handled like a full map at its ceiling.
    public static let noSpace = LMDBResultCode(rawValue: 28)

    /// The C library's message for this code (`mdb_strerror`, which also covers `errno` values).
    public var message: String { String(cString: mdb_strerror(rawValue)) }
    public var description: String { "\(rawValue) (\(message))" }
}

/// Every error of SluiceStore: an LMDB result code, or one of the store's own conditions.
///
/// Compare `error.code` with the static members: `if error.code == .storeFull { … }`.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. Extensible: new codes may be added later.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case lmdb(LMDBResultCode)
            case storeFull
            case corruptRecord
            case invalidArgument
            case closed
            case damagedFile
            case locked
        }
        fileprivate var base: Base

        /// A call into LMDB failed with this result code.
        public static func lmdb(_ code: LMDBResultCode) -> Code { Code(base: .lmdb(code)) }
        /// The map reached its configured ceiling (or the disk is full) and the write could not be made.
        public static let storeFull = Code(base: .storeFull)
        /// Bytes read from the store do not decode (unknown version, truncated, trailing bytes, bad UTF-8…).
        public static let corruptRecord = Code(base: .corruptRecord)
        /// The caller passed something the store cannot hold (empty queue name, key too long…).
        public static let invalidArgument = Code(base: .invalidArgument)
        /// The store was closed before the operation could run.
        public static let closed = Code(base: .closed)
        /// The file itself is damaged (truncated, no valid meta page, a broken page): LMDB must not map it.
        public static let damagedFile = Code(base: .damagedFile)
        /// Another process holds the store's lock (`sluice run` takes it).
        public static let locked = Code(base: .locked)

        /// The LMDB result code, if this is an LMDB error.
        public var lmdbResultCode: LMDBResultCode? {
            if case .lmdb(let code) = base { return code }
            return nil
        }

        public var description: String {
            switch base {
            case .lmdb(let code): return "lmdb(\(code))"
            case .storeFull: return "storeFull"
            case .corruptRecord: return "corruptRecord"
            case .invalidArgument: return "invalidArgument"
            case .closed: return "closed"
            case .damagedFile: return "damagedFile"
            case .locked: return "locked"
            }
        }
    }

    public var code: Code
    /// A human-readable explanation; for LMDB errors it names the failed call and includes `mdb_strerror`'s text.
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// Wraps an LMDB return value that is not `MDB_SUCCESS`.
    init(lmdb rc: Int32, _ operation: String) {
        let code = LMDBResultCode(rawValue: rc)
        self.init(code: .lmdb(code), message: "\(operation): \(code.message) (\(rc))")
    }

    static func corrupt(_ message: String) -> StoreError { StoreError(code: .corruptRecord, message: message) }
    static func invalid(_ message: String) -> StoreError { StoreError(code: .invalidArgument, message: message) }
    static let closedError = StoreError(code: .closed, message: "the store is closed")

    /// True for the conditions that mean "no room": `MDB_MAP_FULL` and `ENOSPC`.
    var isOutOfSpace: Bool {
        code == .storeFull || code == .lmdb(.mapFull) || code == .lmdb(.noSpace)
    }

    /// True when LMDB itself found a broken page (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`) or the file check did.
    public var isDamage: Bool {
        code == .damagedFile || code == .lmdb(.corrupted) || code == .lmdb(.pageNotFound)
    }

    public var description: String { "StoreError.\(code): \(message)" }
}

/// Throws a `StoreError` for any LMDB return value other than `MDB_SUCCESS`.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(StoreError) {
    if rc != 0 { throw StoreError(lmdb: rc, operation()) }
}
