import Logging
import NIOCore
import NIOSSL
import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// Builds swift-nio-ssl contexts from `gateway.conf`'s TLS options, with Mosquitto's meaning.
///
/// - Listeners: TLS 1.2 at least (`tls_version tlsv1.3` raises it); `ciphers` is the OpenSSL cipher list for
///   TLS ≤ 1.2; `require_certificate true` makes clients present a certificate that chains to `cafile`/`capath`,
///   otherwise no client certificate is requested.
/// - Bridges: the remote's certificate is verified against `bridge_cafile`/`bridge_capath` (the system trust store
///   when neither is set), with hostname verification unless `bridge_insecure true`.
///
/// NIOSSL's errors do not say which file they are about; every failure here is a ``TLSContextError`` that does.
enum TLSContexts {
    /// The context for a TLS listener.
    static func server(_ settings: TLSSettings) throws -> NIOSSLContext {
        let certificates = try loadCertificates(settings.certFile, role: "certfile")
        // As OpenSSL (and so Mosquitto) does: a certfile holding only the leaf is completed from the cafile.
        // An unreadable cafile is only an error when it verifies clients (below), as before.
        let caCertificates = settings.caFile.flatMap { try? NIOSSLCertificate.fromPEMFile($0) } ?? []
        let chain = servedChain(certificates, caCertificates: caCertificates)
        let key = try loadKey(settings.keyFile, role: "keyfile")
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = try minimumVersion(settings.tlsVersion, option: "tls_version")
        configuration.shutdownTimeout = serverShutdownTimeout
        if let ciphers = settings.ciphers {
            if let problem = CipherList.problem(ciphers) {
                throw TLSContextError(file: nil, "ciphers '\(ciphers)': \(problem)")
            }
            configuration.cipherSuites = ciphers
        }
        if settings.requireCertificate {
            guard settings.caFile != nil || settings.caPath != nil else {
                throw TLSContextError(
                    file: settings.certFile,
                    "require_certificate true needs cafile or capath to verify client certificates"
                )
            }
            // Client certificates are checked against the CAs; a client has no hostname to verify
            // (.fullVerification would fail every handshake with failedToValidateHostname).
            configuration.certificateVerification = .noHostnameVerification
            try applyTrustRoots(caFile: settings.caFile, caPath: settings.caPath, to: &configuration, prefix: "")
        } else {
            configuration.certificateVerification = .none
        }
        return try makeContext(
            configuration,
            certFile: settings.certFile,
            keyFile: settings.keyFile,
            ciphers: settings.ciphers
        )
    }

    /// The certificates a listener sends: the certfile's, then — when the certfile holds only the leaf, as
    /// OpenSSL's automatic chain building does for Mosquitto — each CA certificate that issued the previous
    /// one, up to a self-issued root or as far as `caCertificates` reach. Issuers are matched by subject
    /// name (DER bytes); the client verifies the signatures.
    static func servedChain(_ certificates: [NIOSSLCertificate], caCertificates: [NIOSSLCertificate])
        -> [NIOSSLCertificate]
    {
        guard certificates.count == 1, let leaf = certificates.first else { return certificates }
        var chain = [leaf]
        var unused = caCertificates.compactMap { certificate in
            (try? certificate.toDERBytes()).flatMap(DERSubject.names(certificateDER:)).map { (certificate, $0) }
        }
        guard var current = (try? leaf.toDERBytes()).flatMap(DERSubject.names(certificateDER:)) else { return chain }
        // Each step uses up one CA certificate, so this ends.
        while current.issuer != current.subject,
            let index = unused.firstIndex(where: { $0.1.subject == current.issuer })
        {
            let (certificate, names) = unused.remove(at: index)
            if certificate == leaf { break }
            chain.append(certificate)
            current = names
        }
        return chain
    }

    /// The name to send as SNI and verify the remote's certificate against: the host, unless it is an IP literal.
    /// SNI cannot carry an address (RFC 6066 §3); with no name, NIOSSL's `.fullVerification` checks the
    /// certificate's IP SANs against the address connected to, as Mosquitto does.
    static func serverHostname(forBridgeHost host: String) -> String? {
        var ipv4 = in_addr()
        var ipv6 = in6_addr()
        if inet_pton(AF_INET, host, &ipv4) == 1 || inet_pton(AF_INET6, host, &ipv6) == 1 { return nil }
        return host
    }

