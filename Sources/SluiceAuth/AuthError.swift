#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error found while reading a password file or an ACL file.
///
/// Every error names the file and, when it comes from a line, the line number:
/// `passwd:3: user 'bob': salt is not valid base64`. Messages never contain password hashes.
public struct AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What class of mistake this is.
    public enum Kind: Sendable, Equatable {
        /// The file could not be read.
        case unreadableFile
        /// A password file line that is not `USERNAME:HASH` with a hash Sluice understands.
        case badPasswordLine
        /// An ACL file line that breaks Mosquitto's ACL syntax.
        case badACLLine
        /// libcrypto, which hashes the passwords, could not be loaded (``LibCryptoUnavailable``).
        case libcryptoUnavailable
    }

    public var kind: Kind
    /// The file as it was named to the parser (the path given to `load`, or `fileName`).
    public var file: String
    /// 1-based line number, nil for errors about a whole file.
    public var line: Int?
    /// What was wrong, in words.
    public var message: String

    public init(_ kind: Kind, file: String, line: Int?, _ message: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Reads a whole text file, mapping failures to `AuthError.unreadableFile`.
func readTextFile(_ path: String) throws(AuthError) -> String {
    guard let file = fopen(path, "rb") else {
        throw AuthError(.unreadableFile, file: path, line: nil, "cannot open: \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if count > 0 { bytes.append(contentsOf: chunk[0..<count]) }
        if count < chunk.count {
            if ferror(file) != 0 {
                throw AuthError(
                    .unreadableFile,
                    file: path,
                    line: nil,
                    "read failed: \(String(cString: strerror(errno)))"
                )
            }
            break
        }
        // Both files are small; a multi-megabyte one is a mistake (or a wrong path).
        if bytes.count > 64 << 20 {
            throw AuthError(.unreadableFile, file: path, line: nil, "file is larger than 64 MiB")
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw AuthError(.unreadableFile, file: path, line: nil, "file is not valid UTF-8")
    }
    return text
}

/// Splits text into lines (LF or CRLF), numbered from 1.
func numberedLines(_ text: String) -> [(number: Int, text: Substring)] {
    var result: [(Int, Substring)] = []
    var number = 0
    // "\r\n" is one Character in Swift, so both forms are separators.
    for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
        number += 1
        var line = raw
        while let last = line.last, last == "\r" { line = line.dropLast() }
        result.append((number, line))
    }
    return result
}

extension Substring {
    /// The text without leading and trailing blanks (spaces and tabs), as Mosquitto's `misc__trimblanks`.
    var trimmingBlanks: Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}
