import CLibcrypto
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import SluiceAuth
import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// A listener's `crlfile`: the certificate revocation lists (PEM, one or more) that client certificates are
/// checked against, as Mosquitto's `crlfile` does.
///
/// NIOSSL's BoringSSL has no way to take a CRL into its verifier, so the lists are parsed with the system's
/// libcrypto (dlopen'd for the first crlfile: ``LibCrypto``) and consulted from NIOSSL's per-certificate
/// verification callback: a certificate whose issuer has a list here and whose serial is on it is refused
/// during the handshake. As in OpenSSL (and so Mosquitto), a list past its nextUpdate or before its
/// lastUpdate refuses every certificate it covers.
/// Each list's signature is verified at load against the CA certificates of `cafile`/`capath`.
///
/// As with OpenSSL's `X509_V_FLAG_CRL_CHECK`, an end-entity certificate whose issuer has no list in the file is
/// refused; CA certificates of the chain are checked too when their issuer has a list (OpenSSL checks only the leaf).
///
/// SIGHUP reads the file again (``reload()``); a file that cannot be used then keeps the lists in force.
final class RevocationList: Sendable {
    let path: String
    private let caFile: String?
    private let caPath: String?
    private let current: NIOLockedValueBox<LoadedLists>

    /// Loads `path`; `caFile`/`caPath` hold the CAs whose signatures the lists must carry.
    init(path: String, caFile: String?, caPath: String?) throws {
        self.path = path
        self.caFile = caFile
        self.caPath = caPath
        current = NIOLockedValueBox(try LoadedLists(path: path, caFile: caFile, caPath: caPath))
    }

    /// Reads the file again; on an error the lists in force stay and the error says why.
    func reload() throws {
        let fresh = try LoadedLists(path: path, caFile: caFile, caPath: caPath)
        current.withLockedValue { $0 = fresh }
    }

    /// Why `certificate` must be refused, or nil when no list here revokes it.
    func refusal(of certificate: NIOSSLCertificate) -> String? {
        // The lists in force when this certificate is checked, kept alive through the check by a reload meanwhile.
        let loaded = current.withLockedValue { $0 }
        return withExtendedLifetime(loaded) { Self.refusal(of: certificate, lists: loaded.lists, loaded.crypto) }
    }

    private static func refusal(of certificate: NIOSSLCertificate, lists: [OpaquePointer], _ crypto: LibCrypto)
        -> String?
    {
        guard let der = try? certificate.toDERBytes() else { return "the certificate cannot be encoded" }
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return crypto.d2i_X509(nil, &cursor, buffer.count)
        }
        guard let x509 = parsed else {
            crypto.ERR_clear_error()
            return "the certificate cannot be parsed"
        }
        defer { crypto.X509_free(x509) }
        let issuer = crypto.X509_get_issuer_name(x509)
        let subject = { Self.text(crypto.X509_get_subject_name(x509), crypto) }
        let issuerText = { Self.text(issuer, crypto) }
        let isIssuers = { (crl: OpaquePointer) in crypto.X509_NAME_cmp(crypto.X509_CRL_get_issuer(crl), issuer) == 0 }
        // X509_check_ca: 0 for an end-entity certificate, which must be covered by its issuer's list.
        if crypto.X509_check_ca(x509) == 0, !lists.contains(where: isIssuers) {
            return "certificate \(subject()) has no revocation list of its issuer \(issuerText()) in the crlfile"
        }
        for crl in lists where isIssuers(crl) {
            if let next = crypto.X509_CRL_get0_nextUpdate(crl), crypto.X509_cmp_current_time(next) < 0 {
                return "the revocation list of \(issuerText()) has expired (its nextUpdate has passed)"
            }
            if let last = crypto.X509_CRL_get0_lastUpdate(crl), crypto.X509_cmp_current_time(last) > 0 {
                return "the revocation list of \(issuerText()) is not valid yet (its lastUpdate is ahead)"
            }
            var entry: OpaquePointer?
            if crypto.X509_CRL_get0_by_cert(crl, &entry, x509) == 1 {
                return "certificate \(subject()) serial \(Self.serial(x509, crypto)) is revoked"
            }
        }
        return nil
    }

    /// NIOSSL's per-certificate callback for a listener: refuses a revoked certificate, logging why.
    func verificationCallback(log: @escaping @Sendable (String) -> Void) -> NIOSSLVerificationCallback {
        { result, certificate in
            guard result == .certificateVerified else { return result }
            guard let why = self.refusal(of: certificate) else { return .certificateVerified }
            log(why)
            return .failed
        }
    }

    // MARK: - OpenSSL helpers

    fileprivate static func loadCertificates(caFile: String?, caPath: String?, _ crypto: LibCrypto) -> [OpaquePointer] {
        var files: [String] = caFile.map { [$0] } ?? []
        if let caPath, let names = try? FileSystem.directoryEntries(caPath) {
            files += names.filter { !$0.hasPrefix(".") }.map { caPath + "/" + $0 }
        }
        var certificates: [OpaquePointer] = []
        for file in files {
            guard let bio = crypto.BIO_new_file(file, "r") else { continue }
            while let certificate = crypto.PEM_read_bio_X509(bio, nil, nil, nil) { certificates.append(certificate) }
            _ = crypto.BIO_free(bio)
        }
        crypto.ERR_clear_error()
        return certificates
    }

    fileprivate static func text(_ name: OpaquePointer?, _ crypto: LibCrypto) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard let name, crypto.X509_NAME_oneline(name, &buffer, Int32(buffer.count)) != nil else { return "(unnamed)" }
        return string(buffer)
    }

    fileprivate static func serial(_ x509: OpaquePointer, _ crypto: LibCrypto) -> String {
        guard let number = crypto.ASN1_INTEGER_to_BN(crypto.X509_get0_serialNumber(x509), nil) else { return "?" }
        defer { crypto.BN_free(number) }
        guard let hex = crypto.BN_bn2hex(number) else { return "?" }
        defer { crypto.CRYPTO_free(hex, nil, 0) }
        return String(cString: hex)
    }

    fileprivate static func errorText(_ code: UInt, _ crypto: LibCrypto) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        crypto.ERR_error_string_n(code, &buffer, buffer.count)
        return string(buffer)
    }

    fileprivate static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The lists of one reading of a crlfile. Immutable; OpenSSL's lookups on a loaded X509_CRL are thread-safe