    /// A bridge's TLS failure in words a user acts on: NIOSSL's hostname failure names neither the host nor
    /// (for an IP address, verified without a name) what was missing.
    static func explainBridgeFailure(_ error: any Error, host: String) -> any Error {
        guard let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname else { return error }
        let wanted = serverHostname(forBridgeHost: host) == nil ? "IP:\(host)" : "DNS:\(host)"
        return TLSContextError(
            file: nil,
            "the remote's certificate does not name \(wanted) in its subjectAltName (\(error)); refusing it"
        )
    }

    /// The client context for a bridge connection, and whether the caller must verify the remote hostname
    /// (pass `serverHostname` to `NIOSSLClientHandler` when true).
    /// The PSK suites BoringSSL has, forward-secret ones first.
    static let pskCipherSuites =
        "ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES128-CBC-SHA:ECDHE-PSK-AES256-CBC-SHA:PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA"

    /// A `psk_hint` listener: TLS 1.2 PSK suites, the client's identity looked up in `psk_file`.
    static func pskServer(hint: String, keysFile: String?) throws -> NIOSSLContext {
        guard let keysFile else { throw TLSContextError(file: nil, "psk_hint needs psk_file (identity:hexkey lines)") }
        let keys = try preSharedKeys(keysFile)
        var configuration = TLSConfiguration.makePreSharedKeyConfiguration()
        configuration.pskHint = hint
        configuration.pskServerProvider = { context in
            guard let key = keys[context.clientIdentity] else {
                throw TLSContextError(file: keysFile, "unknown PSK identity")
            }
            return PSKServerIdentityResponse(key: NIOSSLSecureBytes(key))
        }
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv12
        configuration.cipherSuites = pskCipherSuites
        configuration.shutdownTimeout = serverShutdownTimeout
        return try NIOSSLContext(configuration: configuration)
    }

    /// How long a closing client connection waits for the client's close_notify (NIOSSL's default is
    /// 5 s). Ours is sent either way; a client that never answers must not hold a SIGTERM that long.
    static let serverShutdownTimeout = TimeAmount.seconds(1)

