import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Note on releasing the start-up code pages.
///
/// The release binary carries ~18 MB of code, unwind tables and Swift metadata (static Swift stdlib,
/// NIO, BoringSSL) in its read-only, executable PT_LOAD segment. Start-up
/// (argument parsing, configuration, TLS initialisation, opening the store) touches code all over
/// that segment and the kernel maps it in 64 KiB fault-around chunks, so ~14 MiB of it stays
/// resident although most of it never runs again (measured without ICU, issue 17: idle VmRSS
/// 22.5 MB without this release, 12.6–16.3 MB with it; since build-deb.sh links with a symbol-ordering
/// file, 14.1 MB without and 11.7 MB with it; without Foundation, 13.1–13.4 MB without and 10.9–11.2 MB
/// with it, BENCHMARKS.md, so it stays). Those pages are clean and file-backed: the
/// kernel would drop them under memory pressure anyway, and a page that is used again comes back
/// from the page cache on the next access. Dropping our mappings of them once start-up is done
/// makes RSS show the broker's running working set instead of its start-up history.
///
/// Only segments the ELF program headers declare without `PF_W` are touched, and only pages that
/// `/proc/self/maps` shows as mapped without write permission. `MADV_DONTNEED` on a writable
/// private mapping would discard dirty pages (relocated GOT, data): that would be corruption, so
/// those are never advised — including RELRO, which is read-only at run time but lies in a
/// writable segment. So `.rodata`, which this link puts in the writable segment, stays resident.
/// A binary with text relocations (its code pages are dirty) is left alone; breakpoints a debugger
/// wrote into code pages before this runs are dropped with them (the pages come back from the file).
///
/// Every step is best-effort: a missing `/proc`, an unexpected header or a failing `madvise`
/// only means nothing (or less) is released.
public enum WorkingSet {
    /// One PT_LOAD program header, as far as this file needs it.
    struct LoadSegment: Equatable {
        var virtualAddress: UInt
        var fileSize: UInt
        var writable: Bool
    }

    /// What `releaseStartupCode` did.
    public struct Outcome: Sendable, Equatable {
        /// Address ranges advised successfully.
        public var regions = 0
        /// Bytes in those ranges (mapped, not necessarily resident).
        public var advisedBytes = 0
        /// Ranges whose `madvise` failed (left as they were).
        public var failures = 0
        /// Resident set size before and after, from `/proc/self/statm` (nil when unreadable).
        public var residentBefore: Int?
        public var residentAfter: Int?
        /// Why nothing was attempted, if so.
        public var skipped: String?

        public var releasedBytes: Int? {
            guard let residentBefore, let residentAfter else { return nil }
            return residentBefore - residentAfter
        }
    }

    /// Drops this process's mappings of the main executable's clean, read-only pages (see the
    /// note above). Call once, when start-up is complete. Logs the outcome at debug level.
    @discardableResult
    public static func releaseStartupCode(logger: Logger) -> Outcome {
        let outcome = releaseStartupCode()
        if let skipped = outcome.skipped {
            logger.debug("start-up code pages kept", metadata: ["reason": "\(skipped)"])
        } else {
            logger.debug(
                "released start-up code pages",
                metadata: [
                    "released_bytes": "\(outcome.releasedBytes.map(String.init) ?? "unknown")",
                    "rss_before": "\(outcome.residentBefore.map(String.init) ?? "unknown")",
                    "rss_after": "\(outcome.residentAfter.map(String.init) ?? "unknown")",
                    "advised_bytes": "\(outcome.advisedBytes)",
                    "regions": "\(outcome.regions)",
                    "failures": "\(outcome.failures)",
                ]
            )
        }
        return outcome
    }

