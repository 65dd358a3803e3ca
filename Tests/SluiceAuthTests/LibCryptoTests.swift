import Testing

@testable import SluiceAuth

/// libcrypto is dlopen'd on first use (LibCrypto.swift): a missing or wrong library is a typed error naming
/// the cause and the package to install, never a crash.
@Suite struct LibCryptoTests {
    @Test func missingLibraryIsReportedWithDlerrorsText() {
        do throws(LibCryptoUnavailable) {
            try LibCrypto.probe(soname: "libsluice-no-such-crypto.so.3")
            Issue.record("a missing library loaded")
        } catch {
            #expect(error.soname == "libsluice-no-such-crypto.so.3")
            #expect(error.reason.contains("libsluice-no-such-crypto.so.3"), "\(error.reason)")
            #expect(error.reason.contains("No such file"), "\(error.reason)")
            #expect(
                error.description.hasPrefix("libsluice-no-such-crypto.so.3 could not be loaded: ")
                    && error.description.hasSuffix("; install libssl3")
            )
        }
    }

    /// A library that loads but is not libcrypto: the first function looked up is missing.
    @Test func libraryWithoutTheFunctionsIsReported() {
        do throws(LibCryptoUnavailable) {
            try LibCrypto.probe(soname: "libc.so.6")
            Issue.record("libc passed for libcrypto")
        } catch {
            #expect(error.reason.contains("undefined symbol: ASN1_INTEGER_to_BN"), "\(error.reason)")
        }
    }

    @Test func theSystemLibraryLoadsAndWorks() throws {
        try LibCrypto.probe(soname: "libcrypto.so.3")
        let crypto = try LibCrypto.load()
        // SHA-512 of "abc" (FIPS 180-4), through the table.
        var digest = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        let abc = Array("abc".utf8)
        let ok = crypto.EVP_Digest(abc, abc.count, &digest, &length, crypto.EVP_sha512(), nil)
        #expect(ok == 1 && length == 64)
        #expect(digest.prefix(4) == [0xdd, 0xaf, 0x35, 0xa1])
    }
}