    /// Mosquitto's psk_file: `identity:key` per line, the key in hexadecimal; `#` comments and blank lines.
    static func preSharedKeys(_ path: String) throws -> [String: [UInt8]] {
        guard let text = try? FileSystem.readText(path) else {
            throw TLSContextError(file: path, "psk_file cannot be read")
        }
        var keys: [String: [UInt8]] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingBlanks()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = trimmed.lastIndex(of: ":"),
                let key = hexBytes(String(trimmed[trimmed.index(after: colon)...])),
                !key.isEmpty, colon != trimmed.startIndex
            else {
                throw TLSContextError(file: path, "line \(index + 1): expected identity:hexkey")
            }
            keys[String(trimmed[..<colon])] = key
        }
        return keys
    }

    static func bridgeClient(_ bridge: BridgeConfig) throws -> (context: NIOSSLContext, verifyHostname: Bool) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = try minimumVersion(bridge.bridgeTLSVersion, option: "bridge_tls_version")
        configuration.certificateVerification = bridge.bridgeInsecure ? .noHostnameVerification : .fullVerification
        if let alpn = bridge.bridgeALPN { configuration.applicationProtocols = [alpn] }
        if let identity = bridge.bridgeIdentity, let key = bridge.bridgePSK {
            // BoringSSL offers external pre-shared keys through TLS 1.2's PSK cipher suites only.
            let secret = NIOSSLSecureBytes(key)
            configuration.pskClientProvider = { _ in PSKClientIdentityResponse(key: secret, identity: identity) }
            configuration.maximumTLSVersion = .tlsv12
            configuration.cipherSuites = TLSContexts.pskCipherSuites
            configuration.certificateVerification = .none  // no certificate: the shared key authenticates the remote
        }
        if bridge.bridgeCAFile != nil || bridge.bridgeCAPath != nil {
            try applyTrustRoots(
                caFile: bridge.bridgeCAFile,
                caPath: bridge.bridgeCAPath,
                to: &configuration,
                prefix: "bridge_"
            )
        } else {
            configuration.trustRoots = .default
        }
        switch (bridge.bridgeCertFile, bridge.bridgeKeyFile) {
        case (let certFile?, let keyFile?):
            configuration.certificateChain = try loadCertificates(certFile, role: "bridge_certfile").map {
                .certificate($0)
            }
            configuration.privateKey = .privateKey(try loadKey(keyFile, role: "bridge_keyfile"))
        case (let certFile?, nil):
            throw TLSContextError(file: certFile, "bridge_certfile is set but bridge_keyfile is not")
        case (nil, let keyFile?):
            throw TLSContextError(file: keyFile, "bridge_keyfile is set but bridge_certfile is not")
        case (nil, nil):
            break
        }
        let context = try makeContext(
            configuration,
            certFile: bridge.bridgeCertFile,
            keyFile: bridge.bridgeKeyFile,
            ciphers: nil
        )
        return (context, !bridge.bridgeInsecure && bridge.bridgeIdentity == nil)
    }

    /// The subject common name of a peer certificate (the first CN, as Mosquitto's `use_identity_as_username`
    /// takes it), or nil when the certificate has none.
    static func identity(of peer: NIOSSLCertificate) -> String? {
        guard let der = try? peer.toDERBytes() else { return nil }
        return DERSubject.firstCommonName(certificateDER: der)
    }

    /// `use_subject_as_username`: the certificate's subject as Mosquitto gives it (RFC 2253, OpenSSL's form).
    static func subject(of peer: NIOSSLCertificate) -> String? {
        guard let der = try? peer.toDERBytes() else { return nil }
        return DERSubject.rfc2253(certificateDER: der)
    }

    // MARK: - Loading files

    private static func loadCertificates(_ path: String, role: String) throws -> [NIOSSLCertificate] {
        try checkReadable(path, role: role)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw TLSContextError(file: path, "\(role): not a PEM certificate file (\(error))")
        }
        guard !certificates.isEmpty else { throw TLSContextError(file: path, "\(role): no certificate in the file") }
        return certificates
    }

    private static func loadKey(_ path: String, role: String) throws -> NIOSSLPrivateKey {
        try checkReadable(path, role: role)
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw TLSContextError(
                file: path,
                "\(role): not an unencrypted PEM private key (\(error)); encrypted keys are not supported"
            )
        }
    }

    private static func applyTrustRoots(
        caFile: String?,
        caPath: String?,
        to configuration: inout TLSConfiguration,
        prefix: String
    ) throws {
        var roots: [NIOSSLCertificate] = []
        if let caFile { roots += try loadCertificates(caFile, role: "\(prefix)cafile") }
        if let caPath {
            var isDirectory = stat()
            guard stat(caPath, &isDirectory) == 0 else {
                throw TLSContextError(file: caPath, "\(prefix)capath: \(String(cString: strerror(errno)))")
            }
            guard (isDirectory.st_mode & S_IFMT) == S_IFDIR else {
                throw TLSContextError(file: caPath, "\(prefix)capath: not a directory")
            }
        }
        switch (roots.isEmpty, caPath) {
        case (false, let caPath?):
            // NIOSSL loads additional `.file` roots as one PEM file, so the directory must be the main root.
            configuration.trustRoots = .file(caPath)
            configuration.additionalTrustRoots = [.certificates(roots)]
        case (false, nil):
            configuration.trustRoots = .certificates(roots)
        case (true, let caPath?):
            configuration.trustRoots = .file(caPath)
        case (true, nil):
            break
        }
    }

    private static func checkReadable(_ path: String, role: String) throws {
        if access(path, R_OK) != 0 {
            throw TLSContextError(file: path, "\(role): cannot read: \(String(cString: strerror(errno)))")
        }
    }

    private static func minimumVersion(_ value: String, option: String) throws -> TLSVersion {
        switch value.lowercased() {
        case "tlsv1.3": return .tlsv13
        case "tlsv1.2": return .tlsv12
        case "tlsv1.1": return .tlsv11
        default: throw TLSContextError(file: nil, "\(option) '\(value)': expected tlsv1.3, tlsv1.2 or tlsv1.1")
        }
    }

    private static func makeContext(
        _ configuration: TLSConfiguration,
        certFile: String?,
        keyFile: String?,
        ciphers: String?
    ) throws -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            var what = "cannot build a TLS context (\(error))"
            if let ciphers { what += "; check ciphers '\(ciphers)'" }
            if let keyFile { what += "; check that keyfile \(keyFile) is the key of this certificate" }
            throw TLSContextError(file: certFile, what)
        }
    }
}

