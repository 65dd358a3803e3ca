public import CLibcrypto

/// libcrypto (OpenSSL 3), loaded with dlopen the first time a password file or a `crlfile` needs it rather
/// than at start-up, where the loader's relocations cost 1.45 MB of idle RSS (BENCHMARKS.md). A value of this
/// type exists only once the library and every function Sluice calls were found, so holding one is the proof
/// that calls through it are safe: `crypto.X509_free(certificate)`.
@dynamicMemberLookup
public struct LibCrypto: @unchecked Sendable {
    // Sendable: the table is written once, under pthread_once, before any caller sees it, and never unloaded.
    private let table: UnsafePointer<sluice_crypto_functions>

    /// The library, loaded on the first call in the process (thread-safe); later calls return the same table
    /// or the same error.
    public static func load() throws(LibCryptoUnavailable) -> LibCrypto {
        guard let table = sluice_crypto_load() else {
            throw LibCryptoUnavailable(
                soname: SLUICE_CRYPTO_SONAME,
                reason: String(cString: sluice_crypto_load_error())
            )
        }
        return LibCrypto(table: table)
    }

    /// Tries `soname` on its own, leaving the process's table alone: how tests see a missing or wrong library.
    static func probe(soname: String) throws(LibCryptoUnavailable) {
        let scratch = UnsafeMutablePointer<sluice_crypto_functions>.allocate(capacity: 1)
        defer { scratch.deallocate() }
        var error = [CChar](repeating: 0, count: 512)
        guard sluice_crypto_load_from(soname, scratch, &error, error.count) == 1 else {
            let reason = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw LibCryptoUnavailable(soname: soname, reason: reason)
        }
    }

    /// The libcrypto function of that name.
    public subscript<Function>(dynamicMember function: KeyPath<sluice_crypto_functions, Function>) -> Function {
        table.pointee[keyPath: function]
    }
}

/// libcrypto could not be loaded, or lacks a function Sluice calls.
public struct LibCryptoUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    /// The library asked for (libcrypto.so.3).
    public var soname: String
    /// dlerror's text.
    public var reason: String

    public var description: String { "\(soname) could not be loaded: \(reason); install libssl3" }
}