    static func releaseStartupCode() -> Outcome {
        var outcome = Outcome()
        #if os(Linux)
            let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
            outcome.residentBefore = residentBytes(pageSize: pageSize)
            guard pageSize > 0, pageSize & (pageSize - 1) == 0 else {
                outcome.skipped = "unexpected page size"
                return outcome
            }
            guard let image = mainExecutable() else {
                outcome.skipped = "program headers not found"
                return outcome
            }
            guard !image.hasTextRelocations else {
                outcome.skipped = "executable has text relocations"
                return outcome
            }
            guard let mapsText = readProcFile("/proc/self/maps").map({ String(decoding: $0, as: UTF8.self) }) else {
                outcome.skipped = "/proc/self/maps unreadable"
                return outcome
            }
            let readOnly = readOnlyMappings(mapsText)
            let candidates = releasableRanges(image.segments, loadBias: image.loadBias, pageSize: pageSize)
            for range in candidates.flatMap({ clip($0, to: readOnly) }) where !range.isEmpty {
                let result = madvise(
                    UnsafeMutableRawPointer(bitPattern: range.lowerBound),
                    Int(range.upperBound - range.lowerBound),
                    MADV_DONTNEED
                )
                if result == 0 {
                    outcome.regions += 1
                    outcome.advisedBytes += Int(range.upperBound - range.lowerBound)
                } else {
                    outcome.failures += 1
                }
            }
            outcome.residentAfter = residentBytes(pageSize: pageSize)
        #else
            outcome.skipped = "not Linux"
        #endif
        return outcome
    }

    // MARK: Pure parts (tested without touching the process)

    /// Page ranges (absolute addresses) of the non-writable segments, shrunk so that no page is
    /// shared with a writable segment. Only file-backed bytes (`p_filesz`) count.
    static func releasableRanges(_ segments: [LoadSegment], loadBias: UInt, pageSize: UInt) -> [Range<UInt>] {
        func pages(_ segment: LoadSegment) -> Range<UInt>? {
            let (start, overflow1) = loadBias.addingReportingOverflow(segment.virtualAddress)
            let (end, overflow2) = start.addingReportingOverflow(segment.fileSize)
            guard !overflow1, !overflow2, end > start, end <= UInt.max - pageSize else { return nil }
            return (start & ~(pageSize - 1))..<((end + pageSize - 1) & ~(pageSize - 1))
        }
        let writable = segments.filter(\.writable).compactMap(pages)
        return segments.filter { !$0.writable }.compactMap { segment -> Range<UInt>? in
            guard var range = pages(segment) else { return nil }
            for w in writable where w.overlaps(range) {
                if w.lowerBound <= range.lowerBound {
                    range = min(w.upperBound, range.upperBound)..<range.upperBound
                } else {
                    range = range.lowerBound..<max(w.lowerBound, range.lowerBound)
                }
            }
            return range.isEmpty ? nil : range
        }
    }