/// What a listener logs when a TLS connection fails.
enum TLSFailure {
    /// nil when `error` is not a TLS error. `handshake` is false for a peer that closed the TCP connection
    /// after a good handshake without sending close_notify — routine for MQTT clients, so not worth a notice.
    static func classify(_ error: any Error) -> (handshake: Bool, reason: String)? {
        if let error = error as? NIOSSLError, case .uncleanShutdown = error {
            return (false, "peer closed the connection without TLS close_notify")
        }
        guard error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError else { return nil }
        return (true, reason(String(describing: error)))
    }

    /// Logs `error` if it is a TLS error (a failed handshake as a notice) and says whether it was one.
    /// `alert`: what ``TLSAlertRecorder`` saw the client send in the clear, which NIOSSL's error cannot say.
    static func log(_ error: any Error, remote: String, alert: String? = nil, to logger: Logger) -> Bool {
        guard let failure = classify(error) else { return false }
        let reason = failure.handshake ? alert.map { "peer sent TLS alert \($0)" } ?? failure.reason : failure.reason
        let metadata: Logger.Metadata = ["remote": "\(remote)", "reason": "\(reason)", "error": "\(error)"]
        if failure.handshake {
            logger.notice("TLS handshake failed", metadata: metadata)
        } else {
            logger.debug("TLS connection ended", metadata: metadata)
        }
        return true
    }

    /// The reason in a BoringSSL error stack: the peer's alert when it sent one (it says why the peer refused,
    /// e.g. `unknown_ca`), else the last BoringSSL reason code, else the whole description.
    static func reason(_ description: String) -> String {
        let tokens = description.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") })
        for prefix in ["SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_"] {
            if let alert = tokens.last(where: { $0.hasPrefix(prefix) && $0.count > prefix.count }) {
                return "peer sent TLS alert \(alert.dropFirst(prefix.count).lowercased())"
            }
        }
        let marker = "OPENSSL_internal:"
        if let range = description.lastRange(ofText: marker) {
            let code = description[range.upperBound...].prefix(while: { $0.isLetter || $0.isNumber || $0 == "_" })
            if !code.isEmpty { return code.lowercased() }
        }
        return description
    }
}

/// Remembers a TLS alert the client sends in the clear during the handshake. OpenSSL clients send the alert that
/// says why they refused the server (unknown_ca, bad_certificate, ...) unencrypted in TLS 1.3, where the server
/// expects encrypted records: BoringSSL then reports only a record-layer error (BAD_RECORD_MAC). Sits before
/// NIOSSL's handler; stops looking once the client sends encrypted data or ChangeCipherSpec.
final class TLSAlertRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private(set) var alert: String?
    private var done = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return context.fireChannelRead(data) }
        inspect(unwrapInboundIn(data))
        context.fireChannelRead(data)
        // Past the handshake's plaintext: out of the way of every later read. Kept when it holds an alert.
        if done, alert == nil { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    /// Walks the TLS record headers in one read (records split across reads are skipped: best effort).
    private func inspect(_ buffer: ByteBuffer) {
        var offset = buffer.readerIndex
        let end = buffer.writerIndex
        while offset + 5 <= end, let type = buffer.getInteger(at: offset, as: UInt8.self),
            let length = buffer.getInteger(at: offset + 3, as: UInt16.self)
        {
            switch type {
            case 0x15 where length == 2:  // a plaintext alert: level, description
                if let description = buffer.getInteger(at: offset + 6, as: UInt8.self) {
                    alert = Self.name(ofAlert: description)
                    done = true
                    return
                }
            case 0x14, 0x17:  // ChangeCipherSpec or encrypted data: later alerts reach NIOSSL decrypted
                done = true
                return
            default:
                break
            }
            offset += 5 + Int(length)
        }
    }

    /// RFC 8446 §6 and RFC 5246 §7.2 alert descriptions.
    static func name(ofAlert code: UInt8) -> String {
        let names: [UInt8: String] = [
            0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
            40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
            45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
            49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
            71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
            109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
            113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
            120: "no_application_protocol",
        ]
        return names[code] ?? "alert \(code)"
    }
}

