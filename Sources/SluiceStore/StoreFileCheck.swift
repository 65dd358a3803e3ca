#if canImport(Glibc)
    import Glibc
#endif

/// Checks an LMDB file's two meta pages with plain `pread` before LMDB maps it.
///
/// LMDB trusts its meta page: a file shorter than the last page the meta names (a truncated copy, a
/// filesystem that lost the tail after a power cut) is mapped anyway, and the first access past the end
/// of the file kills the process with SIGBUS. Reading the metas here turns that into a typed error.
///
/// Layout (LMDB 0.9, 64-bit): each meta page starts with a 16-byte page header (`mp_pgno` 8, `mp_pad` 2,
/// `mp_flags` 2 with `P_META` = 0x08, `mp_lower`/`mp_upper` 2+2), then `MDB_meta`: `mm_magic` u32 at 16,
/// `mm_version` u32 at 20, `mm_address` 8, `mm_mapsize` 8, two 48-byte `MDB_db` at 40 (the first one's
/// `md_pad`, at 40, holds the page size), `mm_last_pg` at 136, `mm_txnid` at 144. Native byte order.
/// Page 0 is meta 0, meta 1 starts one page later; LMDB uses the one with the higher `mm_txnid`.
public enum StoreFileCheck {
    static let magic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    static let metaFlag: UInt16 = 0x08
    static let metaBytes = 152

    /// One decoded meta page.
    public struct Meta: Sendable, Hashable {
        public var pageSize: Int
        public var lastPage: UInt64
        public var transactionID: UInt64
        /// The smallest file that holds every page this meta refers to.
        public var requiredSize: UInt64 { (lastPage + 1) * UInt64(pageSize) }
    }

    /// What a look at the file found.
    public enum Verdict: Sendable, Hashable {
        /// No file: LMDB creates one.
        case missing
        /// A zero-length file: LMDB initialises it as a new, empty store (worth a warning).
        case empty
        /// Both metas valid and the file long enough for the newer one.
        case valid(Meta, fileSize: UInt64)
    }

    /// Reads both meta pages of `path`; throws `.damagedFile` naming the path, the fault and the remedy.
    public static func inspect(path: String) throws(StoreError) -> Verdict {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return .missing }
            throw StoreError(lmdb: code, "open(\(path))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError(lmdb: errno, "fstat(\(path))") }
        let fileSize = UInt64(max(0, info.st_size))
        if fileSize == 0 { return .empty }
        return try inspect(
            read: { offset, count in
                var buffer = [UInt8](repeating: 0, count: count)
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
                return got < 0 ? nil : Array(buffer.prefix(got))
            },
            fileSize: fileSize,
            path: path
        )
    }

    /// The pure part of `inspect`: `read(offset, count)` returns up to `count` bytes (fewer at the end).
    static func inspect(read: (UInt64, Int) -> [UInt8]?, fileSize: UInt64, path: String) throws(StoreError)
        -> Verdict
    {
        func damaged(_ what: String) -> StoreError {
            StoreError.damagedFile(path: path, what)
        }
        guard let first = read(0, metaBytes) else { throw damaged("cannot read the first meta page") }
        let meta0: Meta
        switch decode(first) {
        case .success(let meta): meta0 = meta
        case .failure(let reason):
            throw damaged("meta page 0 is not valid (\(reason)); this is not an intact LMDB file")
        }
        guard let second = read(UInt64(meta0.pageSize), metaBytes) else {
            throw damaged("cannot read the second meta page")
        }
        let meta1: Meta
        switch decode(second) {
        case .success(let meta): meta1 = meta
        case .failure(let reason):
            throw damaged("meta page 1 is not valid (\(reason)), file size \(fileSize) bytes")
        }
        guard meta1.pageSize == meta0.pageSize else {
            throw damaged("the meta pages disagree on the page size (\(meta0.pageSize) and \(meta1.pageSize))")
        }
        let newer = meta1.transactionID > meta0.transactionID ? meta1 : meta0
        guard fileSize >= newer.requiredSize else {
            throw damaged(
                "the file is \(fileSize) bytes but its meta page (transaction \(newer.transactionID)) needs "
                    + "\(newer.requiredSize) bytes (\(newer.lastPage + 1) pages of \(newer.pageSize)): it was truncated"
            )
        }
        return .valid(newer, fileSize: fileSize)
    }

    enum MetaFault: Error, CustomStringConvertible {
        case short(Int), notMeta(UInt16), badMagic(UInt32), badVersion(UInt32), badPageSize(Int), badLastPage(UInt64)
        var description: String {
            switch self {
            case .short(let count): "only \(count) bytes"
            case .notMeta(let flags): "page flags 0x\(String(flags, radix: 16)) lack P_META"
            case .badMagic(let value): "magic 0x\(String(value, radix: 16)), expected 0xbeefc0de"
            case .badVersion(let value): "data version \(value), expected 1"
            case .badPageSize(let value): "page size \(value)"
            case .badLastPage(let value): "last page number \(value)"
            }
        }
    }

    static func decode(_ bytes: [UInt8]) -> Result<Meta, MetaFault> {
        guard bytes.count >= metaBytes else { return .failure(.short(bytes.count)) }
        func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
            var value: T = 0
            withUnsafeMutableBytes(of: &value) { raw in
                for i in 0..<MemoryLayout<T>.size { raw[i] = bytes[offset + i] }
            }
            return T(littleEndian: value)  // LMDB writes native order; every supported target is little-endian
        }
        let flags = load(10, as: UInt16.self)
        guard flags & metaFlag != 0 else { return .failure(.notMeta(flags)) }
        let magicValue = load(16, as: UInt32.self)
        guard magicValue == magic else { return .failure(.badMagic(magicValue)) }
        let version = load(20, as: UInt32.self)
        guard version == dataVersion else { return .failure(.badVersion(version)) }
        let pageSize = Int(load(40, as: UInt32.self))
        // LMDB accepts 512 bytes (MDB_MINPAGESIZE… in practice the OS page) up to 64 KiB, powers of two.
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            return .failure(.badPageSize(pageSize))
        }
        let lastPage = load(136, as: UInt64.self)
        guard lastPage >= 1, lastPage < UInt64(1) << 40 else { return .failure(.badLastPage(lastPage)) }
        return .success(Meta(pageSize: pageSize, lastPage: lastPage, transactionID: load(144, as: UInt64.self)))
    }
}

extension StoreError {
    /// The store file is damaged in a way LMDB would not survive: names the path, the fault and the remedy.
    static func damagedFile(path: String, _ what: String) -> StoreError {
        StoreError(
            code: .damagedFile,
            message: "the store \(path) is damaged: \(what). Stop here: restore it from a backup, or "
                + "copy what can be read into a new store with `sluice store salvage --to NEWDIR` and point "
                + "persistence_location there (move the damaged file aside to start empty)"
        )
    }
}
