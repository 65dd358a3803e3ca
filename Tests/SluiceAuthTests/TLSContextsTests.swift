// TLSContexts lives in SluiceServer. These tests run when the test target can import it
// (Package.swift: add "SluiceServer" and NIOSSL to SluiceAuthTests' dependencies).
#if canImport(SluiceServer) && canImport(NIOSSL) && canImport(CNIOPosix) && canImport(CNIOBoringSSL)
    import NIOSSL
    import SluiceConfig
    import Testing

    @testable import SluiceServer

    @Suite struct TLSContextsTests {
        static func tls(_ name: String) -> String { fixture("tls/" + name) }

        static func settings(cert: String = "server.pem", key: String = "server.key.pem") -> TLSSettings {
            TLSSettings(certFile: tls(cert), keyFile: tls(key))
        }

        @Test func serverContextsBuildFromFixtures() throws {
            _ = try TLSContexts.server(Self.settings())
            var strict = Self.settings()
            strict.requireCertificate = true
            strict.caFile = Self.tls("ca.pem")
            strict.tlsVersion = "tlsv1.3"
            _ = try TLSContexts.server(strict)
            var withCiphers = Self.settings()
            withCiphers.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
            _ = try TLSContexts.server(withCiphers)
        }

        @Test func missingKeyFileIsNamed() throws {
            let missing = Self.tls("no-such.key.pem")
            #expect {
                _ = try TLSContexts.server(Self.settings(key: "no-such.key.pem"))
            } throws: { error in
                "\(error)".contains(missing) && "\(error)".contains("keyfile")
            }
        }

        @Test func garbageKeyFileIsNamed() throws {
            let garbage = Self.tls("garbage.key.pem")
            #expect {
                _ = try TLSContexts.server(Self.settings(key: "garbage.key.pem"))
            } throws: { error in
                "\(error)".contains(garbage) && "\(error)".contains("private key")
            }
        }

        @Test func garbageCertificateIsNamed() throws {
            let garbage = Self.tls("garbage.key.pem")
            #expect {
                _ = try TLSContexts.server(Self.settings(cert: "garbage.key.pem"))
            } throws: { error in
                "\(error)".contains(garbage) && "\(error)".contains("certfile")
            }
        }

        @Test func mismatchedKeyIsAnError() throws {
            #expect {
                _ = try TLSContexts.server(Self.settings(key: "client.key.pem"))
            } throws: { error in
                "\(error)".contains(Self.tls("server.pem"))
            }
        }

        @Test func badOptionsAreErrors() throws {
            var noCA = Self.settings()
            noCA.requireCertificate = true
            #expect { _ = try TLSContexts.server(noCA) } throws: { "\($0)".contains("cafile") }
            var badVersion = Self.settings()
            badVersion.tlsVersion = "sslv3"
            #expect { _ = try TLSContexts.server(badVersion) } throws: { "\($0)".contains("sslv3") }
            var badCiphers = Self.settings()
            badCiphers.ciphers = "NO-SUCH-CIPHER"
            #expect { _ = try TLSContexts.server(badCiphers) } throws: { "\($0)".contains("NO-SUCH-CIPHER") }
        }

        @Test func bridgeClientContexts() throws {
            var bridge = BridgeConfig(name: "cloud")
            let system = try TLSContexts.bridgeClient(bridge)  // system trust store
            #expect(system.verifyHostname)

            bridge.bridgeCAFile = Self.tls("ca.pem")
            bridge.bridgeCertFile = Self.tls("client.pem")
            bridge.bridgeKeyFile = Self.tls("client.key.pem")
            #expect(try TLSContexts.bridgeClient(bridge).verifyHostname)

            bridge.bridgeInsecure = true
            #expect(try TLSContexts.bridgeClient(bridge).verifyHostname == false)

            var capath = BridgeConfig(name: "cloud")
            capath.bridgeCAPath = fixturesDirectory + "/tls"
            capath.bridgeTLSVersion = "tlsv1.3"
            _ = try TLSContexts.bridgeClient(capath)

            var noKey = BridgeConfig(name: "cloud")
            noKey.bridgeCertFile = Self.tls("client.pem")
            #expect { _ = try TLSContexts.bridgeClient(noKey) } throws: { "\($0)".contains("bridge_keyfile") }

            var badKey = BridgeConfig(name: "cloud")
            badKey.bridgeCertFile = Self.tls("client.pem")
            badKey.bridgeKeyFile = Self.tls("garbage.key.pem")
            #expect { _ = try TLSContexts.bridgeClient(badKey) } throws: {
                "\($0)".contains(Self.tls("garbage.key.pem")) && "\($0)".contains("bridge_keyfile")
            }

            var missingCA = BridgeConfig(name: "cloud")
            missingCA.bridgeCAFile = Self.tls("nope.pem")
            #expect { _ = try TLSContexts.bridgeClient(missingCA) } throws: {
                "\($0)".contains(Self.tls("nope.pem")) && "\($0)".contains("bridge_cafile")
            }
        }

        @Test func cipherStringsAreCheckedBeforeNIOSSLSeesThem() throws {
            #expect(CipherList.problem("HIGH:!aNULL:!MD5") == nil)
            #expect(CipherList.problem("ECDHE+AESGCM:ECDHE+CHACHA20:@STRENGTH") == nil)
            #expect(CipherList.problem("ECDHE-RSA-AES128-GCM-SHA256") == nil)
            #expect(CipherList.problem("ECDHE-RSA-AES128-GCM-SHA256:!ALL") != nil)
            #expect(CipherList.problem("!ECDHE:ECDHE") != nil)
            #expect(CipherList.problem("NO-SUCH-CIPHER") != nil)
            #expect(CipherList.problem("") != nil)
            var ok = Self.settings()
            ok.ciphers = "HIGH:!aNULL:!MD5"
            _ = try TLSContexts.server(ok)
        }

        @Test func identityIsTheSubjectCommonName() throws {
            let client = try NIOSSLCertificate.fromPEMFile(Self.tls("client.pem"))[0]
            #expect(TLSContexts.identity(of: client) == "device1")
            let server = try NIOSSLCertificate.fromPEMFile(Self.tls("server.pem"))[0]
            #expect(TLSContexts.identity(of: server) == "localhost")
            let expired = try NIOSSLCertificate.fromPEMFile(Self.tls("client-expired.pem"))[0]
            #expect(TLSContexts.identity(of: expired) == "expired-device")
        }

        static func certificates(_ name: String) throws -> [NIOSSLCertificate] {
            try NIOSSLCertificate.fromPEMFile(tls(name))
        }

        /// A leaf-only certfile is completed from the cafile up to the root, as OpenSSL does for Mosquitto.
        @Test func servedChainIsCompletedFromTheCAFile() throws {
            let leaf = try Self.certificates("chain-leaf.pem")
            let intermediate = try Self.certificates("chain-intermediate.pem")
            let root = try Self.certificates("chain-root.pem")
            // Order in the cafile does not matter; unrelated CAs are left out.
            let caFile = root + (try Self.certificates("ca.pem")) + intermediate
            #expect(TLSContexts.servedChain(leaf, caCertificates: caFile) == leaf + intermediate + root)
            // Only the intermediate: a partial chain (Debian's mosquitto sends leaf + intermediate too).
            #expect(TLSContexts.servedChain(leaf, caCertificates: intermediate) == leaf + intermediate)
            // Nothing that issued the leaf: the leaf alone.
            #expect(TLSContexts.servedChain(leaf, caCertificates: try Self.certificates("ca.pem")) == leaf)
            #expect(TLSContexts.servedChain(leaf, caCertificates: []) == leaf)
            // A certfile that carries its own chain is sent as it is.
            #expect(TLSContexts.servedChain(leaf + intermediate, caCertificates: root) == leaf + intermediate)
            // A self-signed certfile gets nothing added, even with itself in the cafile.
            #expect(TLSContexts.servedChain(root, caCertificates: root + intermediate) == root)
            // A leaf listed in its own cafile is not sent twice.
            #expect(TLSContexts.servedChain(leaf, caCertificates: leaf + intermediate) == leaf + intermediate)
        }

        @Test func issuerAndSubjectNamesAreRead() throws {
            let leaf = try Self.certificates("chain-leaf.pem")[0].toDERBytes()
            let intermediate = try Self.certificates("chain-intermediate.pem")[0].toDERBytes()
            let leafNames = try #require(DERSubject.names(certificateDER: leaf))
            let intermediateNames = try #require(DERSubject.names(certificateDER: intermediate))
            #expect(leafNames.issuer == intermediateNames.subject)
            #expect(leafNames.subject != leafNames.issuer)
            // Truncated or garbage DER: no names, no crash.
            #expect(DERSubject.names(certificateDER: Array(leaf.prefix(40))) == nil)
            #expect(DERSubject.names(certificateDER: []) == nil)
            #expect(DERSubject.names(certificateDER: [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
        }

        @Test func bridgeNeverSendsAnIPAddressAsSNI() {
            #expect(TLSContexts.serverHostname(forBridgeHost: "10.0.0.5") == nil)
            #expect(TLSContexts.serverHostname(forBridgeHost: "127.0.0.1") == nil)
            #expect(TLSContexts.serverHostname(forBridgeHost: "::1") == nil)
            #expect(TLSContexts.serverHostname(forBridgeHost: "fd00::5") == nil)
            #expect(TLSContexts.serverHostname(forBridgeHost: "central.example.com") == "central.example.com")
            #expect(TLSContexts.serverHostname(forBridgeHost: "localhost") == "localhost")
        }

        @Test func bridgeHostnameFailuresNameWhatWasMissing() {
            let byIP =
                "\(TLSContexts.explainBridgeFailure(NIOSSLExtraError.failedToValidateHostname, host: "127.0.0.1"))"
            #expect(byIP.contains("IP:127.0.0.1") && byIP.contains("subjectAltName"))
            let byName =
                "\(TLSContexts.explainBridgeFailure(NIOSSLExtraError.failedToValidateHostname, host: "central"))"
            #expect(byName.contains("DNS:central"))
            // Other errors pass through unchanged.
            #expect(TLSContexts.explainBridgeFailure(NIOSSLError.uncleanShutdown, host: "127.0.0.1") is NIOSSLError)
        }

        @Test func tlsFailuresAreClassified() throws {
            let unclean = try #require(TLSFailure.classify(NIOSSLError.uncleanShutdown))
            #expect(!unclean.handshake)
            let handshake = try #require(TLSFailure.classify(NIOSSLError.handshakeFailed(.sslError([]))))
            #expect(handshake.handshake)
            #expect(TLSFailure.classify(ChannelErrorStandIn()) == nil)
            // The peer's alert wins over the record-layer code that follows it on the error stack.
            #expect(
                TLSFailure.reason(
                    "handshakeFailed(BoringSSLError.sslError([Error: 268436502 error:10000416:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA, Error: 1 error:1000007d:SSL routines:OPENSSL_internal:DECODE_ERROR]))"
                ) == "peer sent TLS alert unknown_ca"
            )
            #expect(
                TLSFailure.reason(
                    "sslError([Error: 1 error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER])"
                )
                    == "wrong_version_number"
            )
            #expect(TLSFailure.reason("something else") == "something else")
            #expect(TLSFailure.reason("OPENSSL_internal:") == "OPENSSL_internal:")
            #expect(TLSFailure.reason("TLSV1_ALERT_") == "TLSV1_ALERT_")
        }
    }
    private struct ChannelErrorStandIn: Error {}
#endif