/// A TLS file or option that could not be used. The description names the file and the problem.
struct TLSContextError: Error, CustomStringConvertible {
    var file: String?
    var message: String

    init(file: String?, _ message: String) {
        self.file = file
        self.message = message
    }

    var description: String {
        guard let file else { return "TLS: \(message)" }
        return "TLS: \(file): \(message)"
    }
}

/// Just enough DER to read the subject of an X.509 certificate (RFC 5280 §4.1).
enum DERSubject {
    struct Element {
        var tag: UInt8
        var content: ArraySlice<UInt8>
        var end: Int
    }

    static func read(_ bytes: [UInt8], at start: Int, limit: Int) -> Element? {
        var index = start
        guard index + 2 <= limit else { return nil }
        let tag = bytes[index]
        index += 1
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count >= 1, count <= 4, index + count <= limit else { return nil }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard length >= 0, index + length <= limit else { return nil }
        return Element(tag: tag, content: bytes[index..<(index + length)], end: index + length)
    }

    /// Elements directly inside a constructed element.
    static func children(_ bytes: [UInt8], of element: Element) -> [Element] {
        var result: [Element] = []
        var index = element.content.startIndex
        while index < element.content.endIndex, let child = read(bytes, at: index, limit: element.content.endIndex) {
            result.append(child)
            index = child.end
        }
        return result
    }

    /// serialNumber, signature, issuer, validity, subject… of the TBSCertificate (version skipped).
    static func tbsFields(_ bytes: [UInt8]) -> [Element]? {
        guard let certificate = read(bytes, at: 0, limit: bytes.count), certificate.tag == 0x30,
            let tbs = children(bytes, of: certificate).first, tbs.tag == 0x30
        else { return nil }
        var fields = children(bytes, of: tbs)
        if fields.first?.tag == 0xA0 { fields.removeFirst() }  // [0] version
        guard fields.count >= 5, fields[2].tag == 0x30, fields[4].tag == 0x30 else { return nil }
        return fields
    }

    /// The DER content of the issuer and subject names, or nil when the certificate cannot be read.
    static func names(certificateDER bytes: [UInt8]) -> (issuer: [UInt8], subject: [UInt8])? {
        guard let fields = tbsFields(bytes) else { return nil }
        return (Array(fields[2].content), Array(fields[4].content))
    }

    static func firstCommonName(certificateDER bytes: [UInt8]) -> String? {
        guard let fields = tbsFields(bytes) else { return nil }
        let subject = fields[4]
        let commonNameOID: [UInt8] = [0x55, 0x04, 0x03]  // 2.5.4.3
        for set in children(bytes, of: subject) where set.tag == 0x31 {
            for attribute in children(bytes, of: set) where attribute.tag == 0x30 {
                let parts = children(bytes, of: attribute)
                guard parts.count == 2, parts[0].tag == 0x06, Array(parts[0].content) == commonNameOID else { continue }
                switch parts[1].tag {
                case 0x0C, 0x13, 0x16, 0x14:  // UTF8String, PrintableString, IA5String, TeletexString
                    return String(decoding: parts[1].content, as: UTF8.self)
                case 0x1E:  // BMPString (UTF-16BE)
                    let content = Array(parts[1].content)
                    guard content.count % 2 == 0 else { return nil }
                    let units = stride(from: 0, to: content.count, by: 2).map {
                        UInt16(content[$0]) << 8 | UInt16(content[$0 + 1])
                    }
                    return String(decoding: units, as: UTF16.self)
                default:
                    return nil
                }
            }
        }
        return nil
    }
}

