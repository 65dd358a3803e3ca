import CLMDB

#if canImport(Glibc)
    import Glibc
#endif

/// Walks LMDB's B-trees with plain `pread`, checking every page before using anything it says.
///
/// LMDB checks page kinds and page numbers, but trusts the offsets inside a page: a node pointer or a
/// key size bent by flash rot makes it read outside the page, and the process dies (SIGSEGV, or an
/// `mdb_assert` abort in a later write). This walk never maps the file and bounds-checks every field, so
/// it can tell "these pages are broken" without crashing, and it hands back every record of every page
/// that is sound (what `salvage` copies).
///
/// Layout (LMDB 0.9, 64-bit, little-endian): page header `mp_pgno` u64 @0, `mp_flags` u16 @10,
/// `mp_lower` u16 @12, `mp_upper` u16 @14 (an overflow page keeps its page count, u32, @12); node offsets
/// (u16) from @16. A node: `mn_lo` u16, `mn_hi` u16, `mn_flags` u16, `mn_ksize` u16, then the key and the
/// data. Leaf data size = lo | hi << 16; a branch child's page number = lo | hi << 16 | flags << 32.
/// Leaf flags: 0x01 data on overflow pages (the node holds the page number), 0x02 a named database (the
/// node holds its 48-byte `MDB_db`, root @40), 0x04 duplicates (Sluice opens no DUPSORT database).
public enum PageWalk {
    static let header = 16
    static let nodeHeader = 8
    static let branch: UInt16 = 0x01, leaf: UInt16 = 0x02, overflow: UInt16 = 0x04, leaf2: UInt16 = 0x20
    static let invalidPage = UInt64.max

    public struct Result: Sendable {
        /// Broken pages and nodes found (empty when every reachable page is sound).
        public var problems: [String] = []
        /// The transaction of the meta page walked.
        public var transactionID: UInt64 = 0
        /// Pages read.
        public var pages = 0
        /// The walk saw the snapshot of a held read transaction (see `stableWalk`).
        public var stable = true
    }

    /// Walks every named database; `visit(database, key, value)` gets every record of every sound leaf.
    public static func walk(path: String, visit: (String, [UInt8], [UInt8]) -> Void = { _, _, _ in }) throws(StoreError)
        -> Result
    {
        guard case .valid(let meta, _) = try StoreFileCheck.inspect(path: path) else { return Result() }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(lmdb: errno, "open(\(path))") }
        defer { close(fd) }
        let pageSize = meta.pageSize
        var result = Result()
        result.transactionID = meta.transactionID
        // The newer meta's main database root: re-read it from the meta page that carries that transaction.
        var mainRoot = invalidPage
        for page in 0..<2 {
            guard let bytes = read(fd, UInt64(page * pageSize), 152),
                load(bytes, 144, UInt64.self) == meta.transactionID
            else { continue }
            mainRoot = load(bytes, 88 + 40, UInt64.self)
        }
        var visited = Set<UInt64>()

        func readPage(_ pgno: UInt64) -> [UInt8]? {
            guard pgno >= 2, pgno <= meta.lastPage else { return nil }
            return read(fd, pgno * UInt64(pageSize), pageSize)
        }

