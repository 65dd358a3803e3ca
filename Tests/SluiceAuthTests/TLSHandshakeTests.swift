// End-to-end TLS handshakes in memory (no sockets) with the fixture certificates.
// Needs SluiceServer, NIOSSL, NIOCore and NIOEmbedded in the test target's dependencies.
#if canImport(SluiceServer) && canImport(NIOSSL) && canImport(NIOEmbedded)
import NIOCore
import NIOEmbedded
import NIOSSL
import SluiceConfig
import Testing

@testable import SluiceServer

@Suite struct TLSHandshakeTests {
    static func tls(_ name: String) -> String { fixture("tls/" + name) }

    /// Runs a handshake between the two contexts; returns the client certificate the server saw.
    static func handshake(
        server: NIOSSLContext,
        client: NIOSSLContext,
        hostname: String?
    ) throws -> (ok: Bool, peer: NIOSSLCertificate?) {
        let serverChannel = EmbeddedChannel()
        let clientChannel = EmbeddedChannel()
        defer {
            _ = try? serverChannel.finish()
            _ = try? clientChannel.finish()
        }
        try serverChannel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: server))
        try clientChannel.pipeline.syncOperations.addHandler(
            try NIOSSLClientHandler(context: client, serverHostname: hostname)
        )
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1883)
        try serverChannel.connect(to: address).wait()
        try clientChannel.connect(to: address).wait()
        do {
            var moved = true
            while moved {
                moved = false
                serverChannel.embeddedEventLoop.run()
                clientChannel.embeddedEventLoop.run()
                if let data = try clientChannel.readOutbound(as: IOData.self) {
                    try serverChannel.writeInbound(data)
                    moved = true
                }
                if let data = try serverChannel.readOutbound(as: IOData.self) {
                    try clientChannel.writeInbound(data)
                    moved = true
                }
            }
            try serverChannel.throwIfErrorCaught()
            try clientChannel.throwIfErrorCaught()
        } catch {
            return (false, nil)
        }
        let serverDone = try serverChannel.pipeline.syncOperations.nioSSL_tlsVersion() != nil
        let clientDone = try clientChannel.pipeline.syncOperations.nioSSL_tlsVersion() != nil
        let peer = try serverChannel.pipeline.syncOperations.nioSSL_peerCertificate()
        return (serverDone && clientDone, peer)
    }

    static func serverContext(cert: String = "server.pem", requireCertificate: Bool) throws -> NIOSSLContext {
        var settings = TLSSettings(certFile: tls(cert), keyFile: tls(cert.replacingOccurrences(of: ".pem", with: ".key.pem")))
        settings.requireCertificate = requireCertificate
        if requireCertificate { settings.caFile = tls("ca.pem") }
        return try TLSContexts.server(settings)
    }

    static func clientContext(cert: String?, insecure: Bool = false) throws -> (NIOSSLContext, Bool) {
        var bridge = BridgeConfig(name: "test")
        bridge.bridgeCAFile = tls("ca.pem")
        bridge.bridgeInsecure = insecure
        if let cert {
            bridge.bridgeCertFile = tls(cert)
            bridge.bridgeKeyFile = tls(cert.replacingOccurrences(of: ".pem", with: ".key.pem"))
        }
        return try TLSContexts.bridgeClient(bridge)
    }

    @Test func requireCertificateAcceptsOnlyTrustedValidClients() throws {
        let server = try Self.serverContext(requireCertificate: true)

        let (good, _) = try Self.clientContext(cert: "client.pem")
        let accepted = try Self.handshake(server: server, client: good, hostname: "localhost")
        #expect(accepted.ok)
        let peer = try #require(accepted.peer)
        #expect(TLSContexts.identity(of: peer) == "device1")

        let (none, _) = try Self.clientContext(cert: nil)
        #expect(try Self.handshake(server: server, client: none, hostname: "localhost").ok == false)
        let (expired, _) = try Self.clientContext(cert: "client-expired.pem")
        #expect(try Self.handshake(server: server, client: expired, hostname: "localhost").ok == false)
        let (untrusted, _) = try Self.clientContext(cert: "client-untrusted.pem")
        #expect(try Self.handshake(server: server, client: untrusted, hostname: "localhost").ok == false)
    }

    @Test func withoutRequireCertificateNoClientCertificateIsAsked() throws {
        let server = try Self.serverContext(requireCertificate: false)
        let (none, _) = try Self.clientContext(cert: nil)
        let result = try Self.handshake(server: server, client: none, hostname: "localhost")
        #expect(result.ok)
        #expect(result.peer == nil)
    }

    @Test func bridgeVerifiesTheHostnameUnlessInsecure() throws {
        let wrongHost = try Self.serverContext(cert: "server-wronghost.pem", requireCertificate: false)
        let (strict, verify) = try Self.clientContext(cert: nil)
        #expect(verify)
        #expect(try Self.handshake(server: wrongHost, client: strict, hostname: "localhost").ok == false)

        let (insecure, verifyInsecure) = try Self.clientContext(cert: nil, insecure: true)
        #expect(!verifyInsecure)
        #expect(try Self.handshake(server: wrongHost, client: insecure, hostname: "localhost").ok)

        // An untrusted server is refused even when insecure (the chain is still checked).
        var other = TLSSettings(certFile: Self.tls("client-untrusted.pem"), keyFile: Self.tls("client-untrusted.key.pem"))
        other.requireCertificate = false
        let untrustedServer = try TLSContexts.server(other)
        #expect(try Self.handshake(server: untrustedServer, client: insecure, hostname: "localhost").ok == false)
    }
}
#endif
