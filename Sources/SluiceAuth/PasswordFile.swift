import SluiceBase64

// A note on compatibility with Mosquitto 2.0 (`src/security_default.c`, `common/password_mosq.c`),
// checked against Debian's mosquitto 2.0.11 and its `mosquitto_passwd`:
//
// - A line is `USERNAME:HASH`. Blanks around both are trimmed. Lines starting with `#` are comments.
// - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 over the password bytes, 64-byte result.
//   `mosquitto_passwd` 2.0.11 writes 101 iterations and a 12-byte random salt. Mosquitto 2.0 accepts only
//   12-byte salts; later versions write 64-byte salts, so both lengths are accepted here.
// - `$6$SALT$HASH`: one SHA-512 over the password bytes followed by the salt bytes.
// - The password is hashed as Mosquitto hashes a C string: bytes up to the first NUL. Sluice rejects a
//   password containing NUL instead of silently truncating it.
// - Mosquitto skips a line without `:` and logs and drops an entry whose hash it cannot decode. Sluice
//   refuses the whole file instead, naming the line: a silently missing user is worse than a clear error.
// - A user named twice: the LAST line wins. Mosquitto 2.0 keeps both in a uthash table, which prepends
//   within a bucket, so a lookup finds the entry added last.

/// A `mosquitto_passwd`-compatible password file, parsed and ready to verify passwords.
///
/// Verifying is slow on purpose (PBKDF2): call ``verify(username:password:)`` off the event loop.
public struct PasswordFile: Sendable {
    /// One stored credential.
    struct Entry: Sendable {
        enum Scheme: Sendable {
            /// `$6$`: SHA-512(password ‖ salt).
            case sha512
            /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations.
            case pbkdf2SHA512(iterations: Int)
        }

        var scheme: Scheme
        var salt: [UInt8]
        var hash: [UInt8]
    }

    /// Mosquitto's salt length (`SALT_LEN` in mosquitto 2.0), also what `hashLine` writes.
    public static let saltLength = 12
    /// Mosquitto's hash length (`HASH_LEN`, the SHA-512 digest size).
    public static let hashLength = 64
    /// `mosquitto_passwd`'s default iteration count (`PW_DEFAULT_ITERATIONS` in mosquitto 2.0).
    public static let defaultIterations = 101

    private var entries: [String: Entry]
    /// Used for unknown users so that a lookup costs about one hash whether or not the user exists.
    private var decoy: Entry
    /// Loaded by ``parse(_:fileName:)``: a file that parsed can always be verified against.
    private let crypto: LibCrypto

    /// The usernames in the file, sorted.
    public var usernames: [String] { entries.keys.sorted() }

    /// Reads and parses the password file at `path`.
    public static func load(path: String) throws(AuthError) -> PasswordFile {
        try parse(try readTextFile(path), fileName: path)
    }

