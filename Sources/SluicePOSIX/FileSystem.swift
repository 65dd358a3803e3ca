// Files, directories and the wall clock over Glibc, for modules that do not link FoundationEssentials
// (issue 17: the binary carries no Foundation once no module of it imports it).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a file or directory could not be read: its path and the errno of the call that failed
/// (0 when the bytes were read but are not UTF-8 text).
public struct FileFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var code: Int32

    public init(path: String, code: Int32) {
        self.path = path
        self.code = code
    }

    /// "No such file or directory", "Permission denied", "not UTF-8 text".
    public var reason: String { code == 0 ? "not UTF-8 text" : String(cString: strerror(code)) }
    public var description: String { "\(path): \(reason)" }
}

public enum FileSystem {
    public enum Kind: Sendable, Equatable {
        case file
        case directory
        /// A device, socket or FIFO.
        case other
    }

    /// What `path` names after following symbolic links; nil when nothing (or a dangling link) is there.
    public static func kind(_ path: String) -> Kind? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    public static func exists(_ path: String) -> Bool { kind(path) != nil }

    /// The whole file. Reads to end of file rather than trusting st_size, which is 0 for /proc files.
    public static func readBytes(_ path: String) throws(FileFailure) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileFailure(path: path, code: errno) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { return bytes }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileFailure(path: path, code: errno)
            }
            bytes.append(contentsOf: chunk[..<count])
        }
    }

    /// The whole file as text; bytes that are not valid UTF-8 are an error (code 0), not replaced.
    public static func readText(_ path: String) throws(FileFailure) -> String {
        let bytes = try readBytes(path)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw FileFailure(path: path, code: 0) }
        return text
    }

    /// `path` made absolute with symbolic links, "." and ".." resolved (realpath(3)): one text for one
    /// file however it was named. A path that does not exist yet keeps its missing last components
    /// behind its longest existing (resolved) directory.
    public static func canonicalPath(_ path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else {
            let current = realpath(".", nil)
            defer { free(current) }
            let directory = current.map { String(cString: $0) } ?? "."
            return (directory == "/" ? "" : directory) + "/" + trimmed
        }
        let name = trimmed[trimmed.index(after: slash)...]
        let directory = slash == trimmed.startIndex ? "/" : canonicalPath(String(trimmed[..<slash]))
        return (directory == "/" ? "" : directory) + "/" + name
    }

    /// The names in a directory, without "." and "..", in the order the file system gives them.
    public static func directoryEntries(_ path: String) throws(FileFailure) -> [String] {
        guard let directory = opendir(path) else { throw FileFailure(path: path, code: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes `path` and any missing parents (mode 0777 less the umask, as `mkdir -p`); an existing
    /// directory is fine, an existing file in the way is an error.
    public static func createDirectory(_ path: String) throws(FileFailure) {
        if kind(path) == .directory { return }
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        if let slash = trimmed.lastIndex(of: "/"), slash != trimmed.startIndex {
            do {
                try createDirectory(String(trimmed[..<slash]))
            } catch {
                // A file where a parent directory should be: say so about the path asked for, as mkdir -p.
                throw FileFailure(path: path, code: error.code == EEXIST ? ENOTDIR : error.code)
            }
        }
        if mkdir(String(trimmed), 0o777) != 0 {
            let code = errno
            if code == EEXIST && kind(path) == .directory { return }  // made by someone else meanwhile
            throw FileFailure(path: path, code: code)
        }
    }

    /// Replaces the file at `path` with `bytes` (created with mode 0666 less the umask): written to a
    /// temporary file beside it and renamed over it, so a reader sees the old or the new file, never a
    /// part, as FileManager.createFile wrote it.
    public static func writeFile(_ path: String, _ bytes: some Collection<UInt8>) throws(FileFailure) {
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard descriptor >= 0 else { throw FileFailure(path: path, code: errno) }
        let contents = Array(bytes)
        var written = 0
        while written < contents.count {
            let count = contents.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(descriptor)
                unlink(temporary)
                throw FileFailure(path: path, code: code)
            }
            written += count
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FileFailure(path: path, code: code)
        }
    }

    /// Deletes the file at `path`.
    public static func removeFile(_ path: String) throws(FileFailure) {
        guard unlink(path) == 0 else { throw FileFailure(path: path, code: errno) }
    }

    /// Where the symbolic link at `path` points (readlink(2)), nil if it is no link or cannot be read.
    public static func linkDestination(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count) }
        guard count > 0, count < buffer.count else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public enum WallClock {
    /// Seconds since the Unix epoch (CLOCK_REALTIME), with the clock's sub-second part.
    public static func secondsSince1970() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// Whole milliseconds since the Unix epoch (CLOCK_REALTIME), rounded down.
    public static func millisecondsSince1970() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
