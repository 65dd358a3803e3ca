import Foundation
import NIOSSL
import SluiceConfig

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
        let chain = try loadCertificates(settings.certFile, role: "certfile")
        let key = try loadKey(settings.keyFile, role: "keyfile")
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = try minimumVersion(settings.tlsVersion, option: "tls_version")
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
        return try makeContext(configuration, certFile: settings.certFile, keyFile: settings.keyFile, ciphers: settings.ciphers)
    }

    /// The client context for a bridge connection, and whether the caller must verify the remote hostname
    /// (pass `serverHostname` to `NIOSSLClientHandler` when true).
    static func bridgeClient(_ bridge: BridgeConfig) throws -> (context: NIOSSLContext, verifyHostname: Bool) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = try minimumVersion(bridge.bridgeTLSVersion, option: "bridge_tls_version")
        configuration.certificateVerification = bridge.bridgeInsecure ? .noHostnameVerification : .fullVerification
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
        return (context, !bridge.bridgeInsecure)
    }

    /// The subject common name of a peer certificate (the first CN, as Mosquitto's `use_identity_as_username`
    /// takes it), or nil when the certificate has none.
    static func identity(of peer: NIOSSLCertificate) -> String? {
        guard let der = try? peer.toDERBytes() else { return nil }
        return DERSubject.firstCommonName(certificateDER: der)
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
    private struct Element {
        var tag: UInt8
        var content: ArraySlice<UInt8>
        var end: Int
    }

    private static func read(_ bytes: [UInt8], at start: Int, limit: Int) -> Element? {
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
    private static func children(_ bytes: [UInt8], of element: Element) -> [Element] {
        var result: [Element] = []
        var index = element.content.startIndex
        while index < element.content.endIndex, let child = read(bytes, at: index, limit: element.content.endIndex) {
            result.append(child)
            index = child.end
        }
        return result
    }

    static func firstCommonName(certificateDER bytes: [UInt8]) -> String? {
        guard let certificate = read(bytes, at: 0, limit: bytes.count), certificate.tag == 0x30,
            let tbs = children(bytes, of: certificate).first, tbs.tag == 0x30
        else { return nil }
        var fields = children(bytes, of: tbs)
        if fields.first?.tag == 0xA0 { fields.removeFirst() }  // [0] version
        // serialNumber, signature, issuer, validity, subject
        guard fields.count >= 5 else { return nil }
        let subject = fields[4]
        guard subject.tag == 0x30 else { return nil }
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