    /// Parses password file text; `fileName` is used in error messages.
    public static func parse(_ text: String, fileName: String) throws(AuthError) -> PasswordFile {
        let crypto = try loadLibCrypto(fileName: fileName)
        var entries: [String: Entry] = [:]
        var iterationCounts: [Int: Int] = [:]
        for (number, raw) in numberedLines(text) {
            let line = raw.trimmingBlanks
            if line.isEmpty || line.first == "#" { continue }
            func fail(_ message: String) -> AuthError {
                AuthError(.badPasswordLine, file: fileName, line: number, message)
            }
            guard let colon = line.firstIndex(of: ":") else {
                throw fail("expected USERNAME:PASSWORD_HASH (no ':' found)")
            }
            let username = String(line[..<colon].trimmingBlanks)
            let hashText = line[line.index(after: colon)...].trimmingBlanks
            guard !username.isEmpty else { throw fail("empty username") }
            let entry: Entry
            do {
                entry = try Self.decodeHash(hashText)
            } catch let problem {
                throw fail("user '\(username)': \(problem.message)")
            }
            if case .pbkdf2SHA512(let iterations) = entry.scheme { iterationCounts[iterations, default: 0] += 1 }
            entries[username] = entry  // last wins, as in Mosquitto (see the note at the top)
        }
        // The decoy costs what a typical real entry costs.
        let typical = iterationCounts.max { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) }?.key
        let decoy = Entry(
            scheme: .pbkdf2SHA512(iterations: typical ?? defaultIterations),
            salt: randomBytes(saltLength, crypto),
            hash: randomBytes(hashLength, crypto)
        )
        return PasswordFile(entries: entries, decoy: decoy, crypto: crypto)
    }

    /// Whether `password` is the password of `username`.
    ///
    /// SLOW (PBKDF2): never call this on an event loop. Hashes are compared in constant time, and an unknown
    /// user costs about one hash too, so the time taken does not reveal which users exist.
    public func verify(username: String, password: [UInt8]) -> Bool {
        let known = entries[username]
        let entry = known ?? decoy
        let computed = Self.digest(password: password, scheme: entry.scheme, salt: entry.salt, crypto)
        let same =
            computed.count == entry.hash.count
            && computed.withUnsafeBytes { a in
                entry.hash.withUnsafeBytes { b in crypto.CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
            }
        // Mosquitto hashes the password as a C string; one with a NUL byte never matches here.
        return known != nil && same && !password.contains(0)
    }

    /// A password file line `username:$7$ITERATIONS$SALT$HASH` with a fresh random 12-byte salt, as
    /// `mosquitto_passwd` 2.0 writes it. Slow for large `iterations`. Throws only when libcrypto cannot be loaded.
    public static func hashLine(
        username: String,
        password: String,
        iterations: Int = defaultIterations
    ) throws(LibCryptoUnavailable) -> String {
        precondition(iterations >= 1, "PBKDF2 needs at least one iteration")
        let crypto = try LibCrypto.load()
        let salt = randomBytes(saltLength, crypto)
        let hash = digest(
            password: Array(password.utf8),
            scheme: .pbkdf2SHA512(iterations: iterations),
            salt: salt,
            crypto
        )
        return "\(username):$7$\(iterations)$\(Base64.encode(salt))$\(Base64.encode(hash))"
    }

    // MARK: - Decoding and hashing

    struct HashProblem: Error {
        var message: String
    }

    /// Decodes `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`. Problems never quote the hash text.
    static func decodeHash(_ text: Substring) throws(HashProblem) -> Entry {
        if text.isEmpty { throw HashProblem(message: "missing password hash") }
        let fields = text.split(separator: "$", omittingEmptySubsequences: false)
        // fields[0] is the empty text before the first '$'.
        guard fields.count >= 2, fields[0].isEmpty else {
            throw HashProblem(
                message: "password is not hashed (expected $7$… or $6$…; use 'sluice passwd' or 'mosquitto_passwd -U')"
            )
        }
        let scheme: Entry.Scheme
        let rest: ArraySlice<Substring>
        switch fields[1] {
        case "7":
            guard fields.count == 5 else {
                throw HashProblem(
                    message: "a $7$ hash needs 4 fields: $7$ITERATIONS$SALT$HASH, found \(fields.count - 1)"
                )
            }
            guard let iterations = Int(fields[2]), iterations >= 1, iterations <= 100_000_000 else {
                throw HashProblem(message: "iteration count is not a whole number from 1 to 100000000")
            }
            scheme = .pbkdf2SHA512(iterations: iterations)
            rest = fields[3...4]
        case "6":
            guard fields.count == 4 else {
                throw HashProblem(message: "a $6$ hash needs 3 fields: $6$SALT$HASH, found \(fields.count - 1)")
            }
            scheme = .sha512
            rest = fields[2...3]
        case "argon2id":
            throw HashProblem(message: "argon2id hashes are not supported (use $7$ PBKDF2-SHA512)")
        default:
            throw HashProblem(message: "unknown hash type (expected $7$ PBKDF2-SHA512 or $6$ SHA-512)")
        }
        guard let salt = Base64.decode(rest[rest.startIndex]) else {
            throw HashProblem(message: "salt is not valid base64")
        }
        guard salt.count == saltLength || salt.count == 64 else {
            throw HashProblem(message: "salt is \(salt.count) bytes; Mosquitto uses 12 (or 64)")
        }
        guard let hash = Base64.decode(rest[rest.startIndex + 1]) else {
            throw HashProblem(message: "hash is not valid base64")
        }
        guard hash.count == hashLength else {
            throw HashProblem(message: "hash is \(hash.count) bytes, expected \(hashLength)")
        }
        return Entry(scheme: scheme, salt: salt, hash: hash)
    }

    /// libcrypto, or an error naming `fileName` and saying which package to install.
    static func loadLibCrypto(fileName: String) throws(AuthError) -> LibCrypto {
        do {
            return try LibCrypto.load()
        } catch {
            throw AuthError(.libcryptoUnavailable, file: fileName, line: nil, "cannot hash passwords: \(error)")
        }
    }

    static func digest(password: [UInt8], scheme: Entry.Scheme, salt: [UInt8], _ crypto: LibCrypto) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: hashLength)
        switch scheme {
        case .pbkdf2SHA512(let iterations):
            let ok = password.withUnsafeBufferPointer { pw in
                salt.withUnsafeBufferPointer { s in
                    out.withUnsafeMutableBufferPointer { o in
                        pw.withMemoryRebound(to: CChar.self) { pwChars in
                            crypto.PKCS5_PBKDF2_HMAC(
                                pwChars.baseAddress,
                                Int32(pw.count),
                                s.baseAddress,
                                Int32(s.count),
                                Int32(iterations),
                                crypto.EVP_sha512(),
                                Int32(o.count),
                                o.baseAddress
                            )
                        }
                    }
                }
            }
            precondition(ok == 1, "PKCS5_PBKDF2_HMAC failed")
        case .sha512:
            let input = password + salt
            var length: UInt32 = 0
            let ok = input.withUnsafeBytes { i in
                out.withUnsafeMutableBufferPointer { o in
                    crypto.EVP_Digest(i.baseAddress, i.count, o.baseAddress, &length, crypto.EVP_sha512(), nil)
                }
            }
            precondition(ok == 1 && length == UInt32(hashLength), "EVP_Digest(SHA-512) failed")
        }
        return out
    }

    static func randomBytes(_ count: Int, _ crypto: LibCrypto) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { crypto.RAND_bytes($0.baseAddress, Int32($0.count)) }
        precondition(ok == 1, "RAND_bytes failed: no secure randomness available")
        return bytes
    }
}