        /// Walks one tree; `onLeafNode(key, value, flags)` for each sound leaf node.
        func tree(_ name: String, _ root: UInt64, _ onLeafNode: ([UInt8], [UInt8], UInt16) -> Void) {
            guard root != invalidPage else { return }
            var stack: [(pgno: UInt64, depth: Int)] = [(root, 0)]
            while let (pgno, depth) = stack.popLast() {
                func problem(_ text: String) {
                    if result.problems.count < 50 { result.problems.append("\(name): page \(pgno): \(text)") }
                }
                guard depth < 32 else { problem("tree deeper than 32 levels (a loop?)"); continue }
                guard visited.insert(pgno).inserted else {
                    problem("reached twice (a loop or a shared page)"); continue
                }
                guard let page = readPage(pgno), page.count == pageSize else {
                    problem("page number outside the file (last page \(meta.lastPage))")
                    continue
                }
                result.pages += 1
                let flags = load(page, 10, UInt16.self)
                let lower = Int(load(page, 12, UInt16.self))
                let upper = Int(load(page, 14, UInt16.self))
                guard load(page, 0, UInt64.self) == pgno else {
                    problem("its header says page \(load(page, 0, UInt64.self))")
                    continue
                }
                let isBranch = flags & branch != 0
                guard isBranch != (flags & leaf != 0), flags & (overflow | leaf2) == 0 else {
                    problem("flags 0x\(String(flags, radix: 16)) are not a branch or leaf page")
                    continue
                }
                guard lower >= header, lower <= upper, upper <= pageSize, (lower - header) % 2 == 0 else {
                    problem("bounds lower \(lower) upper \(upper) do not fit a \(pageSize)-byte page")
                    continue
                }
                let count = (lower - header) / 2
                guard count > 0 || depth == 0 else { problem("an empty page inside the tree"); continue }
                var children: [UInt64] = []
                var sound = true
                var records: [([UInt8], [UInt8], UInt16)] = []
                for index in 0..<count {
                    let offset = Int(load(page, header + 2 * index, UInt16.self))
                    guard offset >= upper, offset + nodeHeader <= pageSize else {
                        problem("node \(index) at offset \(offset) lies outside the node area (\(upper)…\(pageSize))")
                        sound = false
                        break
                    }
                    let lo = UInt64(load(page, offset, UInt16.self))
                    let hi = UInt64(load(page, offset + 2, UInt16.self))
                    let nodeFlags = load(page, offset + 4, UInt16.self)
                    let keySize = Int(load(page, offset + 6, UInt16.self))
                    let keyStart = offset + nodeHeader
                    guard keyStart + keySize <= pageSize else {
                        problem("node \(index): key of \(keySize) bytes runs past the page")
                        sound = false
                        break
                    }
                    if isBranch {
                        children.append(lo | hi << 16 | UInt64(nodeFlags) << 32)
                        continue
                    }
                    let key = Array(page[keyStart..<keyStart + keySize])
                    let dataStart = keyStart + keySize
                    let dataSize = Int(lo | hi << 16)
                    if nodeFlags & 0x01 != 0 {
                        // On overflow pages.
                        guard dataStart + 8 <= pageSize else {
                            problem("node \(index): overflow reference runs past the page"); sound = false; break
                        }
                        let first = load(page, dataStart, UInt64.self)
                        guard let head = readPage(first), load(head, 0, UInt64.self) == first,
                            load(head, 10, UInt16.self) & overflow != 0
                        else {
                            problem("node \(index): overflow page \(first) is not an overflow page")
                            sound = false
                            break
                        }
                        let pages = UInt64(load(head, 12, UInt32.self))
                        guard pages >= 1, first + pages - 1 <= meta.lastPage, dataSize <= Int(pages) * pageSize - header
                        else {
                            problem(
                                "node \(index): \(dataSize) bytes on \(pages) overflow page(s) from \(first) do not fit"
                            )
                            sound = false
                            break
                        }
                        guard let data = read(fd, first * UInt64(pageSize) + UInt64(header), dataSize),
                            data.count == dataSize
                        else {
                            problem("node \(index): overflow data unreadable")
                            sound = false
                            break
                        }
                        records.append((key, data, nodeFlags))
                    } else {
                        guard dataStart + dataSize <= pageSize else {
                            problem("node \(index): \(dataSize) bytes of data run past the page")
                            sound = false
                            break
                        }
                        records.append((key, Array(page[dataStart..<dataStart + dataSize]), nodeFlags))
                    }
                }
                guard sound else { continue }  // the page's records are lost; its neighbours are not
                for child in children.reversed() { stack.append((child, depth + 1)) }
                for record in records { onLeafNode(record.0, record.1, record.2) }
            }
        }

        var databases: [(String, UInt64)] = []
        tree("main", mainRoot) { key, value, flags in
            // Layout 2 keeps queue records and their metadata in the main database itself.
            guard flags & 0x02 != 0, value.count >= 48 else { return visit("queues", key, value) }
            databases.append((String(decoding: key, as: UTF8.self), load(value, 40, UInt64.self)))
        }
        for (name, root) in databases {
            tree(name, root) { key, value, _ in visit(name, key, value) }
        }
        return result
    }

    /// Walks a consistent snapshot even beside a running gateway: an LMDB read transaction is held
    /// during the walk, so the writer reuses none of the snapshot's pages, and the walk is repeated
    /// (up to `attempts` times) until the newest meta page is the one of that transaction. Opening the
    /// environment and beginning a read transaction read only the (already checked) meta pages.
    /// `stable` in the result is false when no attempt matched (a commit landed between every start).
    public static func stableWalk(
        path: String,
        attempts: Int = 5,
        visit: (String, [UInt8], [UInt8]) -> Void = { _, _, _ in }
    )
        throws(StoreError) -> Result
    {
        guard case .valid = try StoreFileCheck.inspect(path: path) else { return Result() }
        let environment = try LMDBEnvironment.shared(path: path, mapSize: 1 << 20, maxMapSize: 1 << 20, readOnly: true)
        defer { environment.release() }
        var last = Result()
        var entries: [(String, [UInt8], [UInt8])] = []
        for _ in 0..<max(1, attempts) {
            entries = []
            let snapshot = try environment.read { txn throws(StoreError) in
                let id = UInt64(mdb_txn_id(txn.txn))
                last = try walk(path: path) { entries.append(($0, $1, $2)) }
                return id
            }
            last.stable = last.transactionID == snapshot
            if last.stable { break }
        }
        for entry in entries { visit(entry.0, entry.1, entry.2) }
        return last
    }

    static func read(_ fd: Int32, _ offset: UInt64, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return got < 0 ? nil : Array(buffer.prefix(got))
    }

    static func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, _: T.Type) -> T {
        guard offset + MemoryLayout<T>.size <= bytes.count else { return 0 }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<MemoryLayout<T>.size { raw[i] = bytes[offset + i] }
        }
        return T(littleEndian: value)
    }
}