/// (it sorts the revoked entries under the list's own lock).
private final class LoadedLists: @unchecked Sendable {
    let lists: [OpaquePointer]
    let crypto: LibCrypto

    init(path: String, caFile: String?, caPath: String?) throws {
        let crypto: LibCrypto
        do {
            crypto = try LibCrypto.load()
        } catch {
            throw TLSContextError(file: path, "crlfile: \(error)")
        }
        self.crypto = crypto
        var lists: [OpaquePointer] = []
        guard let bio = crypto.BIO_new_file(path, "r") else {
            crypto.ERR_clear_error()
            throw TLSContextError(file: path, "crlfile: cannot read: \(String(cString: strerror(errno)))")
        }
        defer { _ = crypto.BIO_free(bio) }
        while let crl = crypto.PEM_read_bio_X509_CRL(bio, nil, nil, nil) { lists.append(crl) }
        // The loop ends on end of file (PEM_R_NO_START_LINE) or on a damaged list.
        let endError = crypto.ERR_peek_last_error()
        crypto.ERR_clear_error()
        let cleanEnd = ERR_GET_LIB(endError) == ERR_LIB_PEM && ERR_GET_REASON(endError) == PEM_R_NO_START_LINE
        guard cleanEnd || endError == 0, !lists.isEmpty else {
            lists.forEach { crypto.X509_CRL_free($0) }
            throw TLSContextError(
                file: path,
                lists.isEmpty
                    ? "crlfile: no PEM certificate revocation list (-----BEGIN X509 CRL-----) in the file"
                    : "crlfile: list \(lists.count + 1) is damaged (\(RevocationList.errorText(endError, crypto)))"
            )
        }
        let authorities = RevocationList.loadCertificates(caFile: caFile, caPath: caPath, crypto)
        defer { authorities.forEach { crypto.X509_free($0) } }
        for (index, crl) in lists.enumerated() {
            let issuer = crypto.X509_CRL_get_issuer(crl)
            let signer = authorities.first { crypto.X509_NAME_cmp(crypto.X509_get_subject_name($0), issuer) == 0 }
            let verified = signer.map { crypto.X509_CRL_verify(crl, crypto.X509_get0_pubkey($0)) == 1 } ?? false
            crypto.ERR_clear_error()
            guard verified else {
                let why = signer == nil ? "its issuer is not a CA in cafile/capath" : "its signature does not verify"
                // The issuer name belongs to the list: worded before the lists are freed.
                let issuerText = RevocationList.text(issuer, crypto)
                let message = "crlfile: list \(index + 1), issued by \(issuerText), cannot be used: \(why)"
                lists.forEach { crypto.X509_CRL_free($0) }
                throw TLSContextError(file: path, message)
            }
        }
        self.lists = lists
    }

    deinit { lists.forEach { crypto.X509_CRL_free($0) } }
}

/// A TLS listener's context and, with `crlfile`, the revocation lists its client certificates are checked against.
struct ListenerTLS: Sendable {
    let context: NIOSSLContext
    let revocation: RevocationList?
    let logger: Logger

    /// The TLS handler for one accepted connection.
    func serverHandler(remote: String) throws -> NIOSSLServerHandler {
        guard let revocation else { return NIOSSLServerHandler(context: context) }
        let logger = self.logger
        // The per-certificate callback is the only NIOSSL hook that keeps BoringSSL's own chain verification
        // (the custom callback replaces it); NIOSSL marks it deprecated but supports it.
        return try NIOSSLServerHandler(
            context: context,
            verificationCallback: revocation.verificationCallback { why in
                logger.notice("client certificate refused", metadata: ["remote": "\(remote)", "reason": "\(why)"])
            }
        )
    }
}

/// What `sluice check` says about a listener's `crlfile`, loading it as `sluice run` will.
public enum RevocationListCheck {
    /// nil when the listener has no crlfile or `run` would load it.
    public static func problem(_ settings: TLSSettings) -> String? {
        guard let path = settings.crlFile else { return nil }
        do {
            _ = try RevocationList(path: path, caFile: settings.caFile, caPath: settings.caPath)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