    /// Address ranges of file-backed mappings without write permission, from `/proc/self/maps`
    /// lines such as `55d4c8a00000-55d4caa00000 r-xp 00000000 08:01 1234 /usr/bin/sluice`.
    static func readOnlyMappings(_ maps: String) -> [Range<UInt>] {
        var ranges: [Range<UInt>] = []
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let bounds = fields[0].split(separator: "-")
            let perms = Array(fields[1].utf8)
            guard bounds.count == 2, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16),
                low < high, perms.count == 4
            else { continue }
            let writable = perms[1] != UInt8(ascii: "-")
            let fileBacked = fields[4] != "0"
            if !writable && fileBacked { ranges.append(low..<high) }
        }
        return ranges
    }

    /// The parts of `range` covered by `mappings` (which do not overlap one another).
    static func clip(_ range: Range<UInt>, to mappings: [Range<UInt>]) -> [Range<UInt>] {
        mappings.compactMap { mapping -> Range<UInt>? in
            let low = max(range.lowerBound, mapping.lowerBound)
            let high = min(range.upperBound, mapping.upperBound)
            return low < high ? low..<high : nil
        }.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// Resident pages (second field of `/proc/self/statm`) in bytes.
    static func residentPages(statm: String) -> Int? {
        let fields = statm.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2 else { return nil }
        return Int(fields[1])
    }

    // MARK: This process

    #if os(Linux)
        struct Image {
            var segments: [LoadSegment]
            var loadBias: UInt
            var hasTextRelocations: Bool
        }

        static func residentBytes(pageSize: UInt) -> Int? {
            guard let bytes = readProcFile("/proc/self/statm"),
                let pages = residentPages(statm: String(decoding: bytes, as: UTF8.self))
            else { return nil }
            return pages * Int(pageSize)
        }

        /// The main executable's program headers. `dl_iterate_phdr` is hidden from Swift's Glibc
        /// module (it needs `_GNU_SOURCE`), so the headers come from the kernel's auxiliary vector
        /// (`AT_PHDR`, `AT_PHNUM`): the same table `dl_iterate_phdr` reports as its first object.
        static func mainExecutable() -> Image? {
            // The Elf64 layouts below; a 32-bit build keeps its pages.
            guard MemoryLayout<UInt>.size == 8, let auxv = readProcFile("/proc/self/auxv") else { return nil }
            var phdrAddress: UInt = 0
            var phdrCount: UInt = 0
            auxv.withUnsafeBytes { raw in
                let wordSize = MemoryLayout<UInt>.size
                var offset = 0
                while offset + 2 * wordSize <= raw.count {
                    let type = raw.loadUnaligned(fromByteOffset: offset, as: UInt.self)
                    let value = raw.loadUnaligned(fromByteOffset: offset + wordSize, as: UInt.self)
                    if type == UInt(AT_NULL) { break }
                    if type == UInt(AT_PHDR) { phdrAddress = value }
                    if type == UInt(AT_PHNUM) { phdrCount = value }
                    offset += 2 * wordSize
                }
            }
            guard phdrCount > 0, phdrCount < 256,
                let table = UnsafePointer<Elf64_Phdr>(bitPattern: phdrAddress)
            else { return nil }
            let headers = UnsafeBufferPointer(start: table, count: Int(phdrCount))
            // The load bias is where PT_PHDR landed minus where the file says it lives.
            guard let phdrEntry = headers.first(where: { $0.p_type == UInt32(PT_PHDR) }) else { return nil }
            let loadBias = phdrAddress &- UInt(phdrEntry.p_vaddr)
            let segments = headers.filter { $0.p_type == UInt32(PT_LOAD) }.map {
                LoadSegment(
                    virtualAddress: UInt($0.p_vaddr),
                    fileSize: UInt($0.p_filesz),
                    writable: $0.p_flags & UInt32(PF_W) != 0
                )
            }
            var textRelocations = false
            if let dynamic = headers.first(where: { $0.p_type == UInt32(PT_DYNAMIC) }),
                let entries = UnsafePointer<Elf64_Dyn>(bitPattern: loadBias &+ UInt(dynamic.p_vaddr))
            {
                let count = Int(dynamic.p_memsz) / MemoryLayout<Elf64_Dyn>.size
                for entry in UnsafeBufferPointer(start: entries, count: count) {
                    if entry.d_tag == Int64(DT_NULL) { break }
                    if entry.d_tag == Int64(DT_TEXTREL) { textRelocations = true }
                    if entry.d_tag == Int64(DT_FLAGS), entry.d_un.d_val & UInt64(DF_TEXTREL) != 0 {
                        textRelocations = true
                    }
                }
            }
            return Image(segments: segments, loadBias: loadBias, hasTextRelocations: textRelocations)
        }

        /// Reads a small `/proc` file (their sizes read as 0, so read until EOF; at most 4 MiB).
        static func readProcFile(_ path: String) -> [UInt8]? {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16_384)
            while bytes.count < 4 << 20 {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { return nil }
                if n == 0 { return bytes }
                bytes += chunk[0..<n]
            }
            return nil
        }
    #endif
}