/// Checks an OpenSSL cipher string against the TLS ≤ 1.2 suites of swift-nio-ssl's BoringSSL before it is used:
/// NIOSSL stops the process (a precondition) when a cipher string selects nothing.
///
/// This follows OpenSSL's rule language closely enough to know whether anything is selected: `A:B` adds,
/// `A+B` intersects, `!A` removes for good, `-A` removes, `+A` and `@…` reorder. A positive name Sluice does
/// not know is an error; a negated unknown name (`!aNULL`, `!MD5`) selects nothing in BoringSSL and is accepted.
enum CipherList {
    private static let suites: [(name: String, tags: Set<String>)] = {
        let table: [(String, [String])] = [
            ("ECDHE-ECDSA-AES128-GCM-SHA256", ["kECDHE", "aECDSA", "AES128", "AESGCM", "SHA256", "HIGH"]),
            ("ECDHE-RSA-AES128-GCM-SHA256", ["kECDHE", "aRSA", "AES128", "AESGCM", "SHA256", "HIGH"]),
            ("ECDHE-ECDSA-AES256-GCM-SHA384", ["kECDHE", "aECDSA", "AES256", "AESGCM", "SHA384", "HIGH"]),
            ("ECDHE-RSA-AES256-GCM-SHA384", ["kECDHE", "aRSA", "AES256", "AESGCM", "SHA384", "HIGH"]),
            ("ECDHE-ECDSA-CHACHA20-POLY1305", ["kECDHE", "aECDSA", "CHACHA20", "HIGH"]),
            ("ECDHE-RSA-CHACHA20-POLY1305", ["kECDHE", "aRSA", "CHACHA20", "HIGH"]),
            ("ECDHE-ECDSA-AES128-SHA", ["kECDHE", "aECDSA", "AES128", "SHA1", "HIGH"]),
            ("ECDHE-RSA-AES128-SHA", ["kECDHE", "aRSA", "AES128", "SHA1", "HIGH"]),
            ("ECDHE-ECDSA-AES256-SHA", ["kECDHE", "aECDSA", "AES256", "SHA1", "HIGH"]),
            ("ECDHE-RSA-AES256-SHA", ["kECDHE", "aRSA", "AES256", "SHA1", "HIGH"]),
            ("AES128-GCM-SHA256", ["kRSA", "aRSA", "AES128", "AESGCM", "SHA256", "HIGH"]),
            ("AES256-GCM-SHA384", ["kRSA", "aRSA", "AES256", "AESGCM", "SHA384", "HIGH"]),
            ("AES128-SHA", ["kRSA", "aRSA", "AES128", "SHA1", "HIGH"]),
            ("AES256-SHA", ["kRSA", "aRSA", "AES256", "SHA1", "HIGH"]),
        ]
        return table.map { entry in
            var tags = Set(entry.1)
            tags.insert("ALL")
            if tags.contains("kECDHE") { tags.formUnion(["kEECDH", "ECDH", "ECDHE", "EECDH"]) }
            if tags.contains("kRSA") { tags.insert("RSA") }
            if tags.contains("aECDSA") { tags.insert("ECDSA") }
            if tags.contains("AES128") || tags.contains("AES256") { tags.insert("AES") }
            if tags.contains("SHA1") { tags.insert("SHA") }
            return (entry.0, tags)
        }
    }()

    private static let knownWords: Set<String> = {
        var words = Set(suites.map(\.name))
        for suite in suites { words.formUnion(suite.tags) }
        return words
    }()

    /// Why `ciphers` cannot be used, or nil when it selects at least one supported suite.
    static func problem(_ ciphers: String) -> String? {
        var selected = Set<String>()
        var banned = Set<String>()
        let elements = ciphers.split(whereSeparator: { $0 == ":" || $0 == "," || $0 == " " })
        for element in elements {
            var rule = Substring(element)
            let op = rule.first
            if op == "@" { continue }
            if op == "!" || op == "-" || op == "+" { rule = rule.dropFirst() }
            let parts = rule.split(separator: "+").map(String.init)
            let positive = op != "!" && op != "-" && op != "+"
            if let unknown = parts.first(where: { !knownWords.contains($0) }) {
                if positive { return "unknown or unsupported cipher '\(unknown)'" }
                continue
            }
            let matching = suites.filter { suite in parts.allSatisfy { $0 == suite.name || suite.tags.contains($0) } }
                .map(\.name)
            switch op {
            case "!":
                selected.subtract(matching)
                banned.formUnion(matching)
            case "-":
                selected.subtract(matching)
            case "+":
                break
            default:
                selected.formUnion(matching.filter { !banned.contains($0) })
            }
        }
        return selected.isEmpty ? "selects no supported TLS 1.2 cipher suite" : nil
    }
}
